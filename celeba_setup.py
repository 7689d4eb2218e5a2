"""Set up aligned CelebA for train.py: download, verify, extract, partition, preprocess.

    python celeba_setup.py                      # into data/celeba (train.py's default)
    python celeba_setup.py --data_dir DIR       # elsewhere (then train.py --data_dir DIR)
    python celeba_setup.py --zip PATH           # an img_align_celeba.zip you already have
    python celeba_setup.py --no-preprocess      # skip the preprocessed cache

Steps, each skipped when already done (a second run only verifies, changes nothing and
makes no request): fetch img_align_celeba.zip (202,599 JPEGs, 1.4 GB) from the first source
that works, resuming a broken download; check its size and MD5; extract it with a CRC check
of every file; write the official train/validation/test partition (list_eval_partition.txt);
decode every image once into DIR/preprocessed_<size>.npy so that training decodes no JPEG.

Exit status: 0 CelebA is ready; 1 no source gave a verified archive (the manual steps are
printed); 2 a bad archive or folder is in the way, or a bad argument; 3 the disk refused (full
or not writable); 130 interrupted (run the same command again to continue).
"""
import argparse
import hashlib
import http.client
import http.cookiejar
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from html import unescape
from pathlib import Path

from tqdm import tqdm

import data
from configs import Config, UserError

ZIP_NAME = "img_align_celeba.zip"
ZIP_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"   # the authors' archive
ZIP_BYTES = 1_443_490_838
EXPECTED_IMAGES = 202_599
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
CHUNK = 1 << 20
TIMEOUT_S = 60
MAX_ATTEMPTS = 20        # per source, while each attempt makes progress
EXIT_OK, EXIT_NO_SOURCE, EXIT_BAD_INPUT, EXIT_DISK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class SourceFailed(Exception):
    """This source cannot give the archive; the next one is tried."""


class BadInput(UserError):
    """An archive or folder that must not be used; the message says what to do."""


# --- download -----------------------------------------------------------------------------

def _opener():
    # Google Drive's older confirmation flow keeps its token in a cookie.
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _confirmed_url(page, url):
    """The real download URL behind Google Drive's large-file warning page, or None."""
    form = re.search(r'<form[^>]*id="download-form"[^>]*action="([^"]+)"(.*?)</form>', page,
                     re.DOTALL)
    if form:
        fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"',
                                 form.group(2)))
        return unescape(form.group(1)) + "?" + urllib.parse.urlencode(fields)
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        return url + "&confirm=" + token.group(1)
    return None


def _open(opener, url, start):
    """The response for the archive from byte `start`, past any confirmation page."""
    headers = {"User-Agent": "celeba_setup.py"}
    if start:
        headers["Range"] = f"bytes={start}-"
    for _ in range(3):  # the page, then the file
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
        if not response.headers.get("Content-Type", "").startswith("text/html"):
            return response
        page = response.read(2 * CHUNK).decode("utf-8", "replace")
        response.close()
        url = _confirmed_url(page, url)
        if url is None:
            title = re.search(r"<title>(.*?)</title>", page, re.DOTALL)
            raise SourceFailed("answered with a web page, not the archive"
                               + (f" ({unescape(title.group(1)).strip()})" if title else "")
                               + "; often Google Drive's daily quota: try later")
    raise SourceFailed("kept answering with web pages")


def _transfer(opener, url, part, expected_bytes):
    """One request appending to `part`; raises ConnectionError on a short transfer."""
    start = part.stat().st_size if part.exists() else 0
    if start and start == expected_bytes:
        return  # a previous run got every byte; only the check is left
    try:
        response = _open(opener, url, start)
    except urllib.error.HTTPError as err:
        if err.code == 416:
            part.unlink()  # a partial file longer than the server's: useless
            raise SourceFailed(f"refused to resume at byte {start}; partial file discarded"
                               ) from None
        raise SourceFailed(f"HTTP {err.code} {err.reason}") from None
    with response:
        length = int(response.headers.get("Content-Length", -1))
        if response.status != 206:  # the server ignored the Range: the whole file again
            start = 0
        total = start + length if length >= 0 else None
        if expected_bytes and total and total != expected_bytes:
            raise SourceFailed(f"offers {total} bytes; the archive has {expected_bytes}")
        received = 0
        with open(part, "r+b" if start else "wb") as f, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"download {urllib.parse.urlsplit(url).hostname}") as bar:
            f.seek(start)
            f.truncate()
            while chunk := response.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if length >= 0 and received < length:
        raise ConnectionError(f"connection closed after {start + received} of {total} bytes")


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                     unit_divisor=1024, desc=f"MD5 {path.name}") as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_archive(path, md5, expected_bytes):
    """None when the file has the expected size and MD5, else what is wrong."""
    size = path.stat().st_size
    if expected_bytes and size != expected_bytes:
        return f"{size} bytes, expected {expected_bytes}"
    actual = md5_of(path)
    return None if actual == md5 else f"MD5 {actual}, expected {md5}"


def download(url, dest, md5, expected_bytes):
    """Fetch url to dest through dest.part (resumed across attempts and runs), verified."""
    part = dest.with_name(dest.name + ".part")
    opener = _opener()
    for _ in range(MAX_ATTEMPTS):
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(opener, url, part, expected_bytes)
            break
        except (OSError, http.client.HTTPException) as err:
            now = part.stat().st_size if part.exists() else 0
            if now <= before:  # another try is worth it only while bytes keep coming
                raise SourceFailed(f"{type(err).__name__}: {err}") from None
            tqdm.write(f"  transfer broken at byte {now} ({err}); resuming")
    else:
        raise SourceFailed(f"still incomplete after {MAX_ATTEMPTS} attempts")
    problem = verify_archive(part, md5, expected_bytes)
    if problem:
        part.unlink()  # never resume from, or use, bytes of the wrong file
        raise SourceFailed(f"the file is not the CelebA archive ({problem})")
    os.replace(part, dest)


def fetch_archive(dest, urls, md5, expected_bytes):
    """Download from the first url that gives the verified archive; the failures if none does."""
    failures = []
    for url in urls:
        print(f"trying {url}")
        try:
            download(url, dest, md5, expected_bytes)
            return []
        except SourceFailed as err:
            print(f"  failed: {err}")
            failures.append((url, str(err)))
    return failures


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
  - Kaggle's "jessicali9530/celeba-dataset" (needs an account): extract it and move its
    inner img_align_celeba folder to {root / data.CELEBA_FOLDER}
Then put the zip at {root / ZIP_NAME} and run
    python celeba_setup.py --data_dir {root}
or leave it where it is and run
    python celeba_setup.py --data_dir {root} --zip PATH/TO/{ZIP_NAME}
"""


# --- extraction, partition, cache ---------------------------------------------------------

def _image_members(archive):
    """The archive's images in img_align_celeba/ (other members, e.g. __MACOSX, are ignored)."""
    prefix = data.CELEBA_FOLDER + "/"
    return [m for m in archive.infolist()
            if m.filename.startswith(prefix) and "/" not in m.filename[len(prefix):]
            and m.filename.lower().endswith(data.IMAGE_EXTENSIONS)]


def extract(zip_path, root, expected_images):
    """Extract the images, checking every CRC; files already extracted whole are kept."""
    folder = root / data.CELEBA_FOLDER
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _image_members(archive)
            if len(members) < expected_images:
                raise BadInput(f"{zip_path} holds {len(members)} images in "
                               f"{data.CELEBA_FOLDER}/, expected {expected_images}; it is not "
                               "the CelebA archive: delete it and run again")
            folder.mkdir(parents=True, exist_ok=True)
            for member in tqdm(members, unit="img", desc=f"extract {zip_path.name}"):
                _extract_one(archive, member, folder / Path(member.filename).name)
    except (zipfile.BadZipFile, EOFError) as err:
        raise BadInput(f"{zip_path} is damaged ({err}); delete it and run again "
                       "(or pass another copy with --zip)") from None


def _extract_one(archive, member, target):
    if target.exists() and target.stat().st_size == member.file_size:
        return
    tmp = target.with_name(target.name + ".tmp")
    # Reading a member to its end checks its CRC (BadZipFile on a mismatch); a file appears
    # under its own name only once whole, so an interrupted extraction is simply continued.
    try:
        with archive.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def count_images(folder):
    return len(data.list_images(folder, folder)) if folder.is_dir() else 0


def partition_text(folder):
    """list_eval_partition.txt for the images present: '000001.jpg 0' (0 train, 1 val, 2 test)."""
    lines = []
    for name in data.list_images(folder, folder):
        part = data.celeba_partition(data.celeba_number(name))
        if part is not None:
            lines.append(f"{name} {part}\n")
    return "".join(lines)


def write_if_changed(path, text):
    """Write only when the content differs, so a complete setup is left untouched."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def cache_is_current(root, image_size):
    manifest = data.read_cache(root, image_size)
    listing = data.list_images(root / data.CELEBA_FOLDER, root)
    return manifest is not None and sorted(manifest["files"]) == listing


# --- the whole set-up ---------------------------------------------------------------------

def parse_args(argv):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[-1])
    parser.add_argument("--data_dir", default=defaults.data_dir,
                        help="where img_align_celeba/ goes (default: %(default)s)")
    parser.add_argument("--zip", type=Path, help=f"use this {ZIP_NAME} instead of downloading")
    parser.add_argument("--no-preprocess", dest="preprocess", action="store_false",
                        help="skip the preprocessed cache (training then decodes JPEGs)")
    parser.add_argument("--image_size", type=int, default=defaults.image_size,
                        help="size of the preprocessed images (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="preprocessing processes (default: every CPU core)")
    parser.add_argument("--url", action="append", dest="urls",
                        help="download from this URL instead of the built-in sources (repeatable)")
    parser.add_argument("--md5", default=ZIP_MD5, help="expected MD5 of the archive")
    parser.add_argument("--expected_images", type=int, default=EXPECTED_IMAGES,
                        help="images the archive must hold (default: %(default)s)")
    return parser.parse_args(argv)


def obtain_archive(args, root):
    """The path of a verified archive, or None with the manual steps printed."""
    # The size is known for the authors' archive only; another --md5 means another file.
    expected_bytes = ZIP_BYTES if args.md5 == ZIP_MD5 else None
    given = args.zip or root / ZIP_NAME
    if args.zip and not args.zip.is_file():
        raise BadInput(f"--zip {args.zip}: no such file; give the path of {ZIP_NAME}")
    if given.is_file():
        print(f"verifying {given}")
        problem = verify_archive(given, args.md5, expected_bytes)
        if problem:
            raise BadInput(f"{given} is not the CelebA archive ({problem}); delete it and run "
                           "again to download it, or pass a good copy with --zip PATH")
        return given
    failures = fetch_archive(given, args.urls or SOURCES, args.md5, expected_bytes)
    if failures:
        print(manual_instructions(root, failures), file=sys.stderr)
        return None
    return given


def set_up(args):
    root = Path(args.data_dir)
    folder = root / data.CELEBA_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    done = []
    if count_images(folder) >= args.expected_images:
        done.append("images already extracted")
    else:
        archive = obtain_archive(args, root)
        if archive is None:
            return EXIT_NO_SOURCE
        extract(archive, root, args.expected_images)
    images = count_images(folder)
    if images < args.expected_images:
        raise BadInput(f"{folder} has {images} images after extraction, expected "
                       f"{args.expected_images}; delete the folder and run again")
    changed = write_if_changed(root / PARTITION_FILE, partition_text(folder))
    done.append(f"{PARTITION_FILE} {'written' if changed else 'already correct'}")
    if args.preprocess:
        cache = data.cache_path(root, args.image_size)
        if cache_is_current(root, args.image_size):
            done.append(f"cache {cache.name} already current")
        else:
            data.preprocess_folder(folder, cache, args.image_size, workers=args.workers)
            done.append(f"cache {cache.name} built")
    if all("already" in step for step in done):
        print(f"CelebA already set up at {root}; verified, nothing changed: {images} images, "
              + ", ".join(done) + ".")
    else:
        print(f"CelebA ready at {root}: {images} images; " + "; ".join(done) + ".")
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
    except UserError as err:  # the cache could not be written (data.DataError)
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
