"""What each setting means, read from the comments beside the fields of Config in configs.py:
the one source of `python train.py --help` and of docs/settings.md (docs/make_settings.py).

A field's meaning is the comment on its line (with the comment lines aligned under it), or
else the comment block right above it; a block above several fields in a row that have no
comment of their own describes them together.
"""
import ast
import dataclasses
import io
import re
import textwrap
import tokenize
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs.py"


def _comments(source):
    """line number -> (column, text) of every comment."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = (tok.start[1], tok.string[1:].strip())
    return out


def _section(text):
    """The title of a section comment such as `# --- data ---`, else None."""
    match = re.fullmatch(r"-+ (.*) -+", text)
    return match.group(1) if match else None


def field_comments(source):
    """[(field names, meaning, section)] in the order of Config's fields; meaning is None for
    a field without a comment, section the title of the `# --- title ---` line above it."""
    tree = ast.parse(source)
    config = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    fields = [n for n in config.body if isinstance(n, ast.AnnAssign)]
    lines = source.splitlines()
    comments = _comments(source)
    sections = {number: _section(text) for number, (_, text) in comments.items()
                if _section(text)}

    def comment_only(number):
        return number in comments and lines[number - 1].lstrip().startswith("#")

    rows, block = [], None  # block: the open row that a comment block above started
    consumed = set()  # comment lines continuing a comment beside a field
    previous_end = 0  # the last line of the field before this one
    for node in fields:
        name = node.target.id
        section = sections[max((n for n in sections if n < node.lineno), default=0)] \
            if any(n < node.lineno for n in sections) else ""
        own = []
        end = node.end_lineno
        if end in comments and not comment_only(end):
            column, text = comments[end]
            own.append(text)
            number = end + 1
            while comment_only(number) and comments[number][0] == column:
                own.append(comments[number][1])
                consumed.add(number)
                number += 1
        above, number = [], node.lineno - 1
        while comment_only(number) and number not in consumed and number not in sections:
            above.insert(0, comments[number][1])
            number -= 1
        if own:
            rows.append([[name], " ".join(own), section])
            block = None
        elif above:
            block = [[name], " ".join(above), section]
            rows.append(block)
        elif block is not None and node.lineno == previous_end + 1:
            block[0].append(name)
        else:
            rows.append([[name], None, section])
            block = None
        previous_end = end
    return rows


def default_text(value):
    if value == "":
        return '""'
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def help_text(configs_module):
    """`python train.py --help`: usage, the presets, and every setting with its default,
    its allowed values and its meaning, by section."""
    source = CONFIGS.read_text()
    defaults = configs_module.Config()
    kinds = {f.name: f.type for f in dataclasses.fields(configs_module.Config)}
    wrap = textwrap.TextWrapper(width=100, initial_indent=" " * 8, subsequent_indent=" " * 8)
    out = [
        "usage: python train.py [--preset NAME] [--SETTING VALUE | --SETTING=VALUE] ...",
        "",
        *textwrap.wrap(
            "Trains BOM VAE v15. Every setting is a field of Config in configs.py: edit its "
            "default there, or override it here. A preset is applied first, then each setting "
            "in order. Tuples are comma-separated integers (--enc_channels 32,64,128,256); "
            + ", ".join(f"--{n}" for n in configs_module.BARE_FLAGS) + " may be given bare. "
            "Which settings a resume may change, and the goal table: docs/settings.md.",
            100),
        "",
        "presets:",
    ]
    for name, values in configs_module.PRESETS.items():
        fields = ", ".join(f"{k}={default_text(v)}" for k, v in values.items())
        out += textwrap.wrap(f"{name}: {fields}", 100, initial_indent="  ",
                             subsequent_indent=" " * 8)
    section = None
    for names, meaning, title in field_comments(source):
        if title != section:
            section = title
            out += ["", f"{title}:"]
        for name in names:
            if name == "goals":  # a table, not a command-line setting
                out.append("  goals: the goal table, default_goals() in configs.py (edit it "
                           "there)")
                continue
            kind = kinds[name]
            kind = "INTS" if kind is tuple else kind.__name__.upper()
            choices = configs_module.CHOICES.get(name)
            allowed = f"; one of {', '.join(choices)}" if choices else ""
            out.append(f"  --{name} {kind}  (default {default_text(getattr(defaults, name))}"
                       f"{allowed})")
        if meaning and names != ["goals"]:
            out += wrap.wrap(meaning)
    out += ["", "  -h, --help  this list, then exit"]
    return "\n".join(out) + "\n"
