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
import csv
import fnmatch
import functools
import io as _io
import json
import os
import re
import signal
import threading
import time
import uuid
import warnings
import zlib
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import gmm

from . import __version__, pipeline
from .errors import SegmentError
from .features import (
    color_keys,
    distinct_colors,
    features_to_rgb,
    keys_to_rgb8,
    pixel_data,
    rgb_to_features,
    rgb_to_uint8,
)
from .io import READABLE_EXTENSIONS, TEMP_PREFIX, atomic_write, count_frames, load_image
from .options import FitOptions
from .outputs import jsonable, psnr, write_json

__all__ = [
    "REPORT_FIELDS",
    "BatchEvents",
    "BatchInterrupted",
    "BatchResult",
    "SharedPixels",
    "find_inputs",
    "fit_shared",
    "run_batch",
]

REPORT_FORMAT = "segment.batch-report/1"
#: Columns of report.csv (report.json rows have these and the notes).
REPORT_FIELDS = (
    "path",
    "status",
    "error",
    "k",
    "iterations",
    "converged",
    "log_likelihood",
    "bic",
    "psnr_db",
    "seconds",
    "frames",
)
SHARED_STEM = "shared"
REPORT_NAMES = ("report.csv", "report.json")
#: How long to try to reach a Dask scheduler.
DASK_CONNECT_TIMEOUT = "10s"
DASK_MISSING = "--scheduler needs the dask extra: pip install 'segment[dask]'"
WORKER_DIED = (
    "the worker process died while processing it (killed, out of memory, or a crash in a "
    "library); run again with --resume to retry it."
)
NOT_DONE = "the batch stopped ({why}) before this input was done; run again with --resume."
#: Rows per image kept for the density plot of the shared model (streamed images only).
PLOT_ROWS = 2000
#: Seconds between two rewrites of the report while jobs finish.
REPORT_INTERVAL = 1.0


# =============================================================================================
# Public types
# =============================================================================================


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


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    rows : list of dict
        One per input, in input order, with the :data:`REPORT_FIELDS` (and ``notes``).
    counts : dict
        Inputs per status: ``ok``, ``failed``, ``skipped``, and ``interrupted`` (inputs not
        done because the run was stopped).
    interrupted_by : int or None
        The signal that stopped the run.
    seconds : float
    report_csv, report_json : Path
    shared_model : Path or None
        OUT_DIR/shared.model.json when a shared model was used.
    """

    rows: list
    counts: dict
    interrupted_by: int | None
    seconds: float
    report_csv: Path
    report_json: Path
    shared_model: Path | None = None

    @property
    def exit_code(self):
        """128 + the signal if interrupted, 1 if any input failed, else 0."""
        if self.interrupted_by is not None:
            return 128 + int(self.interrupted_by)
        return 1 if self.counts.get("failed") else 0


# =============================================================================================
# Finding the inputs and planning the jobs
# =============================================================================================


def find_inputs(in_dir, *, recursive=False, pattern=None, exclude=()):
    """Image files of a folder, as paths relative to it, sorted.

    Parameters
    ----------
    in_dir : Path
    recursive : bool
        Descend into subfolders.
    pattern : str, optional
        Shell pattern matched, ignoring case, against the file name; or, when it contains a
        "/", against the path below ``in_dir`` (there "*" stays within a folder and "**/"
        spans any number of folders). Default: every extension Pillow can decode.
    exclude : iterable of Path
        Folders not to enter (the output tree when it lies inside the input tree).

    Notes
    -----
    Hidden files and folders (names starting with ".") are ignored, which also leaves out
    temporary files of interrupted runs.
    """
    in_dir = Path(in_dir)
    excluded = {Path(p).resolve() for p in exclude}
    matches = _matcher(pattern)
    found = []
    for dirpath, dirnames, filenames in os.walk(in_dir):
        base = Path(dirpath)
        dirnames[:] = (
            sorted(
                d
                for d in dirnames
                if not d.startswith(".") and (base / d).resolve() not in excluded
            )
            if recursive
            else []
        )
        for name in filenames:
            rel = (base / name).relative_to(in_dir)
            if not name.startswith(".") and matches(rel) and (base / name).is_file():
                found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def _matcher(pattern):
    if pattern is None:
        return lambda rel: rel.suffix.lower() in READABLE_EXTENSIONS
    if "/" not in pattern:
        return lambda rel: fnmatch.fnmatchcase(rel.name.lower(), pattern.lower())
    regex = _path_regex(pattern)
    return lambda rel: regex.match(rel.as_posix()) is not None


def _path_regex(pattern):
    """A glob over "/"-separated paths as a regular expression (fnmatch's "*" would match
    across folders)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = pattern[i]
        end = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif end != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE)


@dataclass(frozen=True)
class Job:
    """One input: where it is, where its outputs go."""

    index: int
    rel: str  # path relative to IN_DIR, with "/"
    src: Path  # absolute
    out_dir: Path  # absolute
    stem: str
    overwrite: bool = False


@dataclass(frozen=True)
class JobSpec:
    """What every job of a run shares (sent to the workers with each job)."""

    options: FitOptions
    plots: bool = True
    overwrite: bool = False
    all_frames: bool = False
    max_pixels: int | None = None
    soft: bool = False
    masks: bool = False
    sample_per_image: int | None = None
    model: object = None  # the shared GaussianMixture, for the labelling stage
    shared_fit: dict | None = None  # its iterations and convergence, for the report rows


def _plan(in_dir, out_dir, rels):
    """Jobs with their output folder (the input's folder mirrored) and stem."""
    by_dir = {}
    for rel in rels:
        by_dir.setdefault(rel.parent, []).append(rel)
    stems = {}
    for members in by_dir.values():
        for rel, stem in zip(members, pipeline.stems_for(members), strict=True):
            stems[rel] = stem
    return [
        Job(i, rel.as_posix(), in_dir / rel, out_dir / rel.parent, stems[rel])
        for i, rel in enumerate(rels)
    ]


def _expected_outputs(job, spec, *, labelling):
    """Every output path the job writes (all frames with ``all_frames``), or None when the
    number of frames cannot be read (the job will then fail and say why)."""
    stems = [job.stem]
    if spec.all_frames:
        try:
            n = count_frames(job.src, max_pixels=spec.max_pixels)
        except SegmentError:
            return None
        if n > 1:
            stems = [f"{job.stem}.f{i:03d}" for i in range(n)]
    paths = []
    for stem in stems:
        kinds = pipeline.output_paths(job.out_dir, stem, plots=spec.plots, soft=spec.soft)
        if labelling:
            kinds.pop("loglik", None)  # apply_file writes no log-likelihood plot
        paths += kinds.values()
        if spec.masks:
            k = spec.options.k_range[1] if spec.options.k_range else spec.options.k
            paths += _mask_paths(job.out_dir, stem, kinds["model"], k)
    return paths


def _mask_paths(out_dir, stem, model_path, k):
    """One mask per fitted component: K is read from the model file when there is one (the
    fit may have used fewer components than asked, for images with few colours)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        k = int(json.loads(model_path.read_text(encoding="utf-8"))["gmm"]["n_components"])
    kinds = pipeline.output_paths(out_dir, stem, plots=False, masks=k)
    return [p for kind, p in kinds.items() if kind.startswith("mask")]


def _shared_paths(out_dir, plots):
    paths = pipeline.output_paths(out_dir, SHARED_STEM, plots=plots)
    return [paths[k] for k in ("loglik", "density", "model") if k in paths]


# =============================================================================================
# The work of one input (runs in a worker)
# =============================================================================================


def _failure(message):
    return {"status": "failed", "error": message}


def _one_line(job, err):
    """The error's message without the input's absolute path in front (the row has it)."""
    text = " ".join(str(err).split())
    prefix = f"{job.src}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _guarded(work):
    """Run ``work(spec, job)``; any failure becomes a ``failed`` result, never an exception
    (a pool or a cluster then has nothing to pickle but plain data)."""

    @functools.wraps(work)
    def run(spec, job):
        t0 = time.perf_counter()
        try:
            result = work(spec, job)
        except SegmentError as err:
            result = _failure(_one_line(job, err))
        except MemoryError:
            result = _failure("out of memory; try a smaller --memory-mib or fewer --workers.")
        except Exception as err:  # a bug or an odd library error: still one row, one line
            result = _failure(f"internal error ({type(err).__name__}: {_one_line(job, err)}).")
        result["seconds"] = time.perf_counter() - t0
        return result

    return run


@_guarded
def segment_job(spec, job):
    """Segment (or, with a shared model, label) one input; return its report row."""
    common = dict(
        stem=job.stem,
        overwrite=spec.overwrite or job.overwrite,
        plots=spec.plots,
        all_frames=spec.all_frames,
        max_pixels=spec.max_pixels,
        soft=spec.soft,
        masks=spec.masks,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline turns what matters into notes
        if spec.model is None:
            summaries = pipeline.segment_file(job.src, job.out_dir, spec.options, **common)
        else:
            summaries = pipeline.apply_file(
                spec.model, spec.options, job.src, job.out_dir, **common
            )
    first = {**(spec.shared_fit or {}), **summaries[0]}
    notes = [n for s in summaries for n in s.get("notes", [])]
    return {
        "status": "ok",
        "error": "",
        **{k: first.get(k) for k in REPORT_FIELDS if k not in ("path", "status", "error")},
        "frames": len(summaries),
        "notes": list(dict.fromkeys(notes)),
    }


# -- the colour pass of the shared model -------------------------------------------------------


def _dedupable(image, options):
    # The same condition as segment.features.pixel_data's exact deduplication.
    return image.pixels.dtype == np.uint8 and options.xy == 0


def _rng(spec, rel, frame):
    """The per-image generator of the sample: it depends on the seed and the image only, so
    every pass (and every worker) draws the same rows."""
    return np.random.default_rng([spec.options.seed, zlib.crc32(rel.encode("utf-8")), frame])


def _sample(n, spec, rel, frame):
    """Sorted indices of the rows kept from an image of ``n`` rows, or None for all."""
    size = spec.sample_per_image
    if size is None or n <= size:
        return None
    return np.sort(_rng(spec, rel, frame).choice(n, size=size, replace=False))


def _frame_histogram(image, spec, rel):
    """Distinct colour keys of one frame's visible pixels (or of its sample) and counts."""
    if image.alpha is not None and not image.alpha.any():
        raise SegmentError(
            f"{image.path}: every pixel is fully transparent; there is nothing to segment."
        )
    if spec.sample_per_image is None:
        return distinct_colors(image.pixels, image.alpha)
    keys = color_keys(image.pixels)
    keys = keys.ravel() if image.alpha is None else keys[image.alpha]
    idx = _sample(keys.size, spec, rel, image.frame)
    return np.unique(keys if idx is None else keys[idx], return_counts=True)


def _frame_rows(image, spec, rel):
    """Feature rows (n, D) float32 of one frame's visible pixels, sampled as asked."""
    X = pixel_data(image, space=spec.options.space, xy=spec.options.xy, dedup=False).X
    idx = _sample(len(X), spec, rel, image.frame)
    return X if idx is None else X[idx]


def stream_rows(src, frame, rel, spec):
    """Rows of one frame of a streamed image, read again from its file."""
    return _frame_rows(load_image(src, frame=frame, max_pixels=spec.max_pixels), spec, rel)


def _plot_pick(n):
    return np.unique(np.linspace(0, n - 1, min(n, PLOT_ROWS)).astype(np.intp))


@_guarded
def colour_job(spec, job):
    """One input's part of the shared data: its colour histogram (8-bit colour) or, for
    streamed frames, their row counts and a few rows for the plot."""
    hists, streamed, plot = [], [], []
    for image in pipeline.frames(job.src, spec.all_frames, spec.max_pixels):
        if _dedupable(image, spec.options):
            hists.append(_frame_histogram(image, spec, job.rel))
        else:
            X = _frame_rows(image, spec, job.rel)
            streamed.append((image.frame, len(X)))
            pick = _plot_pick(len(X))
            plot.append((X[pick], len(X) / len(pick)))
        del image
    keys = counts = None
    if len(hists) == 1:
        keys, counts = hists[0]
    elif hists:  # frames of one file: merge their histograms
        keys, inverse = np.unique(np.concatenate([k for k, _ in hists]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([c for _, c in hists]))
        counts = counts.astype(np.int64)
    return {"status": "ok", "keys": keys, "counts": counts, "streamed": streamed, "plot": plot}


# =============================================================================================
# Engines: where the jobs run
# =============================================================================================


class _Inline:
    """Jobs one after another in this process (``--workers 1``)."""

    description = "in this process"
    slots = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, jobs, events):
        for job in jobs:
            events.running([job.rel])
            yield job, fn(job)

    def abort(self):
        pass


# -- process pool ------------------------------------------------------------------------------

_IN_JOB = False


class _Terminated(BaseException):
    """SIGTERM in a pool worker during a job: unwinds it (removing the temp file being
    written) before the worker exits."""


def _on_worker_sigterm(signum, frame):
    if _IN_JOB:
        raise _Terminated
    os._exit(128 + signum)


def _worker_init():
    # The parent decides when to stop (a terminal's Ctrl-C reaches the whole process group)
    # and then sends SIGTERM. Both were blocked while this process was started, so that a
    # signal arriving before these handlers existed waits for them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _in_worker(fn, job):
    global _IN_JOB
    _IN_JOB = True
    try:
        return fn(job)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_JOB = False


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM (delivered afterwards) while a worker is started."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: One BLAS thread per worker process: N workers on N cores, not N x N threads.
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _retry(job):
    # The first attempt may have written part of the job's outputs: they are replaced.
    return replace(job, overwrite=True)


class _Pool:
    """A process pool (spawned processes: no inherited threads or locks)."""

    def __init__(self, workers):
        self.workers = workers
        self.slots = workers
        self.description = f"{workers} worker processes"
        self._executor = None
        self._inflight = {}
        self._saved_env = {}

    def __enter__(self):
        for name in _BLAS_ENV:
            self._saved_env[name] = os.environ.get(name)
            os.environ.setdefault(name, "1")
        self._executor = self._new_executor()
        return self

    def __exit__(self, *exc):
        try:
            self._executor.shutdown(wait=True, cancel_futures=True)
        finally:
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return False

    def _new_executor(self):
        import multiprocessing

        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )

    def imap(self, fn, jobs, events):
        """Yield ``(job, fn(job))`` as jobs finish, with at most one job per worker in
        flight (so "running" is what really runs). A job whose worker died is retried once
        in a new pool, then reported failed."""
        pending = deque((job, 0) for job in jobs)
        inflight = self._inflight
        while pending or inflight:
            broken = False
            while pending and len(inflight) < self.slots:
                job, attempt = pending.popleft()
                try:
                    with _signals_held():  # a worker may be started here
                        future = self._executor.submit(_in_worker, fn, job)
                except BrokenProcessPool:  # a worker died since the last results
                    pending.appendleft((job, attempt))
                    broken = True
                    break
                inflight[future] = (job, attempt)
            if not broken:
                events.running([job.rel for job, _ in inflight.values()])
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: inflight[f][0].index):
                    result = self._result(future, pending)
                    broken |= result is None
                    if result is not None:
                        yield result
            if broken:
                # Every job still in flight ends (a result, or the same failure): collect
                # them, then start a new pool.
                _, hung = wait(list(inflight), timeout=60.0)
                for future in hung:
                    yield inflight.pop(future)[0], _failure(WORKER_DIED)
                for future in sorted(inflight, key=lambda f: inflight[f][0].index):
                    result = self._result(future, pending)
                    if result is not None:
                        yield result
                self._executor.shutdown(wait=True)
                self._executor = self._new_executor()

    def _result(self, future, pending):
        """``(job, result)`` of a finished future; None when its worker died and the job
        goes back to ``pending`` for a second attempt."""
        job, attempt = self._inflight.pop(future)
        try:
            return job, future.result()
        except BrokenProcessPool:
            if attempt == 0:
                pending.appendleft((_retry(job), 1))
                return None
            return job, _failure(WORKER_DIED)
        except Exception as err:
            return job, _failure(f"internal error ({type(err).__name__}: {err}).")

    def abort(self):
        """Stop now: cancel queued jobs, SIGTERM the workers (each removes the file it was
        writing), and kill any that has not exited after a few seconds."""
        executor = self._executor
        if executor is None:
            return
        for future in self._inflight:
            future.cancel()
        # Python 3.14 has executor.terminate_workers(); before, the processes are private.
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for p in processes:
            with contextlib.suppress(Exception):
                p.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 10.0
        for p in processes:
            with contextlib.suppress(Exception):
                p.join(max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
        self._inflight.clear()


# -- Dask -------------------------------------------------------------------------------------


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise SegmentError(DASK_MISSING) from None
    return distributed


class _Dask:
    """Jobs on a Dask cluster: a running scheduler's address, ``"local"`` (a LocalCluster of
    ``workers`` processes on this machine), or a ``distributed.Client`` given by the caller
    (not closed here)."""

    def __init__(self, scheduler, workers):
        self.scheduler = scheduler
        self.workers = workers
        self.client = None
        self._cluster = None
        self._own_client = False
        self._inflight = {}

    def __enter__(self):
        try:
            self._connect()
        except BaseException:  # a failed or interrupted start: leave nothing running
            self.__exit__()
            raise
        threads = sum(self.client.nthreads().values()) or 1
        self.slots = max(2, 2 * threads)
        where = (
            "local cluster"
            if self._cluster is not None
            else getattr(self.client.scheduler, "address", "scheduler")
        )
        self.description = f"Dask ({where}, {threads} threads)"
        return self

    def _connect(self):
        distributed = _import_distributed()
        if not isinstance(self.scheduler, str):
            self.client = self.scheduler
            return
        import logging

        self._own_client = True
        try:
            if self.scheduler == "local":
                import dask

                # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off
                # glibc's adaptive mmap threshold: every large numpy temporary then costs
                # fresh pages (15x the page faults, 3x the system time of the local pool).
                # A None unsets it (read when the nannies are made).
                unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
                with dask.config.set(unset_trim), _environ_restored():
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=":0",  # any free port: two clusters must not clash
                        silence_logs=logging.ERROR,
                    )
                self.client = distributed.Client(self._cluster, set_as_default=False)
            else:
                self.client = distributed.Client(
                    self.scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False
                )
        except (OSError, TimeoutError, ValueError) as err:
            raise SegmentError(
                f"cannot connect to the Dask scheduler at {self.scheduler} "
                f"({' '.join(str(err).split())}); start one with 'dask scheduler' and "
                "'dask worker ADDRESS', or check the address."
            ) from None

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            if self._own_client and self.client is not None:
                self.client.close()
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close()
        return False

    def imap(self, fn, jobs, events):
        distributed = _import_distributed()
        pending = deque(jobs)
        inflight = self._inflight
        tag = uuid.uuid4().hex[:12]
        done = distributed.as_completed(loop=self.client.loop)

        def submit():
            job = pending.popleft()
            future = self.client.submit(fn, job, key=f"segment-batch-{tag}-{job.index}")
            inflight[future.key] = (job, future)
            done.add(future)

        while pending and len(inflight) < self.slots:
            submit()
        events.running([job.rel for job, _ in inflight.values()])
        for future in done:
            job, _ = inflight.pop(future.key)
            try:
                result = future.result()
            except Exception as err:  # KilledWorker, lost connection, ...
                result = _failure(f"the Dask task failed ({type(err).__name__}: {err}).")
            future.release()
            if pending:
                submit()
            events.running([j.rel for j, _ in inflight.values()])
            yield job, result

    def abort(self):
        with contextlib.suppress(Exception):
            self.client.cancel([f for _, f in self._inflight.values()])
        self._inflight.clear()


@contextlib.contextmanager
def _environ_restored():
    """Undo what a block does to ``os.environ``: in-process Dask nannies write their
    workers' variables into their own process before spawning them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def _engine(workers, scheduler, n_jobs):
    if scheduler is not None:
        return _Dask(scheduler, workers)
    workers = min(workers, max(1, n_jobs))
    return _Inline() if workers <= 1 else _Pool(workers)


def default_workers():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# =============================================================================================
# The shared model
# =============================================================================================


class SharedPixels(gmm.ChunkSource):
    """The pixels of many images as one chunk source, never all in memory.

    The rows are: first the colour histogram of the 8-bit images (distinct colours weighted
    by their pixel counts over all images: exactly equivalent to all those pixels), then
    the rows of every *streamed* frame (16-bit or float images, or any image with position
    features), read again from its file on every pass.

    Build it with :meth:`from_files` (or from the results of the colour pass).
    """

    def __init__(self, spec, hist_X=None, hist_w=None, streamed=()):
        self.spec = spec
        self.hist_X = hist_X
        self.hist_w = hist_w
        self.streamed = list(streamed)  # (src, frame, rel, n_rows)
        self.n_features = 3 + (2 if spec.options.xy else 0)
        self.n_rows = (0 if hist_X is None else len(hist_X)) + sum(s[3] for s in self.streamed)

    @classmethod
    def from_files(
        cls, paths, options, *, root=None, sample_per_image=None, all_frames=False, max_pixels=None
    ):
        """The shared pixels of ``paths`` (relative to ``root`` for the sample's seeds)."""
        spec = JobSpec(
            options, all_frames=all_frames, max_pixels=max_pixels, sample_per_image=sample_per_image
        )
        root = Path(root) if root is not None else None
        hist = _Histogram()
        streamed = []
        for i, p in enumerate(paths):
            p = Path(p)
            rel = p.relative_to(root).as_posix() if root is not None else p.name
            job = Job(i, rel, p.resolve(), Path(), p.stem)
            result = colour_job(spec, job)
            if result["status"] != "ok":
                raise SegmentError(f"{p}: {result['error']}")
            hist.add(result)
            streamed += [(job.src, f, rel, n) for f, n in result["streamed"]]
        return cls(spec, *hist.rows(options.space), streamed)

    @property
    def total_weight(self):
        hist = 0.0 if self.hist_w is None else float(self.hist_w.sum())
        return hist + float(sum(s[3] for s in self.streamed))

    def chunks(self, max_rows):
        if self.hist_X is not None:
            yield from gmm.ArraySource(self.hist_X, self.hist_w).chunks(max_rows)
        for src, frame, rel, _ in self.streamed:
            X = stream_rows(src, frame, rel, self.spec)
            for a in range(0, len(X), max_rows):
                yield X[a : a + max_rows], None

    def to_dask(self, rows_per_block=1 << 18):
        """The same rows as a dask array and weights: the histogram split in blocks, and one
        block per streamed frame, read on the workers."""
        import dask
        import dask.array as da

        xs, ws = [], []
        if self.hist_X is not None:
            xs.append(da.from_array(self.hist_X, chunks=(rows_per_block, self.n_features)))
            ws.append(da.from_array(self.hist_w, chunks=(rows_per_block,)))
        for src, frame, rel, n in self.streamed:
            rows = dask.delayed(stream_rows, pure=True)(src, frame, rel, self.spec)
            xs.append(da.from_delayed(rows, shape=(n, self.n_features), dtype=np.float32))
            ws.append(da.ones((n,), chunks=(n,), dtype=np.float64))
        return da.concatenate(xs, axis=0), da.concatenate(ws, axis=0)


class _Histogram:
    """Pixel counts of the 24-bit colours over many images (integers: the order in which
    images arrive does not matter)."""

    def __init__(self):
        self.counts = None

    def add(self, result):
        if result.get("keys") is None:
            return
        if self.counts is None:
            self.counts = np.zeros(1 << 24, dtype=np.int64)  # 128 MiB, touched sparsely
        self.counts[result["keys"]] += result["counts"]

    def rows(self, space):
        """(X, w) of the distinct colours, or (None, None) when no image was 8-bit."""
        if self.counts is None:
            return None, None
        keys = np.flatnonzero(self.counts).astype(np.uint32)
        w = self.counts[keys].astype(np.float64)
        self.counts = None
        rgb = keys_to_rgb8(keys).astype(np.float32) / 255.0
        return rgb_to_features(rgb, space), w


def fit_shared(source, options, *, dtype=np.float32, init=None, on_iteration=None, scheduler=None):
    """Fit one mixture to the pixels of a :class:`SharedPixels` source.

    Parameters
    ----------
    source : SharedPixels
    options : FitOptions
        As for one image, including a range of k or ``covariance_type="auto"`` (the mixture
        is then chosen by BIC).
    dtype : float32 or float64
    init : dict, optional
        ``weights_init`` / ``means_init`` / ``precisions_init`` for the estimator (one k).
    on_iteration : callable, optional
        ``on_iteration(iteration, objective)`` after each EM iteration.
    scheduler : distributed.Client or dask scheduler name, optional
        Fit on Dask: the rows are made a dask array (:meth:`SharedPixels.to_dask`), kept in
        the workers' memory, and every E-step is a map-reduce over its blocks there
        (:class:`gmm.DaskSource`). The result equals the local fit up to the order of sums.

    Returns
    -------
    model : GaussianMixture
        Components sorted from dark to light, like every segmentation.
    notes : list of str
    selection : gmm.Selection or None
        The BIC table when the mixture was chosen among several.
    """
    distinct = None if source.streamed or source.hist_X is None else len(source.hist_X)
    data = source
    if scheduler is not None:
        X, w = _persisted(source.to_dask(), scheduler)
        data = gmm.DaskSource(X, w, scheduler=scheduler)
    model, notes, selection = pipeline.fit_rows(
        data,
        None,
        options,
        on_iteration=on_iteration,
        distinct=distinct,
        dtype=dtype,
        init=init,
        where="shared model",
    )
    model.callback = None  # the model is shipped to the workers next
    return model, notes, selection


def _persisted(arrays, scheduler):
    """The arrays computed once and kept in the workers' memory for all the EM passes."""
    if hasattr(scheduler, "persist"):  # a distributed.Client
        return scheduler.persist(list(arrays))
    import dask

    return dask.persist(*arrays, scheduler=scheduler)


def _shared_view(model, notes, selection, source, plot_parts, options):
    """What the pipeline's model document and plots read of a segmentation, for the shared
    model: the plot rows are the histogram and a few weighted rows of each streamed frame."""
    xs, ws = [], []
    if source.hist_X is not None:
        xs.append(source.hist_X)
        ws.append(source.hist_w)
    for X, weight in plot_parts:
        xs.append(X)
        ws.append(np.full(len(X), weight))
    X = np.concatenate(xs).astype(np.float32, copy=False)
    data = SimpleNamespace(
        X=X,
        weight=np.concatenate(ws),
        rgb=features_to_rgb(X[:, :3], options.space).astype(np.float32),
        space=options.space,
        xy=float(options.xy),
        shape=(1, round(source.total_weight)),
    )
    palette = rgb_to_uint8(features_to_rgb(model.means_, options.space))
    return SimpleNamespace(
        model=model,
        data=data,
        k=model.n_components,
        quantized_palette=palette,
        notes=notes,
        selection=selection,
        options=options,
    )


def _shared_figures(view, source):
    """The figures of NAME.model.json for the shared model, over all its pixels."""
    model = view.model
    total = source.total_weight
    loglik = float(model.score(source))  # exact: a pass over the histogram and the files
    figures = {
        "k": int(model.n_components),
        "iterations": int(model.n_iter_),
        "converged": bool(model.converged_),
        "log_likelihood": loglik,
        "bic": -2.0 * loglik * total + model.n_parameters() * float(np.log(total)),
        "psnr_db": None,
        "pixels": round(total),
        "distinct_colours": None if source.hist_X is None else len(source.hist_X),
        "resets": int(model.n_resets_),
        "notes": list(view.notes),
    }
    if not source.streamed:  # the histogram is every pixel: PSNR of the quantised colours
        approx = view.quantized_palette[model.predict(source.hist_X)] / 255.0
        rgb = features_to_rgb(source.hist_X, view.data.space)
        figures["psnr_db"] = psnr(rgb, approx, source.hist_w)
    return figures


def _shared_document(fitted, source, plot_parts, spec, in_dir, n_images):
    """The shared model's view (for its plots) and its document, in the format of
    NAME.model.json so that ``segment apply -m shared.model.json`` reads it."""
    view = _shared_view(*fitted, source, plot_parts, spec.options)
    figures = _shared_figures(view, source)
    stub = SimpleNamespace(path=in_dir, mode="", format="", frame=0)
    doc = pipeline.model_document(view, stub, spec.options, figures)
    doc["input"] = {
        "folder": str(in_dir),
        "images": int(n_images),
        "streamed_frames": len(source.streamed),
        "pixels": figures["pixels"],
        "sample_per_image": spec.sample_per_image,
    }
    return view, doc


def _write_shared(seg, doc, out_dir, plots):
    paths = pipeline.output_paths(out_dir, SHARED_STEM, plots=plots)
    if plots:
        pipeline.plot_loglik(seg, paths["loglik"], True)
        pipeline.plot_density(seg, paths["density"], True)
    write_json(paths["model"], doc, overwrite=True)  # last: its presence marks the set complete
    return paths["model"]


def _load_shared(path, spec):
    """The shared model of an earlier run of the same batch (``--resume``)."""
    model, options, doc = pipeline.load_model_file(path)
    sample = (doc.get("input") or {}).get("sample_per_image")
    if options != spec.options or sample != spec.sample_per_image:
        raise SegmentError(
            f"{path} was fitted with other options; pass --overwrite to fit it again, or use "
            "another output folder."
        )
    fit = {"iterations": int(model.n_iter_), "converged": bool(model.converged_)}
    return model, fit


# =============================================================================================
# The report
# =============================================================================================


def _now():
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Report:
    """One row per input, kept in input order, written as CSV and JSON."""

    def __init__(self, out_dir, jobs, meta):
        self.csv_path = out_dir / "report.csv"
        self.json_path = out_dir / "report.json"
        self.meta = meta
        self.rows = [self._blank(job.rel) for job in jobs]
        self._written = 0.0

    @staticmethod
    def _blank(rel, status="pending", error=""):
        row = dict.fromkeys(REPORT_FIELDS)
        row.update(path=rel, status=status, error=error, notes=[])
        return row

    def set(self, job, result):
        row = self._blank(job.rel)
        row.update({k: v for k, v in result.items() if k in row})
        self.rows[job.index] = row

    def counts(self):
        counts = dict.fromkeys(("ok", "failed", "skipped", "pending", "interrupted"), 0)
        for row in self.rows:
            counts[row["status"]] += 1
        return counts

    def write(self, state, *, force=True):
        """Rewrite both files (at most once per REPORT_INTERVAL unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._written < REPORT_INTERVAL:
            return
        self._written = now
        doc = {
            "format": REPORT_FORMAT,
            "segment_version": __version__,
            **self.meta,
            "state": state,
            "updated": _now(),
            "counts": self.counts(),
            "rows": self.rows,
        }
        text = json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n"
        with atomic_write(self.json_path, overwrite=True) as f:
            f.write(text.encode("utf-8"))
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_write(self.csv_path, overwrite=True) as f:
            f.write(buf.getvalue().encode("utf-8"))


def _written_since(paths, t):
    """Whether every output exists and the model file(s), written last, are newer than t."""
    try:
        return (
            bool(paths)
            and all(p.stat().st_mtime >= t for p in paths if p.name.endswith(".model.json"))
            and all(p.exists() for p in paths)
        )
    except OSError:
        return False


def _finished_row(paths, status="skipped"):
    """A finished input's row, with the figures its NAME.model.json recorded."""
    row = {"status": status, "error": "", "seconds": 0.0 if status == "skipped" else None}
    model_files = [p for p in paths if p.name.endswith(".model.json")]
    row["frames"] = len(model_files)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, IndexError):
        doc = json.loads(model_files[0].read_text(encoding="utf-8"))
        summary = doc.get("summary", {})
        row.update(
            k=summary.get("k"),
            iterations=summary.get("iterations", doc["gmm"].get("n_iter")),
            converged=summary.get("converged", doc["gmm"].get("converged")),
            log_likelihood=summary.get("log_likelihood"),
            bic=summary.get("bic"),
            psnr_db=summary.get("psnr_db"),
            notes=summary.get("notes", []),
        )
    return row


# =============================================================================================
# The run
# =============================================================================================


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
            raise BatchInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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
    existing = [p for p in _shared_paths(out_dir, spec.plots) if shared_model and p.exists()]
    n = 0
    for job in jobs:
        found = [
            p for p in _expected_outputs(job, spec, labelling=shared_model) or () if p.exists()
        ]
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
        Skip inputs whose outputs all exist; redo the others (replacing partial sets).
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
    if scheduler is not None:
        _import_distributed()
    in_dir, out_abs = in_dir.resolve(), out_dir.resolve()
    rels = find_inputs(in_dir, recursive=recursive, pattern=pattern, exclude=[out_abs])
    if not rels:
        looked = f"files matching {pattern!r}" if pattern else "image files"
        raise SegmentError(
            f"{in_dir}: no {looked} found"
            + ("" if recursive else " (subfolders are not searched without --recursive)")
            + "; check the folder or --glob."
        )
    jobs = _plan(in_dir, out_abs, rels)
    spec = JobSpec(
        options,
        plots=plots,
        overwrite=overwrite,
        all_frames=all_frames,
        max_pixels=max_pixels,
        soft=soft,
        masks=masks,
        sample_per_image=sample_per_image,
    )
    if not resume and not overwrite:
        _refuse_existing(out_dir, jobs, spec, shared_model)
    triage = _triage(jobs, spec, out_abs, resume, shared_model)
    engine = _engine(workers, scheduler, len(triage.todo))
    with _stop_on_signals(), engine:  # connect to a cluster before writing anything
        pipeline.make_dir(out_dir)
        with _exclusive(out_abs):
            return _run(in_dir, out_abs, jobs, spec, triage, shared_model, engine, events, t0)


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
    shared_paths = _shared_paths(out_dir, spec.plots)
    reserved = set(shared_paths) | {out_dir / n for n in REPORT_NAMES}
    reuse = shared_model and resume and not spec.overwrite and shared_paths[-1].exists()
    triage = _Triage([], {}, {}, reuse)
    for job in jobs:
        paths = triage.expected[job.index] = _expected_outputs(job, spec, labelling=shared_model)
        clash = [p for p in paths or () if p in inputs or (shared_model and p in reserved)]
        if clash:
            triage.rows[job.index] = _failure(
                f"its output {clash[0]} would replace an input or a file of the batch; rename "
                "the file or choose another output folder."
            )
            continue
        complete = paths is not None and all(p.exists() for p in paths)
        # With a new shared model, earlier per-image outputs are stale.
        if resume and complete and (reuse or not shared_model):
            triage.rows[job.index] = _finished_row(paths)
            continue
        partial = paths is not None and any(p.exists() for p in paths)
        triage.todo.append(replace(job, overwrite=resume and partial))
    return triage


def _run(in_dir, out_dir, jobs, spec, triage, shared_model, engine, events, t0):
    folders = sorted({out_dir} | {job.out_dir for job in jobs})
    meta = {
        "in_dir": str(in_dir),
        "out_dir": str(out_dir),
        "options": spec.options.to_dict(),
        "shared_model": bool(shared_model),
        "sample_per_image": spec.sample_per_image,
        "engine": engine.description,
        "started": _now(),
    }
    report = _Report(out_dir, jobs, meta)
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
            if _written_since(paths, started):
                # Done by a worker, but the run stopped before it could say so.
                report.set(job, _finished_row(paths, status="ok"))
            else:
                row.update(status="interrupted", error=NOT_DONE.format(why=stopped))
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        meta["stopped"] = stopped
        report.write("finished" if stopped is None else "stopped")
    if shared_model and shared_path is None and _shared_paths(out_dir, spec.plots)[-1].exists():
        shared_path = _shared_paths(out_dir, spec.plots)[-1]
    return BatchResult(
        report.rows,
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


def _shared_stage(engine, spec, todo, jobs, report, in_dir, out_dir, reuse, events):
    """Fit (or, resuming, load) the shared model; return the labelling spec, the model's
    path and the jobs still to do (those whose colour pass failed are reported)."""
    path = _shared_paths(out_dir, spec.plots)[-1]
    if reuse:
        model, fit = _load_shared(path, spec)
        return replace(spec, model=model, shared_fit=fit), path, todo
    # The model is of the whole folder, so every readable input counts, done or not.
    candidates = [job for job in jobs if report.rows[job.index]["status"] != "failed"]
    events.phase("reading colours", len(candidates))
    hist, streamed, plot_parts, good = _Histogram(), [], [], set()
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
    client = engine.client if isinstance(engine, _Dask) else None
    fitted = fit_shared(source, spec.options, on_iteration=events.iteration, scheduler=client)
    model = fitted[0]
    seg, doc = _shared_document(fitted, source, plot_parts, spec, in_dir, len(good))
    path = _write_shared(seg, doc, out_dir, spec.plots)
    fit = {"iterations": int(model.n_iter_), "converged": bool(model.converged_)}
    return (
        replace(spec, model=model, shared_fit=fit),
        path,
        [job for job in todo if job.index in good],
    )
