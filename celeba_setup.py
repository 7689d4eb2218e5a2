"""Set up aligned CelebA for train.py: download, verify, extract, partition, preprocess.

    python celeba_setup.py                      # into data/celeba (train.py's default)
    python celeba_setup.py --data_dir DIR       # elsewhere (then train.py --data_dir DIR)
    python celeba_setup.py --zip PATH           # a zip you already have (authors', Kaggle's..)
    python celeba_setup.py --folder PATH        # the images already extracted somewhere
    python celeba_setup.py --no-preprocess      # skip the preprocessed cache

Steps, each skipped when already done (a second run only verifies, changes nothing and
makes no request): fetch img_align_celeba.zip (202,599 JPEGs, 1.4 GB) from the first source
that works, resuming a broken download; check its size and MD5 (a zip or folder of yours
that is not the authors' archive is checked by content instead: the 202,599 names
000001.jpg ... 202599.jpg, and a decoded sample); extract it with a CRC check of every file;
check a partition file shipped with it (list_eval_partition.txt or Kaggle's .csv) against the
official split and write list_eval_partition.txt; decode every image once into
DIR/preprocessed_<size>.npy so that training decodes no JPEG.

Exit status: 0 CelebA is ready; 1 no source gave a verified archive (the manual steps are
printed); 2 a bad archive or folder is in the way, or a bad argument; 3 the disk refused (full
or not writable); 130 interrupted (run the same command again to continue).
"""
import argparse
import io
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

from tqdm import tqdm

import imagesets
from celeba import (ATTRIBUTES, CELEBA_FOLDER, CELEBA_TEST, IDENTITIES, LANDMARKS, BadInput,
                    celeba_number, celeba_partition, parse_annotation)
from configs import Config, UserError
from download import CHUNK, SourceFailed, download, fetch_file, md5_of, verify_file

ZIP_NAME = "img_align_celeba.zip"
ZIP_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"   # the authors' archive
ZIP_BYTES = 1_443_490_838
EXPECTED_IMAGES = 202_599          # 000001.jpg ... 202599.jpg (tests patch it for small zips)
CELEBA_LAST = CELEBA_TEST.stop - 1   # the highest file number: 202599
CELEBA_NAME = re.compile(r"\d{6}\.jpg")
SAMPLE_DECODES = 100   # images decoded to check an archive or folder that is not the authors'
# Of that sample, the share that may fail to decode when no matching checksum vouches for the
# copy: a few damaged files are skipped and named, more mean these are not CelebA's images.
MAX_UNDECODABLE_SHARE = 0.05
PARTITION_FORMS = ("list_eval_partition.txt", "list_eval_partition.csv")  # authors', Kaggle's
GDRIVE_ID = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"
GDRIVE_RESOURCE_KEY = "0-dYn9z10tMJOBAkviAcfdyQ"

# Tried in order; every one must yield the archive with the MD5 above.
SOURCES = [
    # The authors' Google Drive file (torchvision and the notebook-era scripts use it). Large
    # files first answer with a "cannot scan for viruses" page that has to be confirmed.
    f"https://drive.google.com/uc?export=download&id={GDRIVE_ID}",
    f"https://drive.usercontent.google.com/download?id={GDRIVE_ID}&export=download&confirm=t",
    # The authors' Dropbox copy, linked from the CelebA page.
    ("https://www.dropbox.com/sh/8oqt9vytwxb3s4r/AADIKlz8PR9zr6Y20qbkunrba/Img/"
     "img_align_celeba.zip?dl=1"),
    # Udacity's public mirror: celeba.zip, the same archive byte for byte (same MD5).
    "https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip",
]
CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
PARTITION_FILE = "list_eval_partition.txt"
EXIT_OK, EXIT_NO_SOURCE, EXIT_BAD_INPUT, EXIT_DISK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# --- when no source gives the archive -------------------------------------------------------

def manual_instructions(root, failures):
    tried = "\n".join(f"  {i}. {url}\n     {why}" for i, (url, why) in enumerate(failures, 1))
    return f"""
Could not download {ZIP_NAME} from any source:
{tried}

Download it by hand (1.4 GB, MD5 {ZIP_MD5}):
  - from the CelebA page {CELEBA_PAGE}
    (Align&Cropped Images -> Img/{ZIP_NAME}; Google Drive or Baidu), or
  - https://drive.google.com/file/d/{GDRIVE_ID}/view?resourcekey={GDRIVE_RESOURCE_KEY}
    (a browser gets past the daily-quota and virus-scan pages), or
  - Kaggle's "jessicali9530/celeba-dataset" (needs an account; another zip, whose
    contents are checked instead of its MD5)
Then put the zip at {root / ZIP_NAME} and run
    python celeba_setup.py --data_dir {root}
or leave it where it is and run
    python celeba_setup.py --data_dir {root} --zip PATH/TO/THE.zip
or, with the images already extracted somewhere (any depth),
    python celeba_setup.py --data_dir {root} --folder PATH/TO/FOLDER
"""


# --- the images: a verified or content-checked zip, or a folder ---------------------------

class ZipSource:
    """A zip holding CelebA's images somewhere inside (the authors' layout, Kaggle's, a repack)."""

    def __init__(self, path, given):
        self.path, self.given = path, given
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError) as err:
            raise BadInput(damaged(path, err, given)) from None
        self.members = {m.filename: m for m in self.archive.infolist() if not m.is_dir()}

    def names(self):
        return list(self.members)

    def read(self, name):
        try:
            return self.archive.read(self.members[name])  # checks the member's CRC
        except (zipfile.BadZipFile, EOFError) as err:
            raise BadInput(damaged(self.path, err, self.given)) from None

    def close(self):
        self.archive.close()


class FolderSource:
    """An extracted CelebA: a folder holding the images at any depth."""

    def __init__(self, path):
        self.path, self.given = path, True
        self._names = None

    def names(self):
        if self._names is None:  # listed once: 202,599 files take a while
            self._names = imagesets.list_images(self.path, self.path) + [
                p.relative_to(self.path).as_posix()
                for p in self.path.rglob("list_eval_partition.*")]
        return self._names

    def read(self, name):
        return (self.path / name).read_bytes()

    def close(self):
        pass


def _celeba_images(names):
    """(folder, sorted names) of the folder holding the most files named like CelebA's images
    (NNNNNN.jpg); __MACOSX and hidden entries are ignored, other files too."""
    folders = {}
    for name in names:
        parent, _, base = name.rpartition("/")
        if CELEBA_NAME.fullmatch(base) and not _hidden(name):
            folders.setdefault(parent, []).append(name)
    if not folders:
        return "", []
    folder = max(folders, key=lambda f: len(folders[f]))
    return folder, sorted(folders[folder])


def _hidden(name):
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def check_content(source, label, expected_images, vouched):
    """The image names of a source whose contents are CelebA, after a check of the names,
    the count and a decoded sample; BadInput otherwise. vouched: a matching checksum vouches
    for the copy, so any damaged files in the sample are only named. Returns (names, what was
    checked)."""
    folder, names = _celeba_images(source.names())
    where = f"{folder}/" if folder else "its top level"
    outside = [n for n in names if not 1 <= celeba_number(n) <= CELEBA_LAST]
    if len(names) != expected_images or outside:
        found = f"{len(names)} images named like CelebA's (NNNNNN.jpg) in {where}" \
            + (f", {outside[0]} among them beyond {CELEBA_LAST:06d}.jpg" if outside else "")
        raise BadInput(f"{label} holds {found}; CelebA has {expected_images}, 000001.jpg to "
                       f"{CELEBA_LAST:06d}.jpg. {not_celeba_advice(label, source.given)}")
    step = max(1, len(names) // SAMPLE_DECODES)
    sample = sorted(set(names[::step][:SAMPLE_DECODES] + [names[-1]]))
    undecodable = {}
    for name in sample:
        pixels, reason = imagesets.try_load_image(io.BytesIO(source.read(name)), 16)
        if pixels is None:
            undecodable[name] = reason
    if not vouched and len(undecodable) > MAX_UNDECODABLE_SHARE * len(sample):
        first, reason = next(iter(undecodable.items()))
        raise BadInput(f"{label}: {len(undecodable)} of the {len(sample)} sampled images cannot "
                       f"be decoded, more than the {MAX_UNDECODABLE_SHARE:.0%} a copy without a "
                       f"matching checksum may have ({first} cannot be decoded: {reason}); the "
                       f"images are damaged. {not_celeba_advice(label, source.given)}")
    what = (f"{len(names):,} images named {names[0].rpartition('/')[2]} to "
            f"{names[-1].rpartition('/')[2]} in {where}, {len(sample)} of them decoded")
    if undecodable:
        what += (f", {len(undecodable)} cannot be: " + ", ".join(list(undecodable)[:5])
                 + (", ..." if len(undecodable) > 5 else ""))
    return names, what


def not_celeba_advice(label, given):
    # A file the user passed is theirs: never ask them to delete it.
    if given:
        return ("Pass CelebA's aligned images: the authors' img_align_celeba.zip, Kaggle's "
                f"celeba-dataset zip, or a folder of the {CELEBA_LAST:,} JPEGs (--folder)")
    return (f"Move {label} away and run again to download the archive, or pass a copy you "
            "have with --zip PATH")


def damaged(path, err, given):
    what = "pass another copy with --zip PATH" if given else \
        "delete it and run again to download it, or pass another copy with --zip PATH"
    return f"{path} is damaged ({err}); {what}"


# --- the partition: list_eval_partition.txt ("000001.jpg 0") or .csv ("image_id,partition")

def parse_partition(text, label):
    """{image name: 0 train, 1 validation, 2 test} from either published form."""
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if lines and "," in lines[0]:  # Kaggle's CSV, with a header
        header = [h.strip() for h in lines[0].split(",")]
        if "image_id" not in header or "partition" not in header:
            raise BadInput(f"{label}: expected the header image_id,partition, got {lines[0]!r}")
        columns = header.index("image_id"), header.index("partition")
        rows = [[cell.strip() for cell in line.split(",")] for line in lines[1:]]
        pairs = [(row[columns[0]], row[columns[1]]) for row in rows]
    else:  # the authors' TXT
        pairs = [tuple(line.split()[:2]) for line in lines]
    try:
        return {name: int(part) for name, part in pairs}
    except ValueError:
        raise BadInput(f"{label}: cannot read it as a partition ('000001.jpg 0' lines, or "
                       "image_id,partition rows)") from None


def check_partition(source, label, names):
    """A partition file shipped with the images must agree with CelebA's official split. The
    split is by file number (celeba_partition), so a file that disagrees means images
    not numbered as CelebA's, and a train/test split that would be wrong. Returns a note."""
    files = sorted(n for n in source.names()
                   if n.rpartition("/")[2] in PARTITION_FORMS and not _hidden(n))
    if not files:
        return "no partition file in it; the official split by file number is used"
    text = source.read(files[0]).decode("utf-8", "replace")
    listed = parse_partition(text, f"{label}: {files[0]}")
    for name in names:
        base = name.rpartition("/")[2]
        official = celeba_partition(celeba_number(base))
        if listed.get(base) != official:
            raise BadInput(f"{label}: {files[0]} puts {base} in partition {listed.get(base)}, "
                           f"CelebA's official split in {official}; these images are not "
                           f"numbered as CelebA's. {not_celeba_advice(label, source.given)}")
    return f"its {files[0]} agrees with the official split"


# --- extraction, partition file, cache ----------------------------------------------------

def import_images(source, names, folder):
    """Put the images in `folder`: extracted from a zip (every CRC checked), or linked (on the
    same disk) or copied from a folder. Files already there whole are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source, FolderSource) and \
            (source.path / names[0]).parent.resolve() == folder.resolve():
        return  # already in place
    from_zip = isinstance(source, ZipSource)
    desc = f"{'extract' if from_zip else 'import'} {source.path.name}"
    for name in tqdm(names, unit="img", desc=desc):
        target = folder / name.rpartition("/")[2]
        if from_zip:
            _extract_one(source, name, target)
        else:
            _link_or_copy(source.path / name, target)


def _extract_one(source, name, target):
    member = source.members[name]
    if target.exists() and target.stat().st_size == member.file_size:
        return
    tmp = target.with_name(target.name + ".tmp")
    # Reading a member to its end checks its CRC (BadZipFile on a mismatch); a file appears
    # under its own name only once whole, so an interrupted extraction is simply continued.
    try:
        with source.archive.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, EOFError) as err:
        raise BadInput(damaged(source.path, err, source.given)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _link_or_copy(src, target):
    if target.exists() and target.stat().st_size == src.stat().st_size:
        return
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)  # same disk: no second copy of 1.4 GB
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def count_images(folder):
    return len(imagesets.list_images(folder, folder)) if folder.is_dir() else 0


def partition_text(folder):
    """list_eval_partition.txt for the images present: '000001.jpg 0' (0 train, 1 val, 2 test)."""
    lines = []
    for name in imagesets.list_images(folder, folder):
        part = celeba_partition(celeba_number(name))
        if part is not None:
            lines.append(f"{name} {part}\n")
    return "".join(lines)


def write_if_changed(path, text):
    """Write only when the content differs, so a complete setup is left untouched."""
    if path.exists() and path.read_text() == text:
        return False
    imagesets.write_atomically(path, text)
    return True


def cache_is_current(root, image_size):
    manifest = imagesets.read_cache(root, image_size)
    listing = imagesets.list_images(root / CELEBA_FOLDER, root)
    return manifest is not None and sorted(manifest["files"]) == listing


# --- the annotations: attributes and aligned landmarks --------------------------------------

# name -> (the authors' MD5 as torchvision records it, Google Drive file id, Kaggle's CSV name)
ANNOTATIONS = {
    ATTRIBUTES: ("75e246fa4810816ffd6ee81facbd244c", "0B7EVK8r0v71pblRyaVFSWGxPY0U",
                 "list_attr_celeba.csv"),
    LANDMARKS: ("cc24ecafdb5b50baae59b03474781f8c", "0B7EVK8r0v71pd0FJY3Blby1HUTQ",
                "list_landmarks_align_celeba.csv"),
    # Who is in each image: the face probes split by person with it (Kaggle has no form of it).
    IDENTITIES: ("32bd1bd63d3c78cd57e08160ec5ed1e2", "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", None),
}
# Without these the face probes still run (split by image, and the report says so): a failed
# download is a note, not a missing piece.
OPTIONAL_ANNOTATIONS = (IDENTITIES,)
# Tried in order for each file (the authors' Google Drive files, as for the images).
ANNOTATION_SOURCES = {
    name: [f"https://drive.google.com/uc?export=download&id={gid}",
           f"https://drive.usercontent.google.com/download?id={gid}&export=download&confirm=t"]
    for name, (_, gid, _) in ANNOTATIONS.items()}


def annotation_text(header, table):
    """The authors' form of a table."""
    return "".join([f"{len(table)}\n", " ".join(header) + "\n"]
                   + [f"{n} " + " ".join(str(v) for v in vs) + "\n" for n, vs in table.items()])


def check_annotation(text, label, name, images):
    """The table, when it is CelebA's and covers every image here; BadInput otherwise."""
    header, table = parse_annotation(text, label, name)
    missing = [n for n in images if n not in table]
    if missing:
        raise BadInput(f"{label}: no row for {missing[0]} ({len(missing)} images without one)")
    return header, table


def _write_annotation(root, name, text, header, table):
    """The authors' form as it came (its bytes, so its MD5, kept); Kaggle's CSV converted."""
    authors = "," not in text.lstrip("\ufeff").split("\n", 1)[0]
    write_if_changed(root / name, text if authors else annotation_text(header, table))


def annotations_from_source(source, root, images):
    """Take the annotations a zip or folder carries (the authors' TXT or Kaggle's CSV)."""
    notes = []
    members = {n.rpartition("/")[2]: n for n in source.names() if not _hidden(n)}
    for name, (_, _, kaggle) in ANNOTATIONS.items():
        if (root / name).exists():
            continue
        for form in (name, kaggle):
            if form is None or form not in members:
                continue
            label = f"{source.path}: {members[form]}"
            text = source.read(members[form]).decode("utf-8", "replace")
            try:
                header, table = check_annotation(text, label, name, images)
            except BadInput as err:
                notes.append(f"{name}: not taken from {source.path.name} ({err})")
                continue
            _write_annotation(root, name, text, header, table)
            notes.append(f"{name} taken from {label} (checked by content)")
            break
    return notes


def fetch_annotations(args, root, images):
    """Check the annotation files present; download the missing ones. Lines to print, and
    whether every file is in place."""
    notes, complete = [], True
    for name, (md5, _, _) in ANNOTATIONS.items():
        path = root / name
        if path.exists():
            try:
                check_annotation(path.read_text(), str(path), name, images)
                notes.append(f"{name} already present, checked")
                continue
            except BadInput as err:
                notes.append(f"{name}: {err}; fetching it again")
                path.unlink()
        urls = [f"{base.rstrip('/')}/{name}" for base in args.annotations_from] \
            if args.annotations_from else ANNOTATION_SOURCES.get(name, [])
        failures = []
        for url in urls:
            print(f"trying {url}")
            part = root / f"{name}.download"
            try:
                download(url, part, None, None)
                text = part.read_text(encoding="utf-8", errors="replace")
                header, table = check_annotation(text, url, name, images)
            except (SourceFailed, BadInput) as err:
                print(f"  failed: {err}")
                failures.append(url)
                part.unlink(missing_ok=True)
                continue
            how = "MD5 verified" if md5_of(part) == md5 else "checked by content"
            _write_annotation(root, name, text, header, table)
            part.unlink()
            notes.append(f"{name} downloaded from {url} ({how})")
            break
        else:
            optional = name in OPTIONAL_ANNOTATIONS
            if not optional:
                complete = False
            kaggle = ANNOTATIONS[name][2]
            notes.append(f"{name} could not be fetched" + (f" from {', '.join(failures)}"
                                                           if failures else "")
                         + f"; download it from {CELEBA_PAGE} (Anno/{name}; MD5 {md5})"
                         + (f" or take Kaggle's {kaggle}" if kaggle else "")
                         + f", put it in {root} and run this again. Training does not need it; "
                         + ("evaluation's face probes split the test partition by image "
                            "without it (the same people on both sides)" if optional
                            else "evaluation's face probes do"))
    return notes, complete


# --- the whole set-up ---------------------------------------------------------------------

def parse_args(argv):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("--data_dir", default=defaults.data_dir,
                        help="where img_align_celeba/ goes (default: %(default)s)")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--zip", type=Path,
                       help=f"use this zip instead of downloading: the authors' {ZIP_NAME}, "
                       "Kaggle's celeba-dataset zip, or any zip of CelebA's images")
    given.add_argument("--folder", type=Path,
                       help="use CelebA's images from this folder (at any depth, e.g. Kaggle's "
                       "extracted celeba-dataset); they are linked or copied into --data_dir")
    parser.add_argument("--no-preprocess", dest="preprocess", action="store_false",
                        help="skip the preprocessed cache (training then decodes JPEGs)")
    parser.add_argument("--image_size", type=int, default=defaults.image_size,
                        help="size of the preprocessed images (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="preprocessing processes (default: every CPU core)")
    parser.add_argument("--url", action="append", dest="urls",
                        help="download from this URL instead of the built-in sources (repeatable)")
    parser.add_argument("--md5", default=ZIP_MD5, help="expected MD5 of the archive (a zip "
                        "of yours that differs is checked by content instead)")
    parser.add_argument("--expected_images", type=int, default=EXPECTED_IMAGES,
                        help="images the archive or folder must hold (default: %(default)s)")
    parser.add_argument("--no-annotations", dest="annotations", action="store_false",
                        help=f"skip the annotations ({ATTRIBUTES}, {LANDMARKS}, {IDENTITIES}) that "
                        "evaluation's face probes use")
    parser.add_argument("--annotations_from", action="append", metavar="URL",
                        help="download the annotation files from URL/NAME instead of the "
                        "built-in sources (repeatable)")
    return parser.parse_args(argv)


def obtain_source(args, root):
    """(source, image names) of checked CelebA images: --folder, --zip, the zip in root, or a
    download; None when every download failed (the manual steps are printed)."""
    if args.folder:
        if not args.folder.is_dir():
            raise BadInput(f"--folder {args.folder}: no such folder; give the folder that holds "
                           "CelebA's images (at any depth)")
        return checked(FolderSource(args.folder), "a folder, so checked by content",
                       args.expected_images, vouched=False)
    # The size is known for the authors' archive only; another --md5 means another file.
    expected_bytes = ZIP_BYTES if args.md5 == ZIP_MD5 else None
    given = args.zip or root / ZIP_NAME
    if args.zip and not args.zip.is_file():
        raise BadInput(f"--zip {args.zip}: no such file; give the path of {ZIP_NAME} or of "
                       "another zip of CelebA's images (an extracted folder: --folder PATH)")
    if not given.is_file():
        failures = fetch_file(given, args.urls or SOURCES, args.md5, expected_bytes)
        if failures:
            print(manual_instructions(root, failures), file=sys.stderr)
            return None
        return checked(ZipSource(given, False), "size and MD5 verified", args.expected_images,
                       vouched=True)
    print(f"verifying {given}")
    problem = verify_file(given, args.md5, expected_bytes)
    # Any zip whose contents are CelebA will do (Kaggle's, a repack): when it is not the
    # authors' archive byte for byte, its contents are checked instead.
    how = f"not the authors' archive ({problem}), so checked by content" if problem \
        else "size and MD5 verified"
    return checked(ZipSource(given, bool(args.zip)), how, args.expected_images,
                   vouched=not problem)


def checked(source, how, expected_images, vouched):
    """Check the source's contents (always: the listing is cheap, and the count guards a
    custom --md5) and say in one line which check vouches for it."""
    try:
        names, what = check_content(source, str(source.path), expected_images, vouched)
        later = "extraction checks every file's CRC; preprocessing" \
            if isinstance(source, ZipSource) else "preprocessing"
        print(f"{source.path}: {how}: {what} ({later} skips and names any image that cannot "
              "be decoded)")
        print(f"partition: {check_partition(source, str(source.path), names)}")
    except BaseException:
        source.close()
        raise
    return source, names


def set_up(args):
    root = Path(args.data_dir)
    folder = root / CELEBA_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    done, annotation_notes = [], []
    if count_images(folder) >= args.expected_images:
        done.append("images already extracted")
    else:
        found = obtain_source(args, root)
        if found is None:
            return EXIT_NO_SOURCE
        try:
            import_images(*found, folder)
            if args.annotations:
                annotation_notes += annotations_from_source(
                    found[0], root, imagesets.list_images(folder, folder))
        finally:
            found[0].close()
    images = count_images(folder)
    if images < args.expected_images:
        raise BadInput(f"{folder} has {images} images after extraction, expected "
                       f"{args.expected_images}; delete the folder and run again")
    changed = write_if_changed(root / PARTITION_FILE, partition_text(folder))
    done.append(f"{PARTITION_FILE} {'written' if changed else 'already correct'}")
    if args.preprocess:
        cache = imagesets.cache_path(root, args.image_size)
        if cache_is_current(root, args.image_size):
            done.append(f"cache {cache.name} already current")
        else:
            skipped = imagesets.preprocess_folder(folder, cache, args.image_size,
                                                  workers=args.workers)["skipped"]
            done.append(f"cache {cache.name} built" + (
                f" ({len(skipped)} unreadable images left out, named in "
                f"{cache.with_suffix('.json').name})" if skipped else ""))
    if all("already" in step for step in done):
        print(f"CelebA already set up at {root}; verified, nothing changed: {images} images, "
              + ", ".join(done) + ".")
    else:
        print(f"CelebA ready at {root}: {images} images; " + "; ".join(done) + ".")
    if args.annotations:
        notes, complete = fetch_annotations(args, root, imagesets.list_images(folder, folder))
        for note in annotation_notes + notes:
            print(f"annotations: {note}", file=sys.stdout if complete else sys.stderr)
    where = "" if root == Path(Config().data_dir) else f" --data_dir {root}"
    print(f"next: python train.py{where}")
    return EXIT_OK


def main(argv=None):
    args = parse_args(argv)
    try:
        return set_up(args)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UserError as err:  # the cache could not be written (imagesets.DataError)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DISK
    except OSError as err:
        print(f"error: {err.filename or args.data_dir}: {err.strerror or err}; free some disk "
              "space or choose a writable --data_dir", file=sys.stderr)
        return EXIT_DISK
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
