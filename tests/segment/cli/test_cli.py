"""The command line, end to end: CliRunner for speed, a few real subprocesses for what only
a real process shows (exit status, stderr, entry points)."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gmm
from segment import __version__
from segment.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]


def blocks_image(path, *, noise=6, seed=0, alpha=False, size=(48, 40)):
    """Three flat colour regions with noise: a known 3-segment answer."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.float64)
    img[:, : w // 3] = (200, 40, 40)
    img[:, w // 3 : 2 * w // 3] = (40, 160, 60)
    img[:, 2 * w // 3 :] = (50, 60, 210)
    img += rng.normal(0, noise, img.shape)
    arr = np.clip(img, 0, 255).astype(np.uint8)
    if alpha:
        a = np.full((h, w), 255, np.uint8)
        a[: h // 4] = 0
        Image.fromarray(np.dstack([arr, a])).save(path)
    else:
        Image.fromarray(arr).save(path)
    return path


def run(*args):
    """The command with pixel-wise colour clustering in RGB unless a test asks otherwise:
    these tests check exact relations between the model and its outputs."""
    args = [str(a) for a in args]
    if args and args[0] == "image":
        for option, value in (("--xy", "0"), ("--space", "rgb"), ("--regions", "off")):
            if option not in args:
                args += [option, value]
    return runner.invoke(app, args, catch_exceptions=False)


def outputs(out, stem):
    return {
        k: out / f"{stem}.{k}.{'json' if k == 'model' else 'png'}"
        for k in ("segmented", "quantized", "labels", "loglik", "density", "model")
    }


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output
    for cmd in ("image", "apply", "quantize"):
        r = run(cmd, "--help")
        assert r.exit_code == 0
        assert "Examples" in r.output


def test_image_writes_every_output_and_they_agree(tmp_path):
    src = blocks_image(tmp_path / "blocks.png")
    out = tmp_path / "out"
    r = run("image", src, "-k", 3, "-o", out, "--json", "--smooth", 0, "--min-region", 0)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)[0]
    paths = outputs(out, "blocks")
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    doc = json.loads(paths["model"].read_text())
    model = gmm.GaussianMixture.from_dict(doc["gmm"])
    labels = np.asarray(Image.open(paths["labels"]))
    assert labels.shape == (40, 48) and set(np.unique(labels)) <= set(range(3))
    # the three regions are the three segments
    thirds = [labels[:, :16], labels[:, 16:32], labels[:, 32:]]
    assert len({int(np.bincount(t.ravel()).argmax()) for t in thirds}) == 3
    # the quantised image uses at most k colours, and they are the model's means
    q = np.asarray(Image.open(paths["quantized"]).convert("RGB")).reshape(-1, 3)
    colours = np.unique(q, axis=0)
    assert len(colours) <= 3
    means8 = np.clip(np.rint(model.means_ * 255), 0, 255)
    for c in colours:
        assert np.abs(means8 - c).sum(axis=1).min() == 0
    # the saved model gives the same labels on the image's pixels
    pix = np.asarray(Image.open(src).convert("RGB")).reshape(-1, 3).astype(np.float32) / 255
    assert np.array_equal(model.predict(pix).reshape(40, 48), labels)
    # figures in the summary and in the file agree, history is the model's
    assert summary["k"] == 3 and summary["iterations"] == model.n_iter_
    assert doc["history"] == doc["gmm"]["history"] and len(doc["history"]) == model.n_iter_
    assert doc["summary"]["psnr_db"] == pytest.approx(summary["psnr_db"])
    assert summary["psnr_db"] > 25  # noise sigma 6 on 255: PSNR of the flat means ~ 32 dB


def test_same_seed_gives_identical_bytes(tmp_path):
    src = blocks_image(tmp_path / "b.png")
    for d in ("one", "two"):
        assert run("image", src, "-k", 3, "-o", tmp_path / d, "-q").exit_code == 0
    for name in sorted(p.name for p in (tmp_path / "one").iterdir()):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), (
            name
        )


def test_apply_reproduces_image_labels(tmp_path):
    src = blocks_image(tmp_path / "b.png")
    assert run("image", src, "-k", 3, "-o", tmp_path / "a", "-q").exit_code == 0
    r = run("apply", "--model", tmp_path / "a" / "b.model.json", src, "-o", tmp_path / "b", "-q")
    assert r.exit_code == 0, r.output
    first = np.asarray(Image.open(tmp_path / "a" / "b.labels.png"))
    again = np.asarray(Image.open(tmp_path / "b" / "b.labels.png"))
    assert np.array_equal(first, again)
    assert not (tmp_path / "b" / "b.loglik.png").exists()


def test_transparent_pixels_stay_transparent(tmp_path):
    src = blocks_image(tmp_path / "t.png", alpha=True)
    out = tmp_path / "out"
    assert run("image", src, "-k", 3, "-o", out, "-q", "--no-plots").exit_code == 0
    for kind in ("segmented", "quantized"):
        rgba = np.asarray(Image.open(out / f"t.{kind}.png").convert("RGBA"))
        assert (rgba[:10, :, 3] == 0).all() and (rgba[10:, :, 3] == 255).all()
    labels = np.asarray(Image.open(out / "t.labels.png"))
    assert (labels[:10] == 255).all() and labels[10:].max() < 3
    # transparent pixels are not data: the colour under them never becomes a component
    model = json.loads((out / "t.model.json").read_text())["gmm"]
    assert model["n_components"] == 3


def test_existing_outputs_need_overwrite(tmp_path):
    src = blocks_image(tmp_path / "b.png")
    out = tmp_path / "out"
    assert run("image", src, "-k", 2, "-o", out, "-q").exit_code == 0
    before = (out / "b.labels.png").read_bytes()
    r = run("image", src, "-k", 3, "-o", out, "-q")
    assert r.exit_code == 1
    assert "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (out / "b.labels.png").read_bytes() == before
    assert run("image", src, "-k", 3, "-o", out, "-q", "--overwrite").exit_code == 0


def test_output_never_replaces_an_input(tmp_path):
    src = blocks_image(tmp_path / "x.labels.png")
    before = src.read_bytes()
    r = run("image", src, "-o", tmp_path, "-k", 2, "-q", "--overwrite")
    # x.labels.png -> stem "x.labels" -> writes x.labels.labels.png etc., never the input
    assert r.exit_code == 0
    assert src.read_bytes() == before


def test_broken_file_one_line_exit_1_no_output(tmp_path):
    bad = tmp_path / "broken.png"
    good = blocks_image(tmp_path / "good.png")
    bad.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "out"
    r = run("image", bad, "-o", out, "-q")
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "broken.png" in r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = blocks_image(tmp_path / "good.png")
    out = tmp_path / "out"
    r = run("image", bad, good, "-k", 2, "-o", out, "-q")
    assert r.exit_code == 1
    assert (out / "good.model.json").exists()
    assert not list(out.glob("bad.*"))


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["-k", "0"], 2),
        (["--space", "hsv"], 2),
        (["--covariance", "weird"], 2),
        (["--tol", "-1"], 2),
        (["--tol", "nan"], 2),
        (["--memory-mib", "0"], 2),
        (["--memory-mib", "1e12"], 2),
        (["--max-iter", "0"], 2),
    ],
)
def test_absurd_parameters(tmp_path, args, code):
    src = blocks_image(tmp_path / "b.png")
    r = run("image", src, "-o", tmp_path / "out", *args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    if code == 1:
        assert len(r.stderr.strip().splitlines()) == 1


def test_k_above_distinct_colours_fits_what_is_possible(tmp_path):
    arr = np.zeros((10, 10, 3), np.uint8)
    arr[5:] = (255, 255, 255)
    src = tmp_path / "two.png"
    Image.fromarray(arr).save(src)
    r = run("image", src, "-k", 5, "-o", tmp_path / "out", "--no-plots")
    assert r.exit_code == 0, r.output
    assert "distinct colours" in r.stderr
    doc = json.loads((tmp_path / "out" / "two.model.json").read_text())
    assert doc["summary"]["k"] == 2


def test_quantize_palette_png(tmp_path):
    src = blocks_image(tmp_path / "b.png", noise=20)
    dst = tmp_path / "q.png"
    r = run("quantize", src, "-k", 4, "-o", dst, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    im = Image.open(dst)
    assert im.mode == "P"
    used = np.unique(np.asarray(im))
    assert len(used) <= 4 and s["colours_used"] == len(used)
    assert s["output_bytes"] == dst.stat().st_size
    assert s["size_ratio"] == pytest.approx(dst.stat().st_size / src.stat().st_size)
    rgb = np.asarray(Image.open(src).convert("RGB"), dtype=np.float64) / 255
    q = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    assert s["psnr_db"] == pytest.approx(10 * np.log10(1 / ((rgb - q) ** 2).mean()), abs=1e-6)
    assert run("quantize", src, "-k", 257, "-o", dst, "--overwrite").exit_code == 2


def test_apply_with_a_damaged_model(tmp_path):
    src = blocks_image(tmp_path / "b.png")
    bad = tmp_path / "m.model.json"
    bad.write_text('{"format": "segment.model/1", "gmm": {}}')
    r = run("apply", "-m", bad, src, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "damaged" in r.stderr
    r = run("apply", "-m", tmp_path / "missing.json", src, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "no such model file" in r.stderr


def test_real_process_entry_points(tmp_path):
    src = blocks_image(tmp_path / "b.png")
    for cmd in ([sys.executable, "-m", "segment"], [str(Path(sys.executable).parent / "segment")]):
        r = subprocess.run(
            [
                *cmd,
                "image",
                str(src),
                "-k",
                "2",
                "-o",
                str(tmp_path / "o"),
                "-q",
                "--no-plots",
                "--overwrite",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "segment",
            "image",
            str(tmp_path / "nope.png"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_k_chosen_by_bic(tmp_path):
    src = blocks_image(tmp_path / "b.png", noise=10)
    out = tmp_path / "out"
    r = run("image", src, "-k", "2:5", "-c", "auto", "-o", out, "--json", "--smooth", 0)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)[0]
    assert s["k"] == 3  # three flat colours under noise
    assert (out / "b.bic.png").exists()
    doc = json.loads((out / "b.model.json").read_text())
    table = doc["selection"]["table"]
    assert {row["k"] for row in table} == {2, 3, 4, 5}
    assert {row["covariance_type"] for row in table} == {
        "full",
        "tied",
        "diag",
        "tied_diag",
        "spherical",
    }
    best = min(table, key=lambda row: row["bic"])
    assert (best["k"], best["covariance_type"]) == (3, s["covariance_type"])
    assert run("image", src, "-k", "3:x", "-o", out).exit_code == 2


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.08, 0.15, 0.3])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, delay):
    """A Ctrl-C at any moment of start-up (imports included) ends with status 130 and one
    line, never a traceback from our code. (Before Python itself has finished starting,
    the interpreter reports it: that part is not ours.)"""
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "in.png")
    cmd = [sys.executable, "-m", "segment", "image", str(tmp_path / "in.png"), "-o", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if err.startswith("Fatal Python error: init_import_site"):
        return
    if "Traceback" in err and not re.search(r'File "[^"]*[/\\](segment|gmm)[/\\]', err):
        return  # runpy still looking for segment/__main__.py: none of our code has run yet
    assert "Traceback" not in err, err
    assert proc.returncode in (130, -signal.SIGINT, 0), (proc.returncode, err)
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "segment: error: interrupted."
