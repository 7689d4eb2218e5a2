"""CelebA's facts, shared by its set-up (celeba_setup.py), the datasets (data.py) and
evaluation's face probes: where the aligned images go, their file numbers and the official
partition, and the authors' annotation tables (attributes, aligned landmarks).
"""
from pathlib import Path

from configs import UserError

CELEBA_FOLDER = "img_align_celeba"
CELEBA_TRAIN = range(1, 162_771)      # the official partition, by file number
CELEBA_VAL = range(162_771, 182_638)
CELEBA_TEST = range(182_638, 202_600)


class BadInput(UserError):
    """An archive, folder or annotation file that must not be used; the message says what to
    do."""


# --- file numbers and the official partition ------------------------------------------------

def celeba_number(name):
    """000123.jpg -> 123; None for a name that is not a CelebA file number."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else None


def celeba_partition(number):
    """0 train, 1 validation, 2 test (list_eval_partition.txt), None outside CelebA's range."""
    for code, part in enumerate((CELEBA_TRAIN, CELEBA_VAL, CELEBA_TEST)):
        if number in part:
            return code
    return None


# --- the annotations: attributes and aligned landmarks --------------------------------------

ATTRIBUTES, LANDMARKS = "list_attr_celeba.txt", "list_landmarks_align_celeba.txt"
# Who is in each image ("000001.jpg 2880" per line, no count or header line): evaluation's
# face probes split by person when it is present, so no one is on both sides.
IDENTITIES = "identity_CelebA.txt"
ATTRIBUTE_COUNT = 40
LANDMARK_COLUMNS = tuple(f"{p}_{a}" for p in ("lefteye", "righteye", "nose", "leftmouth",
                                              "rightmouth") for a in ("x", "y"))


def parse_annotation(text, label, name):
    """(column names, {image name: values}) of an attribute or landmark table in the authors'
    form (a count line, a header line, 'NNNNNN.jpg v1 v2 ...') or Kaggle's CSV (image_id,...);
    BadInput naming the row otherwise. Attributes are -1/1, landmarks pixel coordinates.
    The identity table (IDENTITIES) has its own form, see parse_identities."""
    if name == IDENTITIES:
        return parse_identities(text, label)
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) < 2:
        raise BadInput(f"{label}: {len(lines)} lines; not CelebA's {name}")
    if "," in lines[0]:
        header, rows, first = lines[0].split(",")[1:], [r.split(",") for r in lines[1:]], 2
    else:
        header, rows, first = lines[1].split(), [r.split() for r in lines[2:]], 3
        if not lines[0].isdigit() or int(lines[0]) != len(rows):
            raise BadInput(f"{label} row 1: {lines[0]!r} should be the count of its "
                           f"{len(rows)} rows; not CelebA's {name}")
    header = [h.strip() for h in header]
    expected = LANDMARK_COLUMNS if name == LANDMARKS else None
    if (expected and tuple(header) != expected) or \
            (not expected and len(header) != ATTRIBUTE_COUNT):
        raise BadInput(f"{label}: header {' '.join(header)[:80]!r} is not that of CelebA's "
                       f"{name} ({', '.join(expected) if expected else '40 attributes'})")
    table = {}
    for number, row in enumerate(rows, first):
        if len(row) != len(header) + 1:
            raise BadInput(f"{label} row {number}: {len(row)} cells, expected "
                           f"{len(header) + 1}")
        try:
            values = [int(v) for v in row[1:]]
        except ValueError:
            raise BadInput(f"{label} row {number}: {' '.join(row[1:])[:60]!r} are not "
                           "integers") from None
        if not expected and any(v not in (-1, 1) for v in values):
            raise BadInput(f"{label} row {number}: attributes must be -1 or 1")
        table[row[0].strip()] = values
    return header, table


def read_annotations(root):
    """(attribute names, {image: 40 values}, landmark columns, {image: 10 values}) from the
    files celeba_setup.py writes, or a one-line reason they cannot be used."""
    root = Path(root)
    tables = []
    for name in (ATTRIBUTES, LANDMARKS):
        path = root / name
        if not path.is_file():
            return (f"{path} is missing; `python celeba_setup.py --data_dir {root}` fetches "
                    "CelebA's annotations")
        try:
            tables += parse_annotation(path.read_text(), str(path), name)
        except BadInput as err:
            return f"{err}; delete it and run `python celeba_setup.py --data_dir {root}`"
    return tuple(tables)


def parse_identities(text, label):
    """(["identity"], {image name: [person number]}) of identity_CelebA.txt, the authors' form
    only: one 'NNNNNN.jpg ID' line per image, ID a positive whole number; BadInput naming the
    row otherwise."""
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        raise BadInput(f"{label}: empty; not CelebA's {IDENTITIES}")
    table = {}
    for number, line in enumerate(lines, 1):
        row = line.split()
        if len(row) != 2 or celeba_number(row[0]) is None or not row[1].isdigit() \
                or int(row[1]) < 1:
            raise BadInput(f"{label} row {number}: {line[:60]!r} is not 'NNNNNN.jpg person' "
                           f"(a positive whole number); not CelebA's {IDENTITIES}")
        table[row[0]] = [int(row[1])]
    return ["identity"], table


def read_identities(root):
    """{image name: person number} from identity_CelebA.txt, or a one-line reason (missing,
    or not the authors' file) the face probes must split by image instead."""
    path = Path(root) / IDENTITIES
    if not path.is_file():
        return f"{path.name} is absent"
    try:
        _, table = parse_identities(path.read_text(), str(path))
    except BadInput as err:
        return str(err)
    return {name: values[0] for name, values in table.items()}
