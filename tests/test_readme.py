"""README.md quotes measured numbers only: its demo table is the one bench/demo_numbers.py
wrote into bench/results/demo_cpu.md."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import demo_numbers  # noqa: E402


def block(text):
    return text.split(demo_numbers.START, 1)[1].split(demo_numbers.END, 1)[0].strip()


def test_the_readme_demo_table_is_the_measured_one():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(demo_numbers.START) == readme.count(demo_numbers.END) == 1
    table = block(readme)
    assert "Measured by `python bench/demo_numbers.py` on " in table and "commit " in table
    assert table in demo_numbers.RESULTS.read_text()


def test_replacing_the_block_keeps_the_rest_of_the_file():
    text = f"intro\n{demo_numbers.START}\nold\n{demo_numbers.END}\nrest\n"
    assert demo_numbers.replace_block(text, "new") == \
        f"intro\n{demo_numbers.START}\nnew\n{demo_numbers.END}\nrest\n"
