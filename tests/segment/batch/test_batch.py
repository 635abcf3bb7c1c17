"""``segment batch``: folder walking, per-file isolation, the report, resume, interruption
(real subprocesses and signals), and the shared model (equal to a fit on all the pixels)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gmm
from segment import batch
from segment.batch import SharedPixels, find_inputs, fit_shared, run_batch
from segment.batch import jobs as batch_jobs
from segment.batch import run as batch_run
from segment.cli import app
from segment.features import pixel_data, quantisation_variance
from segment.imageio import load_image
from segment.options import FitOptions
from segment.outputs.files import TEMP_PREFIX
from segment.outputs.model_file import load_model_file
from tests.support.images import stripes

runner = CliRunner()

RED, GREEN, BLUE, WHITE = (200, 40, 40), (40, 160, 60), (50, 60, 210), (235, 235, 230)
GOOD = ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"]


@pytest.fixture
def folder(tmp_path):
    """Nested folders, four tiny images, a broken PNG and a text file."""
    src = tmp_path / "in"
    stripes(src / "a.png", [RED, GREEN, BLUE], seed=0)
    stripes(src / "b.png", [BLUE, RED, GREEN], seed=1)
    stripes(src / "sub" / "c.png", [GREEN, BLUE], seed=2)
    stripes(src / "sub" / "deeper" / "d.png", [RED, BLUE, GREEN, RED], seed=3)
    (src / "broken.png").write_bytes((src / "a.png").read_bytes()[:120])
    (src / "notes.txt").write_text("not an image\n")
    return src


def run(*args):
    return runner.invoke(app, ["batch", *map(str, args)], catch_exceptions=False)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tree(root):
    """Every file under ``root`` (relative path -> bytes and mtime), reports excluded."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("report.csv", "report.json")
    }


def outputs_of(out, rel, plots=False, labelling=False):
    stem = Path(rel).with_suffix("")
    kinds = ["segmented", "quantized", "labels", "model"]
    if plots:
        kinds += ["density"] if labelling else ["loglik", "density"]
    return [out / f"{stem}.{k}.{'json' if k == 'model' else 'png'}" for k in kinds]


def assert_no_temp_files(root):
    assert not [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def assert_valid_outputs(root):
    for p in root.rglob("*.png"):
        with Image.open(p) as im:
            im.load()
    for p in root.rglob("*.json"):
        json.loads(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# A folder, end to end


def test_batch_mirrors_tree_reports_broken_file_and_exits_1(folder, tmp_path):
    out = tmp_path / "out"
    r = run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--no-plots")
    assert r.exit_code == 1
    assert "4 ok, 1 failed, 0 skipped" in r.output
    assert "broken.png: the image data is truncated" in r.output
    assert "Traceback" not in r.output
    for rel in GOOD:
        assert all(p.is_file() for p in outputs_of(out, rel)), rel
    assert_no_temp_files(out)

    rows = read_csv(out / "report.csv")
    assert [row["path"] for row in rows] == sorted([*GOOD, "broken.png"])  # no notes.txt
    by_path = {row["path"]: row for row in rows}
    broken = by_path.pop("broken.png")
    assert broken["status"] == "failed"
    assert "truncated" in broken["error"] and "/" not in broken["error"].split(":")[0]
    for rel, row in by_path.items():
        model = json.loads((out / Path(rel).with_suffix(".model.json")).read_text())
        assert row["status"] == "ok" and row["error"] == ""
        assert int(row["k"]) == 3 and row["converged"] == "True" and row["frames"] == "1"
        assert int(row["iterations"]) == model["summary"]["iterations"] >= 1
        assert float(row["log_likelihood"]) == pytest.approx(model["summary"]["log_likelihood"])
        assert float(row["bic"]) == pytest.approx(model["summary"]["bic"])
        assert float(row["psnr_db"]) > 20 and float(row["seconds"]) >= 0

    doc = json.loads((out / "report.json").read_text())
    assert doc["state"] == "finished"
    assert doc["counts"] == {"ok": 4, "failed": 1, "skipped": 0, "pending": 0, "interrupted": 0}
    assert [row["path"] for row in doc["rows"]] == [row["path"] for row in rows]


def test_without_recursive_only_the_top_folder(folder, tmp_path):
    r = run(folder, "-o", tmp_path / "out", "-k", "3", "-j", "1", "--no-plots")
    assert r.exit_code == 1
    rows = read_csv(tmp_path / "out" / "report.csv")
    assert [row["path"] for row in rows] == ["a.png", "b.png", "broken.png"]
    assert not (tmp_path / "out" / "sub").exists()


def test_glob_picks_files_and_non_images_fail_with_a_reason(folder, tmp_path):
    out = tmp_path / "out"
    r = run(folder, "-o", out, "-k", "3", "-j", "1", "--no-plots", "--glob", "*.TXT")
    assert r.exit_code == 1
    (row,) = read_csv(out / "report.csv")
    assert row["path"] == "notes.txt" and row["status"] == "failed"
    assert "text file, not an image" in row["error"]

    r = run(
        folder,
        "-o",
        tmp_path / "o2",
        "-r",
        "-k",
        "3",
        "-j",
        "1",
        "--no-plots",
        "--glob",
        "sub/*.png",
    )
    assert r.exit_code == 0, r.output
    assert [row["path"] for row in read_csv(tmp_path / "o2" / "report.csv")] == ["sub/c.png"]


def test_find_inputs_skips_hidden_files_and_the_output_tree(folder):
    (folder / ".hidden.png").write_bytes(b"x")
    stripes(folder / ".cache" / "e.png", [RED])
    stripes(folder / "out" / "a.segmented.png", [RED])
    found = find_inputs(folder, recursive=True, exclude=[folder / "out"])
    assert [p.as_posix() for p in found] == sorted([*GOOD, "broken.png"])


def test_report_is_written_before_the_work(folder, tmp_path):
    seen = []

    class Spy(batch.BatchEvents):
        def phase(self, name, total):
            seen.append(json.loads((tmp_path / "out" / "report.json").read_text()))

    run_batch(
        folder, tmp_path / "out", FitOptions(k=3, xy=0.0), workers=1, plots=False, events=Spy()
    )
    assert seen[0]["state"] == "running"
    assert {row["status"] for row in seen[0]["rows"]} == {"pending"}


def test_json_summary(folder, tmp_path):
    r = run(folder, "-o", tmp_path / "out", "-k", "3", "-j", "1", "--no-plots", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["counts"]["ok"] == 2 and doc["counts"]["failed"] == 1
    assert doc["interrupted_by"] is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["{missing}"], "no such folder"),
        (["{file}"], "not a folder"),
        (["{in}", "-o", "{in}"], "the output folder is the input folder"),
        (["{in}", "--glob", "*.none"], "no files matching"),
        (["{in}", "--sample-per-image", "10"], "only applies with --shared-model"),
    ],
)
def test_bad_arguments_are_one_line_errors(folder, tmp_path, args, match):
    names = {"missing": tmp_path / "nope", "file": folder / "a.png", "in": folder}
    args = [a.format(**names) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    r = run(*args)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segment: error:") and match in lines[0]


def test_output_folder_that_is_a_file_is_a_usage_error(folder):
    r = run(folder, "-o", folder / "a.png")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_scheduler_without_dask_is_a_one_line_error(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    r = run(folder, "-o", tmp_path / "out", "--scheduler", "local")
    assert r.exit_code == 1
    assert r.output.strip() == (
        "segment: error: --scheduler needs the dask extra: pip install 'dask[distributed]'"
    )


# ---------------------------------------------------------------------------------------------
# Existing outputs, resume, overwrite


def test_resume_after_a_run_does_no_work_and_changes_nothing(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--no-plots").exit_code == 1
    before = tree(out)
    first = {row["path"]: row for row in read_csv(out / "report.csv")}

    calls = []
    real = batch_jobs.segment_file
    monkeypatch.setattr(
        batch_jobs, "segment_file", lambda p, *a, **k: calls.append(p) or real(p, *a, **k)
    )
    r = run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--no-plots", "--resume")
    assert r.exit_code == 1  # the broken file is tried again, and fails again
    assert "0 ok, 1 failed, 4 skipped" in r.output
    assert [Path(p).name for p in calls] == ["broken.png"]
    assert tree(out) == before
    for row in read_csv(out / "report.csv"):
        if row["path"] != "broken.png":
            assert row["status"] == "skipped"
            for key in ("k", "iterations", "converged", "log_likelihood", "bic", "psnr_db"):
                assert row[key] == first[row["path"]][key]


def test_existing_outputs_need_resume_or_overwrite(folder, tmp_path):
    out = tmp_path / "out"
    run(folder, "-o", out, "-k", "3", "-j", "1", "--no-plots")
    before = tree(out)
    r = run(folder, "-o", out, "-k", "3", "-j", "1", "--no-plots")
    assert r.exit_code == 1
    assert "already holds outputs" in r.output and "--resume" in r.output
    assert tree(out) == before

    r = run(folder, "-o", out, "-k", "3", "-j", "1", "--no-plots", "--overwrite")
    assert r.exit_code == 1 and "2 ok, 1 failed" in r.output
    after = tree(out)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    assert all(after[k][1] > before[k][1] for k in before)


def test_resume_redoes_an_unfinished_input_and_removes_temp_files(folder, tmp_path):
    out = tmp_path / "out"
    run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--no-plots")
    # What a killed run leaves: part of an input's outputs, and a temporary file.
    (out / "sub" / "c.model.json").unlink()
    (out / "sub" / "c.labels.png").unlink()
    (out / "sub" / f"{TEMP_PREFIX}abc123.png").write_bytes(b"half a png")
    r = run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--no-plots", "--resume")
    assert r.exit_code == 1 and "1 ok, 1 failed, 3 skipped" in r.output
    assert all(p.is_file() for p in outputs_of(out, "sub/c.png"))
    assert_no_temp_files(out)


def test_worker_count_does_not_change_the_outputs(folder, tmp_path):
    run(folder, "-o", tmp_path / "one", "-r", "-k", "3", "-j", "1", "--no-plots")
    r = run(folder, "-o", tmp_path / "two", "-r", "-k", "3", "-j", "2", "--no-plots")
    assert r.exit_code == 1 and "4 ok, 1 failed" in r.output
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert {k: v[0] for k, v in one.items()} == {k: v[0] for k, v in two.items()}


# ---------------------------------------------------------------------------------------------
# Interruption: real processes and signals


def noise_folder(root, n):
    """Images whose EM runs long enough (tol=0) for a signal to arrive mid-batch."""
    root.mkdir()
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"im{i:02d}.png")
    return root


def start_batch(src, out, *extra):
    cmd = [
        sys.executable,
        "-m",
        "segment",
        "batch",
        str(src),
        "-o",
        str(out),
        "-k",
        "4",
        "-j",
        "2",
        "--no-plots",
        "--tol",
        "0",
        "--max-iter",
        "400",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_first_output(out, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not list(out.glob("*.model.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.02)


def children(pid):
    """Worker processes of ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            kids.append(int(stat.parent.name))
    return kids


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
def test_sigint_leaves_no_partial_file_and_resume_completes(tmp_path):
    src, out = noise_folder(tmp_path / "in", 10), tmp_path / "out"
    proc = start_batch(src, out)
    wait_for_first_output(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT" in err and "--resume" in err and "Traceback" not in err
    assert not children(proc.pid)
    assert_no_temp_files(out)
    assert_valid_outputs(out)
    doc = json.loads((out / "report.json").read_text())
    assert doc["state"] == "stopped"
    status = {row["path"]: row["status"] for row in doc["rows"]}
    assert set(status.values()) <= {"ok", "interrupted"} and "interrupted" in status.values()
    for rel, st in status.items():
        complete = all(p.exists() for p in outputs_of(out, rel))
        assert complete == (st == "ok") or st == "interrupted"
        if st == "ok":
            assert complete

    proc = start_batch(src, out, "--resume", "-j", "1")  # -j does not change the outputs
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {r["path"]: r["status"] for r in rows if r["status"] == "skipped"} == {
        rel: "skipped" for rel, st in status.items() if st == "ok"
    }
    assert all(r["status"] in ("ok", "skipped") for r in rows)
    for rel in status:
        assert all(p.is_file() for p in outputs_of(out, rel))
    assert_no_temp_files(out)


@needs_proc
def test_a_killed_worker_is_replaced_and_its_input_redone(tmp_path):
    src, out = noise_folder(tmp_path / "in", 6), tmp_path / "out"
    proc = start_batch(src, out)
    wait_for_first_output(out, proc)
    workers = children(proc.pid)
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert_no_temp_files(out)
    assert_valid_outputs(out)
    for row in json.loads((out / "report.json").read_text())["rows"]:
        assert row["status"] == "ok"
        assert all(p.is_file() for p in outputs_of(out, row["path"]))
    before = tree(out)
    proc = start_batch(src, out, "--resume", "-j", "1")
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "0 ok, 0 failed, 6 skipped" in stdout, err
    assert tree(out) == before


# ---------------------------------------------------------------------------------------------
# The shared model


def labels_of(out, rel):
    return np.asarray(Image.open(out / Path(rel).with_suffix(".labels.png")))


def stripe_label(labels, colours, i):
    """The most frequent label in the middle of stripe ``i``."""
    w = labels.shape[1]
    a, b = np.linspace(0, w, len(colours) + 1).astype(int)[i : i + 2]
    return np.bincount(labels[:, a + 1 : b - 1].ravel()).argmax()


def test_shared_model_gives_a_colour_the_same_label_everywhere(folder, tmp_path):
    out = tmp_path / "out"
    r = run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--shared-model")
    assert r.exit_code == 1 and "4 ok, 1 failed" in r.output
    for name in ("shared.model.json", "shared.loglik.png", "shared.density.png"):
        assert (out / name).is_file()
    model, options, doc = load_model_file(out / "shared.model.json")
    assert options.k == 3 and doc["input"]["images"] == 4
    colours = {
        "a.png": [RED, GREEN, BLUE],
        "b.png": [BLUE, RED, GREEN],
        "sub/c.png": [GREEN, BLUE],
        "sub/deeper/d.png": [RED, BLUE, GREEN, RED],
    }
    label = {}
    for rel, cols in colours.items():
        assert all(p.is_file() for p in outputs_of(out, rel, plots=True, labelling=True))
        labels = labels_of(out, rel)
        for i, c in enumerate(cols):
            assert label.setdefault(c, stripe_label(labels, cols, i)) == stripe_label(
                labels, cols, i
            ), (rel, c)
    assert len(set(label.values())) == 3
    rows = {row["path"]: row for row in read_csv(out / "report.csv")}
    assert rows["a.png"]["iterations"] == str(model.n_iter_)

    # Resuming reuses the shared model and every finished output.
    before = tree(out)
    r = run(folder, "-o", out, "-r", "-k", "3", "-j", "1", "--shared-model", "--resume")
    assert r.exit_code == 1 and "0 ok, 1 failed, 4 skipped" in r.output
    assert tree(out) == before


def start_params(k=3):
    means = np.array([[0.7, 0.2, 0.2], [0.2, 0.6, 0.3], [0.25, 0.25, 0.75]])[:k]
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": means,
        "precisions_init": np.stack([np.eye(3) * 30.0] * k),
    }


def fit64(X, w=None, *, init=None):
    """The reference: 8 EM iterations in float64 from a fixed start, regularised as
    ``FitOptions(space="rgb")`` is."""
    init = init or start_params()
    reg = quantisation_variance("rgb")
    model = gmm.GaussianMixture(3, tol=0.0, max_iter=8, dtype=np.float64, reg_covar=reg, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmm.ConvergenceWarning)
        return model.fit(X, sample_weight=w)


def test_shared_fit_from_files_equals_a_fit_on_all_pixels(folder):
    paths = [folder / p for p in GOOD]
    options = FitOptions(k=3, max_iter=8, tol=0.0, xy=0.0, space="rgb")
    source = SharedPixels.from_files(paths, options, root=folder)
    assert source.hist_X is not None and not source.streamed
    assert source.total_weight == 4 * 32 * 24
    every = np.concatenate(
        [load_image(p).pixels.reshape(-1, 3).astype(np.float32) / 255.0 for p in paths]
    )
    ref = fit64(every)
    model, _, _ = fit_shared(source, options, dtype=np.float64, init=start_params())
    order = np.argsort(ref.means_ @ [0.2126, 0.7152, 0.0722])  # fit_shared sorts dark->light
    np.testing.assert_allclose(model.means_, ref.means_[order], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.weights_, ref.weights_[order], rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, ref.covariances_[order], rtol=1e-7, atol=1e-12)
    assert model.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)


def test_streamed_shared_pixels_equal_the_concatenated_features(folder):
    paths = [folder / p for p in GOOD]
    options = FitOptions(k=3, xy=0.5, max_iter=8, tol=0.0, space="rgb")
    source = SharedPixels.from_files(paths, options, root=folder)
    assert source.hist_X is None and len(source.streamed) == 4
    every = np.concatenate([pixel_data(load_image(p), xy=0.5).X for p in paths])
    streamed = np.concatenate([X for X, _ in source.chunks(1000)])
    np.testing.assert_array_equal(streamed, every)
    init = start_params()
    means = np.hstack([init["means_init"], np.full((3, 2), 0.25)])
    init = {**init, "means_init": means, "precisions_init": np.stack([np.eye(5) * 30.0] * 3)}
    ref = fit64(every, init=init)
    model, _, _ = fit_shared(source, options, dtype=np.float64, init=init)
    order = np.argsort(ref.means_[:, :3] @ [0.2126, 0.7152, 0.0722])
    np.testing.assert_allclose(model.means_, ref.means_[order], rtol=1e-9, atol=1e-12)


def test_sample_per_image_is_deterministic_and_sized(folder):
    paths = [folder / p for p in GOOD]
    options = FitOptions(k=3, xy=1.0)
    a = SharedPixels.from_files(paths, options, root=folder, sample_per_image=100)
    b = SharedPixels.from_files(paths, options, root=folder, sample_per_image=100)
    assert [s[3] for s in a.streamed] == [100] * 4
    xa, xb = (np.concatenate([X for X, _ in s.chunks(64)]) for s in (a, b))
    np.testing.assert_array_equal(xa, xb)
    hist = SharedPixels.from_files(
        paths, FitOptions(k=3, xy=0.0), root=folder, sample_per_image=100
    )
    assert hist.total_weight == 400


def test_soft_and_masks_outputs_count_for_resume(folder, tmp_path):
    # Two flat colours: the fit drops to k=2, so there are two masks, not three.
    Image.fromarray(np.repeat(np.array([[RED, BLUE]], np.uint8), 12, axis=0)).save(
        folder / "flat.png"
    )
    out = tmp_path / "out"
    args = [folder, "-o", out, "-k", "3", "--xy", "0", "-j", "1", "--no-plots", "--soft", "--masks"]
    r = run(*args)
    assert r.exit_code == 1 and "3 ok, 1 failed" in r.output
    assert sorted(p.name for p in out.glob("flat.mask*.png")) == [
        "flat.mask00.png",
        "flat.mask01.png",
    ]
    assert (out / "a.mask02.png").is_file() and (out / "a.uncertainty.png").is_file()
    before = tree(out)
    r = run(*args, "--resume")
    assert "0 ok, 1 failed, 3 skipped" in r.output
    assert tree(out) == before


def test_all_frames_with_a_shared_model(folder, tmp_path):
    frames = [
        Image.fromarray(np.repeat(np.array([[RED, GREEN, BLUE]], np.uint8), 8, axis=0)),
        Image.fromarray(np.repeat(np.array([[BLUE, BLUE, RED]], np.uint8), 8, axis=0)),
    ]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    out = tmp_path / "out"
    args = [folder, "-o", out, "-k", "3", "-j", "1", "--no-plots", "--all-frames", "--shared-model"]
    r = run(*args)
    assert r.exit_code == 1 and "3 ok, 1 failed" in r.output
    row = next(row for row in read_csv(out / "report.csv") if row["path"] == "anim.gif")
    assert row["status"] == "ok" and row["frames"] == "2"
    first, second = labels_of(out, "anim.f000.gif"), labels_of(out, "anim.f001.gif")
    assert first[0, 2] == second[0, 0] == second[0, 1]  # blue, in both frames
    assert first[0, 0] == second[0, 2]  # red
    before = tree(out)
    assert "0 ok, 1 failed, 3 skipped" in run(*args, "--resume").output
    assert tree(out) == before


def test_two_batches_cannot_write_into_one_folder(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with batch_run._exclusive(out):
        r = run(folder, "-o", out, "-k", "3", "-j", "1", "--no-plots")
    assert r.exit_code == 1 and "another 'segment batch' is writing into" in r.output
    assert list(out.iterdir()) == []


def test_batch_has_every_option_of_image_with_its_default():
    import typer.main

    group = typer.main.get_command(app)

    def options(name):
        params = group.commands[name].params
        return {p.name: p.default for p in params if p.param_type_name == "option"}

    image, batch_options = options("image"), options("batch")
    # batch: None = the image default (0 today), always 0 with --shared-model
    assert image.pop("xy") == 0 and batch_options["xy"] is None
    assert image.items() <= batch_options.items()


def test_shared_model_fits_colour_only_unless_xy_is_given(folder, tmp_path):
    r = run(folder, "-o", tmp_path / "a", "-k", "3", "-j", "1", "--no-plots", "--shared-model")
    assert r.exit_code == 1
    _, options, doc = load_model_file(tmp_path / "a" / "shared.model.json")
    assert options.xy == 0 and doc["input"]["streamed_frames"] == 0
    r = run(
        folder,
        "-o",
        tmp_path / "b",
        "-k",
        "3",
        "-j",
        "1",
        "--no-plots",
        "--shared-model",
        "--xy",
        "0.5",
        "--sample-per-image",
        "200",
    )
    assert r.exit_code == 1
    _, options, doc = load_model_file(tmp_path / "b" / "shared.model.json")
    assert options.xy == 0.5 and doc["input"]["streamed_frames"] == 2
    assert doc["summary"]["pixels"] == 400


def test_shared_model_can_choose_k_by_bic(folder, tmp_path):
    options = FitOptions(k=3, k_range=(2, 4), max_iter=30, xy=0.0)
    result = run_batch(
        folder, tmp_path / "out", options, recursive=True, workers=1, plots=False, shared_model=True
    )
    assert result.counts["ok"] == 4
    doc = json.loads(result.shared_model.read_text())
    assert doc["selection"] is not None and 2 <= doc["gmm"]["n_components"] <= 4
    assert any("BIC chose" in note for note in doc["summary"]["notes"])
