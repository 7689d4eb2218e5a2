"""The top-level modules import downward only: each imports alone in a fresh interpreter, and no
import (at any depth, a function's included) leads back to the module it starts from.

Without a cycle, a script run as __main__ (python benchmarks.py, python data.py ...) is never
imported again by name from a module it builds on, so no second copy of it (and of its classes)
can appear in the process.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))


def imported_modules(source, candidates):
    """The names among candidates that source imports anywhere in its tree (absolute imports:
    `import X`, `import X.y`, `from X import y`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found & set(candidates)


def import_graph(folder):
    """{module: the modules of the folder it imports} for the folder's .py files."""
    paths = {p.stem: p for p in Path(folder).glob("*.py")}
    return {name: imported_modules(path.read_text(), paths) - {name}
            for name, path in paths.items()}


def find_cycle(graph):
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the current path, "done" once fully explored

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_no_top_level_module_imports_one_that_imports_it_back():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    (tmp_path / "low.py").write_text("def later():\n    import high\n")
    (tmp_path / "high.py").write_text("import low\n")
    (tmp_path / "other.py").write_text("from low import later\nimport json\n")
    assert import_graph(tmp_path) == {"low": {"high"}, "high": {"low"}, "other": {"low"}}
    assert find_cycle(import_graph(tmp_path)) == ["high", "low", "high"]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
