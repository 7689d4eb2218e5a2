"""celeba_setup.py against a local HTTP server: download, resume, verification, idempotence."""
import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import celeba
import celeba_setup
import imagesets

NUMBERS = (1, 2, 162771, 182638, 202599)  # train, train, validation, test, test
PARTITION_TXT = "000001.jpg 0\n000002.jpg 0\n162771.jpg 1\n182638.jpg 2\n202599.jpg 2\n"
PARTITION_CSV = "image_id,partition\n" + PARTITION_TXT.replace(" ", ",")


def jpeg(n):
    pixels = np.random.default_rng(n).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def tiny_celeba_zip(folder="img_align_celeba/", extra=(), numbers=NUMBERS,
                    compression=zipfile.ZIP_STORED):
    """A zip laid out like img_align_celeba.zip: a few 178x218 JPEGs, stored uncompressed.
    folder: where the images are (Kaggle's: img_align_celeba/img_align_celeba/); extra:
    (name, text) members beside them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if folder:
            archive.writestr(folder, "")
        for n in numbers:
            archive.writestr(f"{folder}{n:06d}.jpg", jpeg(n))
        for name, text in extra:
            archive.writestr(name, text)
    return buffer.getvalue()


def kaggle_zip(partition=PARTITION_CSV):
    """Laid out like Kaggle's celeba-dataset archive: nested folder, CSV annotations."""
    return tiny_celeba_zip("img_align_celeba/img_align_celeba/", compression=zipfile.ZIP_DEFLATED,
                           extra=[("list_eval_partition.csv", partition),
                                  ("list_attr_celeba.csv", "image_id,Smiling\n000001.jpg,1\n"),
                                  ("list_landmarks_align_celeba.csv", "image_id,lefteye_x\n"),
                                  ("list_bbox_celeba.csv", "image_id,x_1\n")])


ZIP = tiny_celeba_zip()
ZIP_MD5 = hashlib.md5(ZIP).hexdigest()


@pytest.fixture(autouse=True)
def no_annotation_downloads(monkeypatch):
    """The annotation files have their own tests (test_celeba_annotations.py); here nothing
    tries the internet for them."""
    monkeypatch.setattr(celeba_setup, "ANNOTATION_SOURCES", {})


class Server:
    """Serves ZIP at /celeba.zip with Range support, counting requests and bytes sent.

    drop_after: the next response stops after this many bytes (the connection is closed).
    ignore_range: answer 200 with the whole file, as some servers do.
    /drive: a Google-Drive-like warning page whose form leads to the file; /page: a web page
    without one; anything else: 404.
    """

    def __init__(self):
        self.requests, self.bytes_sent = [], 0
        self.drop_after, self.ignore_range = None, False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith("/celeba.zip"):
                    server.send_zip(self)
                elif self.path == "/drive":
                    self.send_page(f'<html><form id="download-form" action="{server.url}'
                                   '/celeba.zip" method="get"><input type="hidden" name="id" '
                                   'value="x"><input type="hidden" name="confirm" value="t">'
                                   "</form></html>")
                elif self.path == "/page":
                    self.send_page("<html><title>Quota exceeded</title>Too many users</html>")
                else:
                    self.send_error(404)

            def send_page(self, html):
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def send_zip(self, handler):
        asked = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        start = int(asked.group(1)) if asked and not self.ignore_range else 0
        if start >= len(ZIP):
            handler.send_error(416)
            return
        body = ZIP[start:]
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(ZIP) - 1}/{len(ZIP)}")
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if self.drop_after is not None:
            body, self.drop_after = body[: self.drop_after], None
        handler.wfile.write(body)
        self.bytes_sent += len(body)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def run(root, *extra, md5=ZIP_MD5, urls=None):
    args = ["--data_dir", str(root), "--md5", md5, "--expected_images", str(len(NUMBERS)),
            "--image_size", "16", "--workers", "1"]
    for url in urls or []:
        args += ["--url", url]
    return celeba_setup.main(args + list(extra))


def assert_set_up(root):
    folder = root / celeba.CELEBA_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [f"{n:06d}.jpg" for n in NUMBERS]
    assert (root / celeba_setup.PARTITION_FILE).read_text() == \
        "000001.jpg 0\n000002.jpg 0\n162771.jpg 1\n182638.jpg 2\n202599.jpg 2\n"
    assert imagesets.read_cache(root, 16)["files"] == \
        [f"img_align_celeba/{n:06d}.jpg" for n in NUMBERS]
    assert not list(root.glob("*.part")) and not list(root.rglob("*.tmp*"))


def test_a_clean_download_is_verified_extracted_partitioned_and_preprocessed(tmp_path, server,
                                                                            capsys):
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert_set_up(tmp_path)
    assert (tmp_path / celeba_setup.ZIP_NAME).read_bytes() == ZIP
    assert server.bytes_sent == len(ZIP) and len(server.requests) == 1
    assert "CelebA ready" in capsys.readouterr().out


def test_a_broken_transfer_resumes_and_fetches_only_the_missing_bytes(tmp_path, server):
    server.drop_after = 10_000
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert_set_up(tmp_path)
    assert server.bytes_sent == len(ZIP)  # 10,000 bytes, then exactly the rest
    assert [r for _, r in server.requests] == [None, "bytes=10000-"]


def test_a_partial_file_from_an_earlier_run_is_continued(tmp_path, server):
    (tmp_path / (celeba_setup.ZIP_NAME + ".part")).write_bytes(ZIP[:7_000])
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert_set_up(tmp_path)
    assert server.bytes_sent == len(ZIP) - 7_000 and server.requests[0][1] == "bytes=7000-"


def test_a_server_that_ignores_range_gets_a_fresh_whole_download(tmp_path, server):
    (tmp_path / (celeba_setup.ZIP_NAME + ".part")).write_bytes(ZIP[:7_000])
    server.ignore_range = True
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert_set_up(tmp_path)
    assert (tmp_path / celeba_setup.ZIP_NAME).read_bytes() == ZIP


def test_a_google_drive_style_warning_page_is_confirmed(tmp_path, server):
    assert run(tmp_path, urls=[server.url + "/drive"]) == 0
    assert_set_up(tmp_path)
    assert server.requests[1][0] == "/celeba.zip?id=x&confirm=t"


def test_a_download_with_the_wrong_checksum_is_refused_and_never_extracted(tmp_path, server,
                                                                          capsys):
    code = run(tmp_path, md5="0" * 32, urls=[server.url + "/celeba.zip"])
    assert code == celeba_setup.EXIT_NO_SOURCE
    assert f"MD5 {ZIP_MD5}, expected {'0' * 32}" in capsys.readouterr().out
    assert not (tmp_path / celeba.CELEBA_FOLDER).exists()
    assert not (tmp_path / celeba_setup.ZIP_NAME).exists()
    assert not (tmp_path / (celeba_setup.ZIP_NAME + ".part")).exists()  # not resumed from


def test_a_given_zip_with_another_checksum_is_checked_by_content_and_used(tmp_path, capsys):
    given = tmp_path / "mine.zip"
    given.write_bytes(ZIP)
    assert run(tmp_path / "celeba", "--zip", str(given), md5="0" * 32) == 0
    assert_set_up(tmp_path / "celeba")
    out = capsys.readouterr().out
    assert f"{given}: not the authors' archive (MD5 {ZIP_MD5}, expected {'0' * 32}), so " \
        "checked by content: 5 images named 000001.jpg to 202599.jpg in img_align_celeba/" in out


# --- any zip or folder whose contents are CelebA (EXPECTED_IMAGES patched to the few here) --

@pytest.fixture
def small_celeba(monkeypatch):
    monkeypatch.setattr(celeba_setup, "EXPECTED_IMAGES", len(NUMBERS))


def set_up(root, *extra):
    """With the authors' checksum, so that these zips are checked by content."""
    return celeba_setup.main(["--data_dir", str(root), "--image_size", "16", "--workers", "1",
                              *extra])


def one_line(text, *parts):
    lines = [line for line in text.splitlines() if all(p in line for p in parts)]
    assert len(lines) == 1, (parts, text)
    return lines[0]


def test_kaggles_zip_is_checked_by_content_and_its_csv_partition_read(tmp_path, small_celeba,
                                                                      capsys):
    given, archive = tmp_path / "archive.zip", kaggle_zip()  # its members stamped with now
    given.write_bytes(archive)
    assert set_up(tmp_path / "celeba", "--zip", str(given)) == 0
    assert_set_up(tmp_path / "celeba")
    out = capsys.readouterr().out
    line = one_line(out, "checked by content")
    assert line.startswith(f"{given}: not the authors' archive ({len(archive)} bytes, "
                           f"expected {celeba_setup.ZIP_BYTES})")
    assert "5 images named 000001.jpg to 202599.jpg in img_align_celeba/img_align_celeba/, " \
        "5 of them decoded (extraction checks every file's CRC; preprocessing skips and names" \
        in line
    assert "partition: its list_eval_partition.csv agrees with the official split" in out
    assert given.read_bytes() == archive  # the user's archive left as it was


def test_a_repacked_zip_in_the_authors_layout_with_a_txt_partition(tmp_path, small_celeba,
                                                                   capsys):
    root = tmp_path / "celeba"
    root.mkdir()
    (root / celeba_setup.ZIP_NAME).write_bytes(tiny_celeba_zip(
        extra=[("list_eval_partition.txt", PARTITION_TXT)], compression=zipfile.ZIP_DEFLATED))
    assert set_up(root) == 0
    assert_set_up(root)
    out = capsys.readouterr().out
    one_line(out, "checked by content", "in img_align_celeba/, 5 of them decoded")
    assert "partition: its list_eval_partition.txt agrees with the official split" in out


def test_an_extracted_folder_is_checked_by_content_and_imported(tmp_path, small_celeba, capsys):
    kaggle = tmp_path / "celeba-dataset"
    with zipfile.ZipFile(io.BytesIO(kaggle_zip())) as archive:
        archive.extractall(kaggle)
    assert set_up(tmp_path / "celeba", "--folder", str(kaggle)) == 0
    assert_set_up(tmp_path / "celeba")
    out = capsys.readouterr().out
    one_line(out, f"{kaggle}: a folder, so checked by content: 5 images named 000001.jpg to "
                  "202599.jpg in img_align_celeba/img_align_celeba/, 5 of them decoded "
                  "(preprocessing skips")
    assert "its list_eval_partition.csv agrees" in out
    assert len(list(kaggle.rglob("*.jpg"))) == len(NUMBERS)  # the user's copy is left alone


WRONG_PARTITION = PARTITION_CSV.replace("000002.jpg,0", "000002.jpg,2")


@pytest.mark.parametrize("archive, why", [
    (tiny_celeba_zip(numbers=NUMBERS[:-1]), "holds 4 images named like CelebA's (NNNNNN.jpg) "
     "in img_align_celeba/; CelebA has 5, 000001.jpg to 202599.jpg"),
    (tiny_celeba_zip(numbers=(*NUMBERS[:-1], 202600)), "202600.jpg among them beyond 202599.jpg"),
    (tiny_celeba_zip(extra=[("img_align_celeba/000003.jpg", "not a JPEG")],
                     numbers=(1, 2, 162771, 182638)), "000003.jpg cannot be decoded"),
    (kaggle_zip(WRONG_PARTITION), "list_eval_partition.csv puts 000002.jpg in partition 2, "
     "CelebA's official split in 0; these images are not numbered as CelebA's"),
], ids=["an image missing", "a number beyond CelebA", "undecodable", "another partition"])
def test_a_given_zip_whose_contents_are_not_celeba_is_refused_in_one_line(
        tmp_path, small_celeba, capsys, archive, why):
    given = tmp_path / "mine.zip"
    given.write_bytes(archive)
    assert set_up(tmp_path / "celeba", "--zip", str(given)) == celeba_setup.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {given}") and why in err
    assert "delete" not in err and "Kaggle's celeba-dataset zip" in err  # it is the user's file
    assert given.read_bytes() == archive
    assert not (tmp_path / "celeba" / celeba.CELEBA_FOLDER).exists()


FORTY_TWO = tuple(range(1, 43))


def damaged_celeba_zip(zero_byte=(), truncated=()):
    """42 images in the authors' layout; zero_byte and truncated: numbers of the damaged ones
    (the zip itself is sound: every member's CRC is right)."""
    damaged = set(zero_byte) | set(truncated)
    extra = [(f"img_align_celeba/{n:06d}.jpg", b"") for n in zero_byte] + \
        [(f"img_align_celeba/{n:06d}.jpg", jpeg(n)[:len(jpeg(n)) // 2]) for n in truncated]
    return tiny_celeba_zip(numbers=[n for n in FORTY_TWO if n not in damaged], extra=extra)


def set_up_forty_two(root, given, *extra):
    return celeba_setup.main(["--data_dir", str(root), "--zip", str(given), "--expected_images",
                              "42", "--image_size", "16", "--workers", "1", *extra])


def test_a_zip_whose_checksum_matches_is_set_up_with_its_damaged_images_skipped_and_named(
        tmp_path, capsys):
    archive = damaged_celeba_zip(zero_byte=[41], truncated=[7])
    given = tmp_path / "mine.zip"
    given.write_bytes(archive)
    root = tmp_path / "celeba"
    assert set_up_forty_two(root, given, "--md5", hashlib.md5(archive).hexdigest()) == 0
    out = capsys.readouterr().out
    line = one_line(out, "size and MD5 verified")
    assert "42 images named 000001.jpg to 000042.jpg in img_align_celeba/, 42 of them " \
        "decoded, 2 cannot be: img_align_celeba/000007.jpg, img_align_celeba/000041.jpg " \
        "(extraction checks every file's CRC; preprocessing skips and names" in line
    assert len(list((root / celeba.CELEBA_FOLDER).iterdir())) == 42
    manifest = imagesets.read_cache(root, 16)
    assert sorted(manifest["skipped"]) == ["img_align_celeba/000007.jpg",
                                           "img_align_celeba/000041.jpg"]
    assert len(manifest["files"]) == 42
    assert "cache preprocessed_16.npy built (2 unreadable images left out, named in " \
        "preprocessed_16.json)" in one_line(out, "CelebA ready")


def test_without_a_checksum_a_few_undecodable_images_are_tolerated_and_named(tmp_path, capsys):
    given = tmp_path / "mine.zip"
    given.write_bytes(damaged_celeba_zip(truncated=[3, 30]))
    assert set_up_forty_two(tmp_path / "celeba", given) == 0
    assert 2 / 42 <= celeba_setup.MAX_UNDECODABLE_SHARE < 3 / 42  # 2 of 42: within the share
    line = one_line(capsys.readouterr().out, "checked by content")
    assert "2 cannot be: img_align_celeba/000003.jpg, img_align_celeba/000030.jpg" in line
    assert sorted(imagesets.read_cache(tmp_path / "celeba", 16)["skipped"]) == \
        ["img_align_celeba/000003.jpg", "img_align_celeba/000030.jpg"]


def test_without_a_checksum_mostly_undecodable_images_are_refused_in_one_line(tmp_path, capsys):
    given = tmp_path / "mine.zip"
    given.write_bytes(damaged_celeba_zip(zero_byte=range(1, 31)))
    assert set_up_forty_two(tmp_path / "celeba", given) == celeba_setup.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {given}: 30 of the 42 sampled images "
                                                   "cannot be decoded, more than the 5%")
    assert "img_align_celeba/000001.jpg cannot be decoded" in err
    assert not (tmp_path / "celeba" / celeba.CELEBA_FOLDER).exists()


def test_a_matching_checksum_vouches_for_a_copy_beyond_the_share(tmp_path, capsys):
    archive = damaged_celeba_zip(zero_byte=range(1, 31))  # refused without its checksum
    given = tmp_path / "mine.zip"
    given.write_bytes(archive)
    root = tmp_path / "celeba"
    assert set_up_forty_two(root, given, "--md5", hashlib.md5(archive).hexdigest()) == 0
    assert "42 of them decoded, 30 cannot be: img_align_celeba/000001.jpg, " \
        "img_align_celeba/000002.jpg" in one_line(capsys.readouterr().out, "MD5 verified")
    assert len(imagesets.read_cache(root, 16)["skipped"]) == 30


def test_a_wrong_zip_in_the_data_folder_is_refused_with_what_to_do(tmp_path, small_celeba,
                                                                   capsys):
    (tmp_path / celeba_setup.ZIP_NAME).write_bytes(tiny_celeba_zip(numbers=(1, 2)))
    assert set_up(tmp_path) == celeba_setup.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"Move {tmp_path / celeba_setup.ZIP_NAME} away and run again to download" in err


def test_both_partition_forms_read_alike():
    txt = celeba_setup.parse_partition(PARTITION_TXT, "txt")
    assert txt == {f"{n:06d}.jpg": celeba.celeba_partition(n) for n in NUMBERS}
    assert celeba_setup.parse_partition("\ufeff" + PARTITION_CSV.replace("\n", "\r\n"),
                                        "csv") == txt
    with pytest.raises(celeba.BadInput, match="expected the header image_id,partition"):
        celeba_setup.parse_partition("a,b\n000001.jpg,0\n", "x.csv")


def test_a_given_zip_is_used_where_it_is(tmp_path):
    given = tmp_path / "downloads" / "celeba.zip"
    given.parent.mkdir()
    given.write_bytes(ZIP)
    assert run(tmp_path / "celeba", "--zip", str(given)) == 0
    assert_set_up(tmp_path / "celeba")
    assert not (tmp_path / "celeba" / celeba_setup.ZIP_NAME).exists()


def test_a_damaged_archive_fails_its_crc_check_and_is_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(celeba_setup, "SAMPLE_DECODES", 1)  # the sample misses 000002.jpg
    damaged = bytearray(ZIP)
    with zipfile.ZipFile(io.BytesIO(ZIP)) as archive:
        member = archive.getinfo("img_align_celeba/000002.jpg")
    damaged[member.header_offset + 30 + len(member.filename) + 500] ^= 0xFF  # inside its data
    given = tmp_path / "damaged.zip"
    given.write_bytes(bytes(damaged))
    code = run(tmp_path / "celeba", "--zip", str(given),
               md5=hashlib.md5(bytes(damaged)).hexdigest())
    assert code == celeba_setup.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{given} is damaged" in err and "delete" not in err
    assert sorted(p.name for p in (tmp_path / "celeba" / celeba.CELEBA_FOLDER).iterdir()) == \
        ["000001.jpg"]  # extracted before the damaged member; nothing of 000002.jpg


def test_a_complete_setup_is_only_verified_and_left_untouched(tmp_path, server, capsys):
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    server.requests.clear()
    capsys.readouterr()
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert server.requests == []
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert "already set up" in capsys.readouterr().out


def test_an_interrupted_extraction_is_completed(tmp_path, server):
    assert run(tmp_path, "--no-preprocess", urls=[server.url + "/celeba.zip"]) == 0
    assert imagesets.read_cache(tmp_path, 16) is None
    (tmp_path / celeba.CELEBA_FOLDER / "182638.jpg").unlink()
    server.requests.clear()
    assert run(tmp_path, urls=[server.url + "/celeba.zip"]) == 0
    assert_set_up(tmp_path)
    assert server.requests == []  # the zip on disk was enough


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_when_every_source_fails_the_manual_steps_are_printed(tmp_path, server, capsys):
    urls = [server.url + "/gone", server.url + "/page", f"http://127.0.0.1:{closed_port()}/x"]
    assert run(tmp_path, urls=urls) == celeba_setup.EXIT_NO_SOURCE
    err = capsys.readouterr().err
    for url in urls:
        assert url in err
    assert "HTTP 404" in err and "Quota exceeded" in err
    assert celeba_setup.CELEBA_PAGE in err and celeba_setup.ZIP_MD5 in err
    assert str(tmp_path / celeba_setup.ZIP_NAME) in err
    assert f"python celeba_setup.py --data_dir {tmp_path}" in err and "--zip" in err
    assert not (tmp_path / celeba.CELEBA_FOLDER).exists()


def test_the_source_list_and_checksum_are_plain_constants():
    assert celeba_setup.SOURCES and all(u.startswith("https://") for u in celeba_setup.SOURCES)
    assert re.fullmatch(r"[0-9a-f]{32}", celeba_setup.ZIP_MD5)
