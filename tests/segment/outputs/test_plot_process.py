"""The plots drawn in a worker process (segment.outputs.plot_process): the same bytes as in
this process, its errors raised here as they would be here, nothing left on disk when it
fails, and the cases that draw here instead."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import segment.outputs.plot_process as pp
import segment.outputs.segmentation as segmentation
from segment.cli import app, main
from segment.options import FitOptions
from segment.outputs.model_file import load_model_file
from segment.outputs.plot_process import PlotJob, PlotWorker, plot_worker, worker_wanted
from segment.pipeline import apply_file, segment_file


def _photo(path, size=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    h, w = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, : w // 3] = [200, 40, 40]
    pixels[:, w // 3 : 2 * w // 3] = [40, 160, 60]
    pixels[:, 2 * w // 3 :] = [40, 60, 210]
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).iterdir()}


@pytest.fixture
def worker():
    w = PlotWorker.start()
    assert w is not None
    yield w
    w.close(abort=True)


@pytest.fixture
def no_drawing_here(monkeypatch):
    """Drawing in this process fails: what is written must come from the worker."""

    def refuse(kind, spec):
        raise AssertionError(f"{kind} drawn in the main process")

    import segment.outputs.plots.render as render_module

    monkeypatch.setattr(render_module, "render", refuse)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------
# Same bytes
# ---------------------------------------------------------------------------------------


def test_worker_writes_the_same_bytes_as_drawing_here(tmp_path, worker, monkeypatch):
    """Every output of segment_file, plots included (and the model file, which records
    their digests), is byte-identical whether the plots are drawn in the worker or here;
    the worker's run draws nothing here."""
    src = _photo(tmp_path / "in.png")
    options = FitOptions(k=3, k_range=None)
    segment_file(src, tmp_path / "here", options)
    import segment.outputs.plots.render as render_module

    drawn_here = []
    real = render_module.render
    monkeypatch.setattr(
        render_module, "render", lambda kind, spec: drawn_here.append(kind) or real(kind, spec)
    )
    segment_file(src, tmp_path / "worker", options, plot_worker=worker)
    assert drawn_here == []
    here, there = _digests(tmp_path / "here"), _digests(tmp_path / "worker")
    assert {"in.loglik.png", "in.density.png"} <= set(here)
    assert here == there


def test_selection_plot_in_the_worker_is_the_same(tmp_path, worker):
    """With a range of k the BIC figure goes to the worker too."""
    src = _photo(tmp_path / "in.png", seed=1)
    options = FitOptions(k_range=(2, 3), covariance_type="auto")
    segment_file(src, tmp_path / "here", options)
    segment_file(src, tmp_path / "worker", options, plot_worker=worker)
    here, there = _digests(tmp_path / "here"), _digests(tmp_path / "worker")
    assert "in.bic.png" in here
    assert here == there


def test_apply_draws_the_density_in_the_worker_with_the_same_bytes(tmp_path, worker):
    src = _photo(tmp_path / "in.png")
    segment_file(src, tmp_path / "fit", FitOptions(k=3), plots=False)
    model, options, _ = load_model_file(tmp_path / "fit" / "in.model.json")
    other = _photo(tmp_path / "other.png", seed=5)
    apply_file(model, options, other, tmp_path / "here")
    apply_file(model, options, other, tmp_path / "worker", plot_worker=worker)
    here, there = _digests(tmp_path / "here"), _digests(tmp_path / "worker")
    assert "other.density.png" in here and "other.loglik.png" not in here
    assert here == there


def test_every_frame_of_a_multi_frame_file_is_the_same(tmp_path, worker):
    frames = [Image.open(_photo(tmp_path / f"f{i}.png", seed=i)).convert("RGB") for i in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    options = FitOptions(k=3)
    for out, w in (("here", None), ("worker", worker)):
        segment_file(tmp_path / "anim.gif", tmp_path / out, options, all_frames=True, plot_worker=w)
    here, there = _digests(tmp_path / "here"), _digests(tmp_path / "worker")
    assert {"anim.f000.density.png", "anim.f001.loglik.png"} <= set(here)
    assert here == there
    options_no_plots = FitOptions(k=3)
    segment_file(
        tmp_path / "anim.gif",
        tmp_path / "none",
        options_no_plots,
        all_frames=True,
        plots=False,
        plot_worker=worker,
    )
    assert not [p for p in (tmp_path / "none").iterdir() if "density" in p.name]


def test_one_worker_serves_several_requests_in_order(worker):
    specs = [
        {"loglik": {"history": np.linspace(-3.0, -1.0, n), "converged": True}} for n in (3, 7, 12)
    ]
    jobs = [PlotJob(s, worker) for s in specs]
    from segment.outputs.plots.render import render

    for job, s in zip(jobs, specs, strict=True):
        assert job.pngs() == {"loglik": render("loglik", s["loglik"])}


def test_a_reply_nobody_took_is_skipped(worker):
    """A segmentation that failed after sending its plots never takes them: the next one
    gets its own."""
    first = PlotJob({"loglik": {"history": [1.0, 2.0]}}, worker)
    second = PlotJob({"loglik": {"history": [1.0, 2.0, 2.5]}}, worker)
    del first
    from segment.outputs.plots.render import render

    assert second.pngs() == {"loglik": render("loglik", {"history": [1.0, 2.0, 2.5]})}


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_an_error_in_the_worker_is_raised_here_unchanged(worker):
    bad = {"loglik": {"history": []}}
    from segment.outputs.plots.render import render

    with pytest.raises(ValueError) as here:
        render("loglik", bad["loglik"])
    with pytest.raises(ValueError) as there:
        PlotJob(bad, worker).pngs()
    assert str(there.value) == str(here.value)
    # and the worker carries on with the next request
    assert "loglik" in PlotJob({"loglik": {"history": [1.0]}}, worker).pngs()


def test_a_dead_worker_is_replaced_by_drawing_here(worker):
    from segment.outputs.plots.render import render

    spec = {"history": np.array([-2.0, -1.5, -1.4])}
    os.kill(worker.pid, signal.SIGKILL)
    for _ in range(200):
        if not _alive(worker.pid):
            break
        time.sleep(0.01)
    assert PlotJob({"loglik": spec}, worker).pngs() == {"loglik": render("loglik", spec)}


def test_a_stuck_worker_is_ended_and_the_figures_drawn_here(worker, monkeypatch):
    from segment.outputs.plots.render import render

    monkeypatch.setattr(pp, "ANSWER_TIMEOUT", 0.5)
    # more than a pipe holds: the request's write is stuck too
    spec = {"history": np.linspace(-2.0, -1.0, 50_000)}
    os.kill(worker.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    assert PlotJob({"loglik": spec}, worker).pngs() == {"loglik": render("loglik", spec)}
    assert time.monotonic() - t0 < 30
    for _ in range(200):
        if not _alive(worker.pid):
            break
        time.sleep(0.01)
    assert not _alive(worker.pid)


def test_closing_a_stuck_worker_does_not_hang(monkeypatch):
    monkeypatch.setattr(pp, "_EXIT_GRACE", 0.3)
    w = PlotWorker.start()
    os.kill(w.pid, signal.SIGSTOP)
    w.submit({"loglik": {"history": np.linspace(-2.0, -1.0, 50_000)}})  # never read
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < 10
    assert not _alive(w.pid)


@pytest.mark.parametrize("use_worker", ["1", "0"])
def test_cli_plot_error_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, use_worker):
    """A figure that cannot be drawn (here: a spec broken on purpose) fails the image with
    the same one line whether it was drawn in the worker or here, and no output is left."""
    monkeypatch.setenv(pp.ENV_SWITCH, use_worker)
    real = segmentation.plot_specs

    def broken(seg, paths):
        specs = real(seg, paths)
        specs["loglik"] = {**specs["loglik"], "history": []}
        return specs

    monkeypatch.setattr(segmentation, "plot_specs", broken)
    monkeypatch.setattr(pp, "_cpus", lambda: 2)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main() installs its own
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    src = _photo(tmp_path / "in.png")
    out = tmp_path / "out"
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["image", str(src), "-k", "3", "-o", str(out), "-q"])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "history is empty" in lines[0] and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_cli_draws_in_the_worker_and_ends_it(tmp_path, monkeypatch, no_drawing_here):
    monkeypatch.delenv(pp.ENV_SWITCH, raising=False)
    monkeypatch.setattr(pp, "_cpus", lambda: 2)
    started = []
    real_start = PlotWorker.start.__func__

    def start(cls):
        w = real_start(cls)
        started.append(w)
        return w

    monkeypatch.setattr(PlotWorker, "start", classmethod(start))
    srcs = [_photo(tmp_path / f"in{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["image", *map(str, srcs), "-k", "3", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert len(started) == 1  # one worker for the whole command
    assert not _alive(started[0].pid)
    assert {"in0.density.png", "in1.loglik.png"} <= {p.name for p in out.iterdir()}


# ---------------------------------------------------------------------------------------
# Where the plots are drawn here
# ---------------------------------------------------------------------------------------


@pytest.fixture
def no_process(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_no_plots_starts_no_worker(no_process):
    with plot_worker(False) as w:
        assert w is None


def test_cli_no_plots_starts_no_worker(tmp_path, no_process):
    src = _photo(tmp_path / "in.png")
    r = CliRunner().invoke(app, ["image", str(src), "-k", "2", "-o", str(tmp_path), "--no-plots"])
    assert r.exit_code == 0, r.output


def test_one_cpu_draws_here(monkeypatch, no_process):
    monkeypatch.delenv(pp.ENV_SWITCH, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert not worker_wanted()
    with plot_worker(True) as w:
        assert w is None


def test_environment_switch_draws_here(monkeypatch, no_process):
    monkeypatch.setenv(pp.ENV_SWITCH, "0")
    assert not worker_wanted()


def test_inside_a_pool_worker_draws_here(monkeypatch):
    """segment batch's pool workers (and Dask's) already keep the cores busy."""
    monkeypatch.delenv(pp.ENV_SWITCH, raising=False)
    monkeypatch.setattr(pp, "_cpus", lambda: 8)
    assert worker_wanted()
    monkeypatch.setattr(pp.multiprocessing, "parent_process", lambda: object())
    assert not worker_wanted()


def test_inside_a_dask_task_draws_here(monkeypatch):
    import types

    monkeypatch.delenv(pp.ENV_SWITCH, raising=False)
    monkeypatch.setattr(pp, "_cpus", lambda: 8)
    fake = types.ModuleType("distributed")

    def no_worker():
        raise ValueError("No worker found")

    fake.get_worker = no_worker
    monkeypatch.setitem(sys.modules, "distributed", fake)
    assert worker_wanted()
    fake.get_worker = lambda: object()
    assert not worker_wanted()


def test_a_worker_that_cannot_start_draws_here(tmp_path, monkeypatch):
    monkeypatch.setattr(pp, "_cpus", lambda: 2)
    monkeypatch.delenv(pp.ENV_SWITCH, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with plot_worker(True) as w:
        assert w is None
    src = _photo(tmp_path / "in.png")
    r = CliRunner().invoke(app, ["image", str(src), "-k", "2", "-o", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "in.density.png").exists()


# ---------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------


def _children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_ends_the_worker_too(tmp_path):
    """Ctrl-C while the worker is alive: one line, status 130, the worker is gone, and no
    output is left."""
    src = _photo(tmp_path / "in.png", size=(600, 800))
    out = tmp_path / "out"
    env = {**os.environ, pp.ENV_SWITCH: "1"}
    cmd = [sys.executable, "-m", "segment", "image", str(src), "-o", str(out), "-k", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    workers = []
    deadline = time.monotonic() + 30
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.01)
    if not workers:  # one CPU: no worker to end
        proc.communicate(timeout=60)
        pytest.skip("no plot worker was started here")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal arrived
        return
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
    for pid in workers:
        assert not _alive(pid)
    assert not out.exists() or list(out.iterdir()) == []
