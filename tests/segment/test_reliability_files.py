"""Issue 13, classes 1, 2, 11 and 12: files that are not files, model files that are valid
JSON but not valid models, ``--resume`` that must not trust what it finds, and a disk that
is full when a batch starts.

Every input is generated here (FIFOs with os.mkfifo, device paths, sparse files, model
files written by the test). Each command runs in a process of its own through
``benchmarks/reliability_table.py``, so exit statuses, stderr and hangs are the real ones.
The promise judged: one line on stderr naming the file, exit 1, no traceback, no hang, no
file left behind; and a batch records every entry it did not process, with a reason.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.support import odd_files as RT
from tests.support.images import gradient as make_image

#: Seconds a refusal may take: a FIFO or an endless stream must not be waited on.
QUICK = 20.0
FIT = ["-k", "3", "--max-iter", "10", "-q"]


def lines_of(text):
    return [line for line in text.splitlines() if line.strip()]


def run(argv, *, timeout=60.0, **fields):
    return RT.run_jobs([{"id": "x", "argv": [str(a) for a in argv], **fields}], timeout=timeout)[0]


def assert_refused(result, name, *patterns, code=1):
    """Exit ``code``, exactly one line on stderr naming ``name`` and matching every pattern,
    no traceback, no hang."""
    stderr = result["stderr"]
    assert not result["timed_out"], f"hung: {stderr[-300:]}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-1500:]
    lines = lines_of(stderr)
    assert result["code"] == code, (result["code"], stderr[-500:])
    assert len(lines) == 1, lines
    assert lines[0].startswith("segment: error: "), lines
    assert str(name) in lines[0], lines
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An image, its model file (k=3), its label map, and a truth map."""
    root = tmp_path_factory.mktemp("hostile-files")
    src = make_image(root / "photo.png")
    r = run(["image", src, *FIT, "--no-plots", "-o", root / "out"])
    assert r["code"] == 0, r["stderr"]
    truth = root / "truth.png"
    PILImage.fromarray((np.arange(24 * 32).reshape(24, 32) // 200).astype(np.uint8)).save(truth)
    model = root / "out" / "photo.model.json"
    return {
        "root": root,
        "src": src,
        "model": model,
        "doc": json.loads(model.read_text(encoding="utf-8")),
        "labels": root / "out" / "photo.labels.png",
        "truth": truth,
    }


def apply_with(made, model_path, tmp_path, **fields):
    out = tmp_path / "applied"
    r = run(["apply", made["src"], "--model", model_path, "-q", "-o", out], **fields)
    return r, out


# =============================================================================================
# Class 1: files that are not files
# =============================================================================================


def test_model_that_is_a_fifo(made, tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    r, out = apply_with(made, fifo, tmp_path, timeout=QUICK)
    assert_refused(r, fifo, r"not a regular file", r"FIFO")
    assert RT.files_under(out) == []


def test_model_that_is_a_link_to_a_fifo(made, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "model.json"
    link.symlink_to(fifo)
    r, _ = apply_with(made, link, tmp_path, timeout=QUICK)
    assert_refused(r, link, r"not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_model_that_is_a_device(made, tmp_path, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    r, out = apply_with(made, device, tmp_path, timeout=QUICK)
    assert_refused(r, device, r"not a regular file", r"device")
    assert RT.files_under(out) == []


def test_model_file_too_large_is_refused_without_reading_it(made, tmp_path):
    big = tmp_path / "big.model.json"
    with open(big, "wb") as f:  # sparse: 3 GiB of zeros that take no disk space
        f.truncate(3 << 30)
    r, _ = apply_with(made, big, tmp_path, timeout=QUICK)
    assert_refused(r, big, r"too large")
    assert r["cpu"] < 10.0


@pytest.mark.parametrize("which", ["truth", "segmentation"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "link-to-fifo"])
def test_compare_maps_that_are_not_files(made, tmp_path, which, kind):
    if kind == "/dev/zero":
        path = Path(kind)
    else:
        path = tmp_path / "map.png"
        fifo = tmp_path / "pipe.png" if kind == "link-to-fifo" else path
        os.mkfifo(fifo)
        if kind == "link-to-fifo":
            path.symlink_to(fifo)
    argv = (
        ["compare", made["labels"], path] if which == "truth" else ["compare", path, made["truth"]]
    )
    r = run(argv, timeout=QUICK)
    assert_refused(r, path, r"not a regular file")


def test_batch_records_entries_that_are_not_files(made, tmp_path):
    """A FIFO, a dangling link and a link to a device among the images: each is a row of
    the report, "skipped" with its reason; the image is segmented; nothing hangs."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to(tmp_path / "missing.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    out = tmp_path / "out"
    r = run(["batch", folder, *FIT, "-j", "1", "--no-plots", "-o", out], timeout=QUICK + 40)
    assert not r["timed_out"]
    assert "Traceback" not in r["stderr"], r["stderr"]
    assert r["code"] == 0, r["stderr"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rows = {row["path"]: row for row in report["rows"]}
    assert rows["good.png"]["status"] == "ok"
    reasons = {
        "pipe.png": r"FIFO",
        "dangling.png": r"broken symbolic link|dangling",
        "zero.png": r"device",
    }
    for name, reason in reasons.items():
        assert name in rows, f"{name} silently left out of the report"
        assert rows[name]["status"] == "skipped", rows[name]
        assert re.search(reason, rows[name]["error"]), rows[name]
    assert report["counts"]["skipped"] == 3
    assert report["state"] == "finished"


def test_resume_with_a_fifo_as_model_file(made, tmp_path):
    """--resume reads the model files of earlier outputs: one that is a FIFO must not block."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(folder / "a.png")
    out = tmp_path / "out"
    base = ["batch", folder, *FIT, "-j", "1", "--no-plots", "-o", out]
    assert run(base)["code"] == 0
    (out / "a.model.json").unlink()
    os.mkfifo(out / "a.model.json")
    r = run([*base, "--resume"], timeout=QUICK + 30)
    assert not r["timed_out"]
    assert "Traceback" not in r["stderr"], r["stderr"]


# =============================================================================================
# Class 2: valid JSON, not a valid model
# =============================================================================================


def write_doc(path, doc):
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def changed(doc, path, value):
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


BAD_MODELS = [
    ("mean 1e308", ["gmm", "means", 0, 0], 1e308, r"means"),
    ("mean 1e12", ["gmm", "means", 1, 2], 1e12, r"means"),
    (
        "covariance not positive definite",
        ["gmm", "covariances", 0],
        "NOT_PD",
        r"covariances\[0\] is not positive definite",
    ),
    ("negative weight", ["gmm", "weights"], [1.5, -0.25, -0.25], r"weights"),
    ("precision not the inverse", ["gmm", "precisions_cholesky", 1], "EYE", r"prec"),
    ("wrong shape", ["gmm", "means"], [[0.5, 0.5]], r"means"),
    ("options not an object", ["options"], [1, 2], r"options"),
    ("unknown option", ["options", "colour"], "blue", r"options|colour"),
    ("k not an int", ["options", "k"], "three", r"\bk\b"),
    ("gmm missing", ["gmm"], None, r"gmm"),
    ("features disagree", ["features", "space"], "rgb", r"features|space|rgb"),
]


@pytest.mark.parametrize(
    ("what", "path", "value", "pattern"), BAD_MODELS, ids=[b[0] for b in BAD_MODELS]
)
def test_invalid_models_are_refused_naming_the_field(made, tmp_path, what, path, value, pattern):
    if value == "NOT_PD":  # the identity with a correlation of 2 between two features
        value = np.eye(made["doc"]["gmm"]["n_features"])
        value[0, 1] = value[1, 0] = 2.0
        value = value.tolist()
    elif value == "EYE":
        value = (3.0 * np.eye(made["doc"]["gmm"]["n_features"])).tolist()
    model = write_doc(tmp_path / "bad.model.json", changed(made["doc"], path, value))
    r, out = apply_with(made, model, tmp_path, timeout=QUICK + 20)
    assert_refused(r, model, pattern)
    assert RT.files_under(out) == []


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("integer of 5000 digits", '{"format": "segment.model/1", "gmm": {"n_components": 1%s}}'),
        ("nesting 100000 deep", "[" * 100_000 + "]" * 100_000),
        ("nesting in a field", '{"format": "segment.model/1", "gmm": %s}'),
        ("NaN literal", '{"format": "segment.model/1", "gmm": NaN}'),
        ("not an object", "[1, 2, 3]"),
        ("bytes not UTF-8", None),
    ],
)
def test_hostile_json_is_refused(made, tmp_path, what, text):
    model = tmp_path / "hostile.model.json"
    if text is None:
        model.write_bytes(b'{"format": "\xff\xfe"}')
    elif what.startswith("integer"):
        model.write_text(text % ("7" * 5000), encoding="utf-8")
    elif what == "nesting in a field":
        model.write_text(text % ("[" * 50_000 + "]" * 50_000), encoding="utf-8")
    else:
        model.write_text(text, encoding="utf-8")
    r, _ = apply_with(made, model, tmp_path, timeout=QUICK + 20)
    assert_refused(r, model)


def test_a_valid_model_still_applies(made, tmp_path):
    model = write_doc(tmp_path / "copy.model.json", made["doc"])
    r, out = apply_with(made, model, tmp_path)
    assert r["code"] == 0, r["stderr"]
    assert (out / "photo.labels.png").is_file()


# =============================================================================================
# Class 11: --resume trusts only complete outputs made with the same options
# =============================================================================================


@pytest.fixture()
def batch_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        make_image(folder / name, seed=i)
    return folder


def batch(folder, out, *extra, k="4"):
    argv = ["batch", folder, "-k", k, "--max-iter", "10", "-q", "-j", "1", "--no-plots"]
    return run([*argv, "-o", out, *extra])


def report_of(out):
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def model_k(out, stem):
    doc = json.loads((out / f"{stem}.model.json").read_text(encoding="utf-8"))
    return doc["options"]["k"], doc["gmm"]["n_components"]


def test_resume_with_other_options_redoes_everything(batch_folder, tmp_path):
    out = tmp_path / "out"
    assert batch(batch_folder, out, k="6")["code"] == 0
    r = batch(batch_folder, out, "--resume", k="3")
    assert r["code"] == 0, r["stderr"]
    rep = report_of(out)
    assert [row["status"] for row in rep["rows"]] == ["ok"] * 3, rep["rows"]
    for row in rep["rows"]:
        assert row["k"] == 3
        assert model_k(out, Path(row["path"]).stem) == (3, 3)


@pytest.mark.parametrize("option", [["--space", "rgb"], ["--seed", "7"], ["--smooth", "0"]])
def test_resume_after_changing_any_fit_option(batch_folder, tmp_path, option):
    out = tmp_path / "out"
    assert batch(batch_folder, out)["code"] == 0
    r = batch(batch_folder, out, "--resume", *option)
    assert r["code"] == 0, r["stderr"]
    assert [row["status"] for row in report_of(out)["rows"]] == ["ok"] * 3


def test_resume_with_same_options_skips(batch_folder, tmp_path):
    out = tmp_path / "out"
    assert batch(batch_folder, out)["code"] == 0
    before = {n: (out / n).read_bytes() for n in RT.files_under(out) if "report" not in n}
    r = batch(batch_folder, out, "--resume")
    assert r["code"] == 0, r["stderr"]
    assert [row["status"] for row in report_of(out)["rows"]] == ["skipped"] * 3
    assert {n: (out / n).read_bytes() for n in before} == before


@pytest.mark.parametrize(
    "damage",
    ["truncate-png", "garbage-model", "empty-model", "other-json", "png-replaced", "fifo-png"],
)
def test_resume_redoes_damaged_outputs(batch_folder, tmp_path, damage):
    out = tmp_path / "out"
    assert batch(batch_folder, out)["code"] == 0
    png, model = out / "b.segmented.png", out / "b.model.json"
    if damage == "truncate-png":
        png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    elif damage == "garbage-model":
        model.write_bytes(b"\x00garbage{")
    elif damage == "empty-model":
        model.write_bytes(b"")
    elif damage == "other-json":
        model.write_text('{"format": "segment.model/1"}', encoding="utf-8")
    elif damage == "png-replaced":  # a whole, valid PNG, but not the one the run wrote
        make_image(png, seed=99)
    else:
        png.unlink()
        os.mkfifo(png)
    r = batch(batch_folder, out, "--resume")
    assert not r["timed_out"]
    assert "Traceback" not in r["stderr"], r["stderr"]
    assert r["code"] == 0, r["stderr"]
    rows = {row["path"]: row["status"] for row in report_of(out)["rows"]}
    assert rows == {"a.png": "skipped", "b.png": "ok", "c.png": "skipped"}
    assert RT.validate_outputs(out, "b", plots=False, loglik=False) == []


# =============================================================================================
# Class 12: a full disk when the batch starts
# =============================================================================================


@pytest.mark.parametrize("budget", [0, 300, 1500, 3000, 6000, 12000])
def test_full_disk_never_leaves_a_running_report(batch_folder, tmp_path, budget):
    out = tmp_path / "out"
    r = run(
        ["batch", batch_folder, *FIT, "-j", "1", "--no-plots", "-o", out],
        fault="enospc",
        fault_arg=budget,
    )
    assert r["code"] == 1, r["stderr"]
    assert "Traceback" not in r["stderr"], r["stderr"]
    assert lines_of(r["stderr"])[-1].startswith("segment: error: ")
    assert "space" in r["stderr"]
    report = out / "report.json"
    if report.exists():
        doc = json.loads(report.read_text(encoding="utf-8"))
        assert doc["state"] != "running", doc
    assert [n for n in RT.files_under(out) if Path(n).name.startswith(RT.TEMP_PREFIX)] == []
