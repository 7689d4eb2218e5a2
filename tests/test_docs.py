"""docs/settings.md is generated from configs.py (`python docs/make_settings.py`): it must be
what the generator writes today, so that adding, renaming or re-defaulting a field without
regenerating it fails here."""
import dataclasses
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

import configs

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_settings", ROOT / "docs" / "make_settings.py")
make_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_settings)

SETTINGS = ROOT / "docs" / "settings.md"


def test_settings_md_is_what_configs_py_gives():
    message = make_settings.stale()
    assert message is None, message


def test_every_field_has_a_row_with_its_default_and_whether_it_is_run_only():
    text = SETTINGS.read_text()
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows.setdefault(name, cells)
    cfg = configs.Config()
    for f in dataclasses.fields(configs.Config):
        assert f.name in rows, f"docs/settings.md has no row for {f.name}"
        cells = rows[f.name]
        assert cells[2] in ("yes", "no"), f.name
        assert (cells[2] == "yes") == (f.name in configs.RUN_ONLY_FIELDS), f.name
        assert cells[3], f"{f.name} has no meaning"
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            assert f"`{value}`" in cells[1] or (value == "" and '`""`' in cells[1]), f.name
    for goal in configs.default_goals():
        assert f"| `{goal['name']}` | {goal['group']} | {goal['type']} |" in text


def test_the_header_says_how_to_regenerate_it():
    head = "\n".join(SETTINGS.read_text().splitlines()[:8])
    assert make_settings.COMMAND in head
    assert make_settings.COMMAND == "python docs/make_settings.py"


# --- the check fails when configs.py changes without regenerating ----------------------------

@pytest.fixture
def scratch(tmp_path):
    path = tmp_path / "configs.py"
    shutil.copy(ROOT / "configs.py", path)
    return path


def edit(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


SEED = "    seed: int = 0                    # seed of every random draw\n"


@pytest.mark.parametrize("old, new", [
    ("    epochs: int = 35 ", "    epochs: int = 36 "),                       # re-defaulted
    ("    noise_std: float = 0.5 ", "    noise_sigma: float = 0.5 "),         # renamed
    (SEED, SEED + "    jitter: float = 0.0  # a new field\n"),                # added
    ("# stop with a diagnosis instead of looping", "# stop with a diagnosis"),  # re-commented
    ('RUN_ONLY_FIELDS = ("output_dir", ', 'RUN_ONLY_FIELDS = ("output_dir", "seed", '),
    ('_goal("weak", "latent", soft, scale=0.1)', '_goal("weak", "latent", soft, scale=0.2)'),
])
def test_a_changed_configs_py_makes_the_check_fail_naming_the_command(scratch, old, new):
    written = scratch.parent / "settings.md"  # what the generator writes for today's configs.py
    written.write_text(make_settings.render(scratch))
    assert make_settings.stale(scratch, written) is None
    edit(scratch, old, new)
    message = make_settings.stale(scratch, written)
    assert message is not None and "python docs/make_settings.py" in message


def test_a_new_field_without_a_comment_is_refused(scratch):
    edit(scratch, SEED, SEED + "    jitter: float = 0.0\n")
    with pytest.raises(SystemExit, match="give the field 'jitter' a comment"):
        make_settings.render(scratch)


def test_an_unchanged_copy_gives_the_same_text(scratch):
    assert make_settings.render(scratch) == SETTINGS.read_text()
