"""Fetching one published file: from the first of its sources that gives it, resuming a broken
transfer across attempts and runs (through DEST.part), verified by size and MD5 where known.

    fetch_file(dest, urls, md5, expected_bytes) -> failures   # [] once dest is verified
    download(url, dest, md5, expected_bytes)                     # one source; SourceFailed

No project module is imported here (the set-up scripts of CelebA and of the benchmarks build on
it), only the standard library and tqdm for the progress bars.
"""
import hashlib
import http.client
import http.cookiejar
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from html import unescape

from tqdm import tqdm

CHUNK = 1 << 20
TIMEOUT_S = 60
MAX_ATTEMPTS = 20        # per source, while each attempt makes progress
USER_AGENT = "bom_vae_v15-setup"  # names the project to hosts, instead of urllib's default


class SourceFailed(Exception):
    """This source cannot give the file; the next one is tried."""


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
    """The response for the file from byte `start`, past any confirmation page."""
    headers = {"User-Agent": USER_AGENT}
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
            raise SourceFailed("answered with a web page, not the file"
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
            raise SourceFailed(f"offers {total} bytes; the file has {expected_bytes}")
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


def verify_file(path, md5, expected_bytes):
    """None when the file has the expected size and MD5 (md5 None: any), else what is wrong."""
    size = path.stat().st_size
    if expected_bytes and size != expected_bytes:
        return f"{size} bytes, expected {expected_bytes}"
    if md5 is None:
        return None
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
    problem = verify_file(part, md5, expected_bytes)
    if problem:
        part.unlink()  # never resume from, or use, bytes of the wrong file
        raise SourceFailed(f"the file is not the expected one ({problem})")
    os.replace(part, dest)


def fetch_file(dest, urls, md5, expected_bytes):
    """Download from the first url that gives the verified file; the (url, reason) failures if
    none does (then nothing is at dest)."""
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
