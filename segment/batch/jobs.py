"""One job per input: where its outputs go, which outputs it writes, and the work it does in
a worker (segment or label one input; or its part of the shared model's colours). A
failing job returns a ``failed`` report row, never an exception."""

import contextlib
import functools
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..colorkeys import color_keys
from ..errors import SegmentError
from ..features import NOTHING_TO_SEGMENT, distinct_colors, pixel_data
from ..imageio.files import MAX_MODEL_BYTES, load_json
from ..imageio.read import count_frames, load_image
from ..options import FitOptions
from ..outputs.paths import output_paths
from ..outputs.stems import stems_for
from ..pipeline import apply_file, frames, segment_file

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


#: Rows per image kept for the density plot of the shared model (streamed images only).
PLOT_ROWS = 2000


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
    online: bool = False  # fit the shared model by one pass of online EM
    animate: bool = False  # NAME.em.gif of each image's EM (not with a shared model)
    model: object = None  # the shared GaussianMixture, for the labelling stage
    shared_fit: dict | None = None  # its iterations and convergence, for the report rows


def plan_jobs(in_dir, out_dir, rels):
    """Jobs with their output folder (the input's folder mirrored) and stem."""
    by_dir = {}
    for rel in rels:
        by_dir.setdefault(rel.parent, []).append(rel)
    stems = {}
    for folder, members in by_dir.items():
        # The top folder also holds the shared model's outputs (whether or not this run
        # makes one: an input's names must not depend on the options).
        reserved = (SHARED_STEM,) if folder == Path(".") else ()
        for rel, stem in zip(members, stems_for(members, reserved), strict=True):
            stems[rel] = stem
    return [
        Job(i, rel.as_posix(), in_dir / rel, out_dir / rel.parent, stems[rel])
        for i, rel in enumerate(rels)
    ]


def expected_outputs(job, spec, *, labelling):
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
        animate = spec.animate and not labelling and not spec.options.selects
        kinds = output_paths(job.out_dir, stem, plots=spec.plots, soft=spec.soft, animate=animate)
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
    with contextlib.suppress(SegmentError, ValueError, KeyError, TypeError, AttributeError):
        doc = load_json(model_path, limit=MAX_MODEL_BYTES, what="model file")
        fitted = doc["gmm"]["n_components"]
        if isinstance(fitted, int) and 1 <= fitted <= k:  # never more than asked
            k = fitted
    kinds = output_paths(out_dir, stem, plots=False, masks=k)
    return [p for kind, p in kinds.items() if kind.startswith("mask")]


def shared_output_paths(out_dir, plots):
    paths = output_paths(out_dir, SHARED_STEM, plots=plots)
    return [paths[k] for k in ("loglik", "density", "model") if k in paths]


def failure_row(message):
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
            result = failure_row(_one_line(job, err))
        except MemoryError:
            result = failure_row("out of memory; try a smaller --memory-mib or fewer --workers.")
        except Exception as err:  # a bug or an odd library error: still one row, one line
            result = failure_row(f"internal error ({type(err).__name__}: {_one_line(job, err)}).")
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
            summaries = segment_file(
                job.src, job.out_dir, spec.options, animate=spec.animate, **common
            )
        else:
            summaries = apply_file(spec.model, spec.options, job.src, job.out_dir, **common)
    first = {**(spec.shared_fit or {}), **summaries[0]}
    notes = [n for s in summaries for n in s.get("notes", [])]
    return {
        "status": "ok",
        "error": "",
        **{k: first.get(k) for k in REPORT_FIELDS if k not in ("path", "status", "error")},
        "frames": len(summaries),
        "notes": list(dict.fromkeys(notes)),
    }


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
        raise SegmentError(f"{image.path}: {NOTHING_TO_SEGMENT}.")
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
    return _colour_parts(spec, job, keep_rows=False)


@_guarded
def online_job(spec, job):
    """:func:`colour_job`'s result plus, under ``"rows"``, every frame's pixel feature rows
    (sampled as asked) in a random order fixed by the seed and the file: the file is read
    once, for online EM."""
    return _colour_parts(spec, job, keep_rows=True)


def _colour_parts(spec, job, *, keep_rows):
    hists, streamed, plot, rows = [], [], [], []
    seen = 0
    for image in frames(job.src, spec.all_frames, spec.max_pixels):
        seen += 1
        if spec.all_frames and image.alpha is not None and not image.alpha.any():
            continue  # a frame with nothing to segment adds nothing (the model is shared)
        if _dedupable(image, spec.options):
            hists.append(_frame_histogram(image, spec, job.rel))
            X = _frame_rows(image, spec, job.rel) if keep_rows else None
        else:
            X = _frame_rows(image, spec, job.rel)
            streamed.append((image.frame, len(X)))
            pick = _plot_pick(len(X))
            plot.append((X[pick], len(X) / len(pick)))
        if keep_rows:
            rows.append(X[_rng(spec, job.rel, image.frame).permutation(len(X))])
        del image
    if seen and not hists and not streamed:
        raise SegmentError(f"{job.src}: {NOTHING_TO_SEGMENT} (in all {seen} frames).")
    keys = counts = None
    if len(hists) == 1:
        keys, counts = hists[0]
    elif hists:  # frames of one file: merge their histograms
        keys, inverse = np.unique(np.concatenate([k for k, _ in hists]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([c for _, c in hists]))
        counts = counts.astype(np.int64)
    result = {"status": "ok", "keys": keys, "counts": counts, "streamed": streamed, "plot": plot}
    if keep_rows:
        result["rows"] = rows
    return result
