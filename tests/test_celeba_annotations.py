"""CelebA's attribute and aligned-landmark files: fetched by celeba_setup.py (or taken from the
zip), checked, and used by evaluation for the face-level probes on the test partition."""
import json
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

import benchmarks
import celeba
import celeba_setup
import disentanglement
import probes
import train
from test_celeba_setup import NUMBERS, ZIP_MD5, Server, tiny_celeba_zip

ATTRIBUTE_NAMES = sorted(benchmarks.CELEBA_ATTRIBUTE_KINDS)


def attribute_text(numbers, csv=False, seed=0):
    rng = np.random.default_rng(seed)
    rows = {f"{n:06d}.jpg": rng.choice([-1, 1], 40) for n in numbers}
    if csv:
        return "image_id," + ",".join(ATTRIBUTE_NAMES) + "\n" + "".join(
            f"{name}," + ",".join(map(str, v)) + "\n" for name, v in rows.items())
    return f"{len(rows)}\n" + " ".join(ATTRIBUTE_NAMES) + "\n" + "".join(
        f"{name} " + " ".join(f"{x:2d}" for x in v) + "\n" for name, v in rows.items())


def landmark_text(numbers, csv=False, seed=1):
    rng = np.random.default_rng(seed)
    rows = {f"{n:06d}.jpg": rng.integers(60, 160, 10) for n in numbers}
    header = celeba.LANDMARK_COLUMNS
    if csv:
        return "image_id," + ",".join(header) + "\n" + "".join(
            f"{name}," + ",".join(map(str, v)) + "\n" for name, v in rows.items())
    return f"{len(rows)}\n" + " ".join(header) + "\n" + "".join(
        f"{name} " + " ".join(map(str, v)) + "\n" for name, v in rows.items())


def identity_text(numbers, people=5):
    """The authors' form: 'NNNNNN.jpg person' per line, no count or header."""
    return "".join(f"{n:06d}.jpg {1 + i % people}\n" for i, n in enumerate(numbers))


FILES = {celeba.ATTRIBUTES: attribute_text(NUMBERS),
         celeba.LANDMARKS: landmark_text(NUMBERS),
         celeba.IDENTITIES: identity_text(NUMBERS)}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    s = Server()
    real = s.httpd.RequestHandlerClass.do_GET

    def do_get(handler):  # /anno/NAME serves the annotation files
        name = handler.path.rpartition("/")[2]
        if handler.path.startswith("/anno/") and name in FILES:
            s.requests.append((handler.path, None))
            body = FILES[name].encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        else:
            real(handler)
    s.httpd.RequestHandlerClass.do_GET = do_get
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def run(root, *extra, urls=()):
    args = ["--data_dir", str(root), "--md5", ZIP_MD5, "--expected_images", str(len(NUMBERS)),
            "--image_size", "16", "--workers", "1"]
    for url in urls:
        args += ["--url", url]
    return celeba_setup.main(args + list(extra))


def test_the_annotations_are_fetched_checked_and_then_only_verified(tmp_path, server, capsys):
    anno = server.url + "/anno"
    assert run(tmp_path, "--annotations_from", anno, urls=[server.url + "/celeba.zip"]) == 0
    out = capsys.readouterr().out
    for name, text in FILES.items():
        assert (tmp_path / name).read_text() == text
        assert f"annotations: {name} downloaded from {anno}/{name} (checked by content)" in out
    assert not list(tmp_path.glob("*.download*"))
    names, attributes, columns, landmarks = celeba.read_annotations(tmp_path)
    assert names == ATTRIBUTE_NAMES and columns == list(celeba.LANDMARK_COLUMNS)
    assert set(attributes) == set(landmarks) == {f"{n:06d}.jpg" for n in NUMBERS}
    server.requests.clear()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert run(tmp_path, "--annotations_from", anno, urls=[server.url + "/celeba.zip"]) == 0
    assert server.requests == []
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert f"{celeba.LANDMARKS} already present, checked" in capsys.readouterr().out


def test_kaggles_csv_annotations_are_taken_from_its_zip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(celeba_setup, "EXPECTED_IMAGES", len(NUMBERS))
    monkeypatch.setattr(celeba_setup, "ANNOTATION_SOURCES", {})
    given = tmp_path / "archive.zip"
    given.write_bytes(tiny_celeba_zip(
        "img_align_celeba/img_align_celeba/", compression=zipfile.ZIP_DEFLATED, extra=[
            ("list_attr_celeba.csv", attribute_text(NUMBERS, csv=True)),
            ("list_landmarks_align_celeba.csv", landmark_text(NUMBERS, csv=True))]))
    root = tmp_path / "celeba"
    assert celeba_setup.main(["--data_dir", str(root), "--image_size", "16", "--workers", "1",
                              "--zip", str(given)]) == 0
    for name, text in list(FILES.items())[:2]:  # converted to the authors' form
        assert celeba.parse_annotation((root / name).read_text(), name, name) == \
            celeba.parse_annotation(text, name, name)
        assert (root / name).read_text().split("\n")[1] == text.split("\n")[1]
    captured = capsys.readouterr()
    assert "list_attr_celeba.txt taken from" in captured.out
    # Kaggle has no identity file: a note on stdout (optional), not a missing piece
    assert f"{celeba.IDENTITIES} could not be fetched" in captured.out
    assert "split the test partition by image without it" in captured.out
    assert not (root / celeba.IDENTITIES).exists()


@pytest.mark.parametrize("text, message", [
    (FILES[celeba.ATTRIBUTES].replace(" 1", " 2", 1), "row 3: attributes must be -1 or 1"),
    (attribute_text(NUMBERS[:-1]), "no row for 202599.jpg"),
    ("0\nlefteye_x\n", "is not that of CelebA's list_attr_celeba.txt"),
], ids=["a value", "a missing image", "another file"])
def test_a_wrong_annotation_download_is_refused_and_named(tmp_path, server, capsys,
                                                          text, message):
    FILES_BEFORE = dict(FILES)
    FILES[celeba.ATTRIBUTES] = text
    try:
        code = run(tmp_path, "--annotations_from", server.url + "/anno",
                   urls=[server.url + "/celeba.zip"])
    finally:
        FILES.update(FILES_BEFORE)
    assert code == 0  # the images are set up; training does not need the annotations
    captured = capsys.readouterr()
    assert message in captured.out
    assert "list_attr_celeba.txt could not be fetched" in captured.err
    assert celeba_setup.CELEBA_PAGE in captured.err
    assert not (tmp_path / celeba.ATTRIBUTES).exists()
    assert "is missing" in celeba.read_annotations(tmp_path)


def jpeg(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.mark.parametrize("with_identities", [True, False], ids=["by person", "by image"])
def test_evaluation_reports_landmarks_and_attributes_from_core_and_detail(tmp_path,
                                                                         with_identities):
    root = tmp_path / "celeba"
    folder = root / celeba.CELEBA_FOLDER
    folder.mkdir(parents=True)
    numbers = list(range(1, 17)) + list(range(182638, 182668))  # 16 train, 30 test
    for n in numbers:
        jpeg(folder / f"{n:06d}.jpg", n)
    (root / celeba.ATTRIBUTES).write_text(attribute_text(numbers))
    (root / celeba.LANDMARKS).write_text(landmark_text(numbers))
    if with_identities:
        (root / celeba.IDENTITIES).write_text(identity_text(numbers, people=6))
    out = tmp_path / "out"
    assert train.main(["--preset", "tiny", "--dataset", "celeba", "--data_dir", str(root),
                       "--epochs", "1", "--output_dir", str(out), "--tensorboard", "false",
                       "--eval_images", "8"]) == 0
    faces = json.loads((out / "final_metrics.json").read_text())["faces"]
    assert faces["images"] == 30
    report = (out / "report.md").read_text()
    if with_identities:  # 6 people of 5 test images each: 5 people (25 images) to fit
        assert faces["split"]["by"] == "identity" and faces["fit_images"] == 25
        assert (faces["split"]["fit_people"], faces["split"]["held_out_people"],
                faces["split"]["shared_people"]) == (5, 1, 0)
        assert "split by identity (identity_CelebA.txt): nobody is on both sides (5 people " \
               "on the fit side, 1 held out, 0 on both)" in report
    else:
        assert faces["split"]["by"] == "image" and faces["fit_images"] == 24
        assert "split by image (identity_CelebA.txt is absent): the same people" in report
    for row in faces["landmarks_r2"].values():  # values: R² (at most 1), not just keys
        assert all(v <= 1 for v in row.values())
    for row in faces["attributes"].values():
        assert all(math.isnan(v) or 0 <= v <= 1 for v in row.values())
    assert list(faces["landmarks_r2"]) == list(benchmarks.CELEBA_LANDMARKS)
    assert set(faces["attributes"]) == set(ATTRIBUTE_NAMES)
    assert set(faces["attribute_groups"]) == {"structure", "appearance", "mixed"}
    assert faces["attribute_kinds"]["Smiling"] == "structure"
    assert faces["attribute_kinds"]["Pale_Skin"] == "appearance"
    for text in ("## Faces: CelebA's landmarks and attributes", "| lefteye |",
                 "| Blond_Hair | appearance |", "![face_probes](face_probes.png)"):
        assert text in report, text
    assert (out / "face_probes.png").exists()


def test_without_annotations_the_report_says_how_to_get_them(tmp_path, tiny_cfg):
    tiny_cfg.dataset, tiny_cfg.data_dir = "celeba", str(tmp_path)
    faces = probes.face_report(None, tiny_cfg, "cpu")
    assert "list_attr_celeba.txt is missing" in faces["skipped"]
    assert f"python celeba_setup.py --data_dir {tmp_path}" in faces["skipped"]


def test_the_attribute_probe_scores_balanced_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    y = np.stack([x[:, 0] > 1.2, x[:, 1] > 0, rng.random(600) > 0.5], 1)

    def accuracy(k):
        return disentanglement.logistic_probe_accuracy(x[:400], y[:400, k], x[400:], y[400:, k])
    assert accuracy(0) > 0.9 and accuracy(1) > 0.9   # a rare class is not ignored
    assert abs(accuracy(2) - 0.5) < 0.1               # noise: chance
    y[:, 2] = True
    assert np.isnan(accuracy(2))                      # one class: nothing to tell apart


def test_attribute_kinds_cover_the_40_attributes():
    assert len(ATTRIBUTE_NAMES) == 40
    kinds = benchmarks.CELEBA_ATTRIBUTE_KINDS
    assert {kinds[a] for a in ("Black_Hair", "Blond_Hair", "Pale_Skin", "Heavy_Makeup")} == \
        {"appearance"}
    assert {kinds[a] for a in ("Smiling", "Mouth_Slightly_Open")} == {"structure"}


