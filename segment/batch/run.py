"""Batch processing of a folder: every image segmented on its own, or all with one model.

``run_batch`` walks IN_DIR, plans one job per input (its outputs mirror the input tree in
OUT_DIR), skips finished inputs with ``resume``, and runs the jobs on an *engine*: this
process (one worker), a local process pool, or a Dask cluster. Every job calls the
pipeline (:func:`segment.pipeline.segment_file` or :func:`~segment.pipeline.apply_file`),
which writes each output atomically and ``NAME.model.json`` last; a failing file becomes a
report row and the batch goes on. ``OUT_DIR/report.csv`` and ``report.json`` are rewritten
(atomically) as jobs finish and once more at the end.

With ``shared_model`` one mixture is fitted to the pixels of all images first, then every
image is labelled with it, so that a colour gets the same label everywhere. The pixels are
never all in memory: 8-bit colour without position features is reduced exactly to one
colour histogram (at most 2^24 weighted rows, whatever the number of pixels); anything else
is streamed from the files on every EM pass (optionally a fixed random sample per image).
On Dask, every EM iteration is a map-reduce over those rows on the cluster.

SIGINT / SIGTERM stop the run: queued jobs are cancelled, workers are told to stop (the
file they were writing is removed), leftover temporary files are deleted, the report marks
the unfinished inputs, and ``resume`` carries on from there.
"""

import contextlib
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import interrupts
from ..errors import SegmentError
from ..outputs.files import TEMP_PREFIX
from ..outputs.paths import make_dir
from .discover import find_inputs
from .engines import DaskEngine, default_workers, import_distributed, make_engine
from .jobs import (
    JobSpec,
    colour_job,
    expected_outputs,
    failure_row,
    plan_jobs,
    segment_job,
    shared_output_paths,
)
from .report import REPORT_NAMES, BatchResult, Report, finished_row, utc_now, written_since
from .resume import resume_problem
from .shared import (
    ColourHistogram,
    SharedPixels,
    fit_shared,
    fit_shared_online,
    load_shared_model,
    shared_document,
    write_shared_model,
)

NOT_DONE = "the batch stopped ({why}) before this input was done; run again with --resume."


class BatchInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a batch (``signum`` says which)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class BatchEvents:
    """What a batch tells its caller while it runs; every method does nothing here.

    The CLI subclasses it for its progress bar (the library prints nothing).
    """

    def phase(self, name, total):
        """A new stage begins: ``total`` files (or EM iterations) to go."""

    def running(self, names):
        """The inputs (relative paths) being processed right now."""

    def advance(self, name, error=None):
        """One input of the stage is done; ``error`` is its failure message, if it failed."""

    def iteration(self, iteration, objective):
        """One EM iteration of the shared model."""


@contextlib.contextmanager
def _stop_on_signals():
    """Turn the first SIGINT / SIGTERM into :class:`BatchInterrupted`; ignore later ones,
    so that the clean-up it starts is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            interrupts.record(signum)  # raised again by waits if this one gets swallowed
            raise BatchInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    old_hook, sys.unraisablehook = sys.unraisablehook, interrupts.quiet_unraisable
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = old_hook
        interrupts.reset()


@contextlib.contextmanager
def _exclusive(out_dir):
    """Hold a lock on OUT_DIR for the run: two batches writing into one folder would delete
    each other's temporary files. The folder itself is locked, so no lock file is left."""
    try:
        import fcntl

        fd = os.open(out_dir, os.O_RDONLY)
    except (ImportError, OSError):  # not POSIX, or a folder that cannot be opened: no lock
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SegmentError(
                f"another 'segment batch' is writing into {out_dir}; wait for it to finish or "
                "choose another output folder."
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_temp_files(folders):
    """Delete what killed writers left: files named TEMP_PREFIX* in the output folders."""
    for folder in folders:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _check_args(in_dir, out_dir, workers, sample_per_image, shared_model, scheduler):
    if not in_dir.exists():
        raise SegmentError(f"{in_dir}: no such folder; check the input folder.")
    if not in_dir.is_dir():
        raise SegmentError(f"{in_dir}: not a folder; 'segment batch' takes a folder of images.")
    if out_dir.exists() and not out_dir.is_dir():
        raise SegmentError(f"cannot use {out_dir} as output folder: a file has that name.")
    if out_dir.resolve() == in_dir.resolve():
        raise SegmentError(
            "the output folder is the input folder; choose another one (e.g. -o segmented)."
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SegmentError(f"--workers must be a whole number >= 1; got {workers!r}.")
    if sample_per_image is not None:
        if not shared_model:
            raise SegmentError("--sample-per-image only applies with --shared-model.")
        if (
            isinstance(sample_per_image, bool)
            or not isinstance(sample_per_image, int)
            or (sample_per_image < 1)
        ):
            raise SegmentError(
                f"--sample-per-image must be a whole number >= 1; got {sample_per_image!r}."
            )
    if isinstance(scheduler, str) and not scheduler.strip():
        raise SegmentError("--scheduler needs an address (tcp://HOST:8786) or 'local'.")


def _refuse_existing(out_dir, jobs, spec, shared_model):
    """Without --resume or --overwrite, existing outputs are an error (nothing is done)."""
    existing = [p for p in shared_output_paths(out_dir, spec.plots) if shared_model and p.exists()]
    n = 0
    for job in jobs:
        found = [p for p in expected_outputs(job, spec, labelling=shared_model) or () if p.exists()]
        n += bool(found)
        existing += found[:1]
    if existing:
        raise SegmentError(
            f"{out_dir} already holds outputs ({n or 1} input(s), e.g. {existing[0].name}); "
            "pass --resume to skip finished inputs, or --overwrite to replace them."
        )


def run_batch(
    in_dir,
    out_dir,
    options,
    *,
    recursive=False,
    pattern=None,
    workers=None,
    resume=False,
    overwrite=False,
    plots=True,
    all_frames=False,
    max_pixels=None,
    soft=False,
    masks=False,
    shared_model=False,
    sample_per_image=None,
    scheduler=None,
    events=None,
    online=False,
    animate=False,
):
    """Segment every image of a folder into a mirrored output tree.

    Parameters
    ----------
    in_dir, out_dir : str or Path
        The input folder and the output folder (created if missing; not the input folder).
    options : FitOptions
    recursive : bool
        Include images in subfolders.
    pattern : str, optional
        Shell pattern for the file names (see :func:`find_inputs`).
    workers : int, optional
        Worker processes (default: the number of cores); 1 runs everything in this process.
        With ``scheduler="local"``, the number of Dask workers.
    resume : bool
        Skip inputs whose outputs are complete, unchanged and made with the same options
        (see :func:`segment.batch.resume.resume_problem`); redo the others (replacing their
        outputs).
    overwrite : bool
        Replace existing outputs. Without it (or ``resume``) existing outputs are an error.
    plots, all_frames, max_pixels, soft, masks
        As for ``segment image`` (the fitting options are in ``options``).
    shared_model : bool
        Fit one mixture to the pixels of all images, save it as OUT_DIR/shared.model.json
        (with its plots) and label every image with it.
    sample_per_image : int, optional
        With ``shared_model``: a random sample of this many pixels per image (per frame)
        for the fit, the same on every run with the same seed.
    scheduler : str or distributed.Client, optional
        Run on Dask: a scheduler address (``tcp://host:8786``), ``"local"``, or a client.
    events : BatchEvents, optional
        Receives progress.
    online : bool
        With ``shared_model``: fit it by one pass of online (stepwise) EM, each image read
        once (see :func:`segment.batch.shared.fit_shared_online`), in this process.
    animate : bool
        NAME.em.gif for every image fitted on its own (not with ``shared_model``).

    Returns
    -------
    BatchResult

    Raises
    ------
    SegmentError
        For problems with the arguments or folders (no input found, outputs that exist
        without ``resume`` / ``overwrite``, dask missing, ...). A bad *image* is not raised:
        it is a failed row of the report.
    """
    t0 = time.perf_counter()
    events = events or BatchEvents()
    options = options.validate()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    workers = default_workers() if workers is None else workers
    _check_args(in_dir, out_dir, workers, sample_per_image, shared_model, scheduler)
    if online and not shared_model:
        raise SegmentError("--online only applies with --shared-model.")
    if online and scheduler is not None:
        raise SegmentError(
            "--online fits in this process, one image after another; drop --scheduler."
        )
    if scheduler is not None:
        import_distributed()
    in_dir, out_abs = in_dir.resolve(), out_dir.resolve()
    not_files = []
    rels = find_inputs(
        in_dir, recursive=recursive, pattern=pattern, exclude=[out_abs], skipped=not_files
    )
    if not rels:
        looked = f"files matching {pattern!r}" if pattern else "image files"
        if not_files:
            rel, reason = not_files[0]
            looked += f" ({len(not_files)} entries are not files, e.g. {rel}: {reason})"
        raise SegmentError(
            f"{in_dir}: no {looked} found"
            + ("" if recursive else " (subfolders are not searched without --recursive)")
            + "; check the folder or --glob."
        )
    jobs = plan_jobs(in_dir, out_abs, rels)
    spec = JobSpec(
        options,
        plots=plots,
        overwrite=overwrite,
        all_frames=all_frames,
        max_pixels=max_pixels,
        soft=soft,
        masks=masks,
        sample_per_image=sample_per_image,
        online=bool(online),
        animate=bool(animate),
    )
    if not resume and not overwrite:
        _refuse_existing(out_dir, jobs, spec, shared_model)
    triage = _triage(jobs, spec, out_abs, resume, shared_model)
    engine = make_engine(workers, scheduler, len(triage.todo))
    with _stop_on_signals(), engine:  # connect to a cluster before writing anything
        make_dir(out_dir)
        with _exclusive(out_abs):
            return _run(
                in_dir, out_abs, jobs, spec, triage, shared_model, engine, events, t0, not_files
            )


@dataclass
class _Triage:
    """What a run has to do: the jobs to run, the rows known before any work (inputs whose
    outputs would clash, and with ``resume`` the finished ones), every job's outputs."""

    todo: list
    rows: dict
    expected: dict
    reuse_shared: bool


def _triage(jobs, spec, out_dir, resume, shared_model):
    inputs = {job.src for job in jobs}
    shared_paths = shared_output_paths(out_dir, spec.plots)
    reserved = set(shared_paths) | {out_dir / n for n in REPORT_NAMES}
    reuse = shared_model and resume and not spec.overwrite and shared_paths[-1].exists()
    triage = _Triage([], {}, {}, reuse)
    for job in jobs:
        paths = triage.expected[job.index] = expected_outputs(job, spec, labelling=shared_model)
        clash = [p for p in paths or () if p in inputs or (shared_model and p in reserved)]
        if clash:
            triage.rows[job.index] = failure_row(
                f"its output {clash[0]} would replace an input or a file of the batch; rename "
                "the file or choose another output folder."
            )
            continue
        complete = paths is not None and all(p.exists() for p in paths)
        # With a new shared model, earlier per-image outputs are stale; others are kept
        # only when whole and made with these options (else they are made again).
        if (
            resume
            and complete
            and (reuse or not shared_model)
            and resume_problem(paths, spec.options) is None
        ):
            triage.rows[job.index] = finished_row(paths)
            continue
        partial = paths is not None and any(p.exists() for p in paths)
        triage.todo.append(replace(job, overwrite=resume and partial))
    return triage


def _run(in_dir, out_dir, jobs, spec, triage, shared_model, engine, events, t0, not_files=()):
    folders = sorted({out_dir} | {job.out_dir for job in jobs})
    meta = {
        "in_dir": str(in_dir),
        "out_dir": str(out_dir),
        "options": spec.options.to_dict(),
        "shared_model": bool(shared_model),
        "sample_per_image": spec.sample_per_image,
        "online": spec.online,
        "engine": engine.description,
        "started": utc_now(),
    }
    report = Report(out_dir, jobs, meta, not_files)
    for index, row in triage.rows.items():
        report.set(jobs[index], row)
    started = time.time()
    todo = triage.todo
    _remove_temp_files(folders)
    interrupted = None
    stopped = None  # why the batch ended early, for the rows it did not reach
    shared_path = None
    try:
        report.write("running")
        try:
            if shared_model and todo:
                spec, shared_path, todo = _shared_stage(
                    engine, spec, todo, jobs, report, in_dir, out_dir, triage.reuse_shared, events
                )
            _segment_stage(engine, spec, todo, report, events)
        except BaseException:
            # Stop the workers now: the engine's exit would wait for them.
            engine.abort()
            raise
    except KeyboardInterrupt as err:
        interrupted = getattr(err, "signum", signal.SIGINT)
        stopped = f"interrupted by {signal.Signals(interrupted).name}"
    except BaseException as err:
        stopped = " ".join(str(err).split()) or type(err).__name__
        raise
    finally:
        _remove_temp_files(folders)
        for job, row in zip(jobs, report.rows, strict=True):
            if row["status"] != "pending":
                continue
            paths = triage.expected[job.index]
            if written_since(paths, started):
                # Done by a worker, but the run stopped before it could say so.
                report.set(job, finished_row(paths, status="ok"))
            else:
                row.update(status="interrupted", error=NOT_DONE.format(why=stopped))
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        meta["stopped"] = stopped
        try:
            report.write("finished" if stopped is None else "stopped")
        except SegmentError as err:
            # A full disk: the report on disk (if any) would say "running" forever.
            report.discard()
            raise SegmentError(
                f"{str(err).rstrip('.')} (the batch's report could not be written, so the "
                "stale one was removed; the outputs written are complete)."
            ) from None
    if (
        shared_model
        and shared_path is None
        and shared_output_paths(out_dir, spec.plots)[-1].exists()
    ):
        shared_path = shared_output_paths(out_dir, spec.plots)[-1]
    return BatchResult(
        report.all_rows(),
        report.counts(),
        interrupted,
        time.perf_counter() - t0,
        report.csv_path,
        report.json_path,
        shared_path,
    )


def _segment_stage(engine, spec, todo, report, events):
    events.phase("labelling" if spec.model is not None else "segmenting", len(todo))
    fn = functools.partial(segment_job, spec)
    for job, result in engine.imap(fn, todo, events):
        report.set(job, result)
        events.advance(job.rel, result.get("error") or None)
        report.write("running", force=False)


def _shared_written(fitted, source, plot_parts, spec, todo, good, in_dir, out_dir):
    """Write the fitted shared model; return the labelling spec, its path and the jobs left."""
    model = fitted[0]
    seg, doc = shared_document(fitted, source, plot_parts, spec, in_dir, len(good))
    path = write_shared_model(seg, doc, out_dir, spec.plots)
    fit = {"iterations": int(model.n_iter_), "converged": bool(model.converged_)}
    return (
        replace(spec, model=model, shared_fit=fit),
        path,
        [job for job in todo if job.index in good],
    )


def _shared_online(spec, todo, candidates, report, in_dir, out_dir, events):
    """The shared model by one pass of online EM in this process (each image read once)."""
    events.phase("online EM over the images", len(candidates))

    def seen(job, result):
        events.advance(job.rel, result.get("error") or None)
        if result["status"] != "ok":
            report.set(job, result)
            report.write("running", force=False)

    fitted, source, plot_parts, good = fit_shared_online(
        candidates, spec, on_result=seen, on_iteration=None
    )
    if not good:
        return spec, None, []
    return _shared_written(fitted, source, plot_parts, spec, todo, good, in_dir, out_dir)


def _shared_stage(engine, spec, todo, jobs, report, in_dir, out_dir, reuse, events):
    """Fit (or, resuming, load) the shared model; return the labelling spec, the model's
    path and the jobs still to do (those whose colour pass failed are reported)."""
    path = shared_output_paths(out_dir, spec.plots)[-1]
    if reuse:
        model, fit = load_shared_model(path, spec)
        return replace(spec, model=model, shared_fit=fit), path, todo
    # The model is of the whole folder, so every readable input counts, done or not.
    candidates = [job for job in jobs if report.rows[job.index]["status"] != "failed"]
    if spec.online:
        return _shared_online(spec, todo, candidates, report, in_dir, out_dir, events)
    events.phase("reading colours", len(candidates))
    hist, streamed, plot_parts, good = ColourHistogram(), [], [], set()
    fn = functools.partial(colour_job, spec)
    for job, result in engine.imap(fn, candidates, events):
        events.advance(job.rel, result.get("error") or None)
        if result["status"] != "ok":
            report.set(job, result)
            report.write("running", force=False)
            continue
        good.add(job.index)
        hist.add(result)
        streamed += [(job.src, f, job.rel, n) for f, n in result["streamed"]]
        plot_parts += result["plot"]
    if not good:
        return spec, None, []
    # Frames in input order, so that the rows (and the fit) do not depend on which worker
    # finished first.
    streamed.sort(key=lambda s: (s[2], s[1]))
    source = SharedPixels(spec, *hist.rows(spec.options.space), streamed)
    events.phase("fitting the shared model", spec.options.max_iter * spec.options.n_init)
    client = engine.client if isinstance(engine, DaskEngine) else None
    fitted = fit_shared(source, spec.options, on_iteration=events.iteration, scheduler=client)
    return _shared_written(fitted, source, plot_parts, spec, todo, good, in_dir, out_dir)
