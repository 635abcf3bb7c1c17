"""The shared model of ``--shared-model``: one mixture fitted to the pixels of all images.

The pixels are never all in memory: 8-bit colour without position features is reduced
exactly to one colour histogram (at most 2^24 weighted rows, whatever the number of
pixels); anything else is streamed from the files on every EM pass (optionally a fixed
random sample per image). On Dask, every EM iteration is a map-reduce over those rows on
the cluster.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gmm

from ..color import features_to_rgb, rgb_to_features, rgb_to_uint8
from ..colorkeys import keys_to_rgb
from ..errors import SegmentError
from ..fit import collect_notes, fit_rows, gmm_options, sort_components
from ..metrics import psnr
from ..outputs.files import write_json
from ..outputs.model_file import load_model_file, model_document
from ..outputs.paths import output_paths
from ..outputs.segmentation import save_density_plot, save_loglik_plot
from .jobs import SHARED_STEM, Job, JobSpec, colour_job, online_job, stream_rows

#: Online EM over a folder: the step size exponent, the pixels per step and those of the
#: shuffle buffer (2^20 pixels: 20 MiB of features). Chosen on the README's four images,
#: where they reach batch EM's log-likelihood to 1 % (see benchmarks/bench_online.py).
ONLINE_ALPHA, ONLINE_ROWS, SHUFFLE_ROWS = 0.6, 2048, 1 << 20


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
        hist = ColourHistogram()
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


class ColourHistogram:
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
        rgb = keys_to_rgb(keys, np.float32) / 255.0
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
    model, notes, selection = fit_rows(
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


def fit_shared_online(
    jobs,
    spec,
    *,
    on_result=None,
    on_iteration=None,
    alpha=ONLINE_ALPHA,
    batch_rows=ONLINE_ROWS,
    buffer_rows=SHUFFLE_ROWS,
):
    """Fit the shared model by one pass of online (stepwise) EM: every image is read once.

    Stepwise EM assumes its chunks are alike, and a folder's images are not: the images
    come in a random order fixed by the seed, and their pixels go through a shuffle buffer
    of ``buffer_rows`` rows (as streaming data loaders do), from which every step takes
    ``batch_rows`` rows at random. So each step sees pixels of many images, and memory is
    the buffer plus one image.

    Parameters
    ----------
    jobs : list of Job
    spec : JobSpec
    on_result : callable, optional
        ``on_result(job, result)`` after each image (its ``online_job`` result; failed
        images have ``status`` "failed" and are left out of the fit).

    Returns
    -------
    fitted : (model, notes, None)
        As :func:`fit_shared` returns them.
    source : SharedPixels
        The histogram of the 8-bit images and the streamed frames, for the figures.
    plot_parts : list
    good : set of int
        Indices of the jobs that were read.
    """
    options = spec.options
    if options.selects:
        raise SegmentError(
            "--online fits one mixture: give one k (-k 8) and one --covariance type, not a "
            "range or auto."
        )
    model = gmm.GaussianMixture(
        options.k,
        covariance_type=options.covariance_type,
        random_state=options.seed,
        callback=on_iteration,
        online_alpha=alpha,
        **gmm_options(options),
    )
    hist, streamed, plot_parts, good = ColourHistogram(), [], [], set()
    rng = np.random.default_rng([options.seed, 15])
    buffer = _ShuffleBuffer(buffer_rows, batch_rows, rng)

    def step(x):
        try:
            model.partial_fit(x)
        except ValueError as err:
            raise SegmentError(f"shared model: cannot fit the mixture: {err}") from None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in rng.permutation(len(jobs)):
            job = jobs[i]
            result = online_job(spec, job)
            if on_result is not None:
                on_result(job, result)
            if result["status"] != "ok":
                continue
            good.add(job.index)
            hist.add(result)
            streamed += [(job.src, f, job.rel, n) for f, n in result["streamed"]]
            plot_parts += result["plot"]
            for X in result.pop("rows"):
                for chunk in buffer.push(X):
                    step(chunk)
        for chunk in buffer.drain():
            step(chunk)
    notes = collect_notes(caught)
    if not good:
        return None, None, plot_parts, good
    notes.append(
        f"online EM: one pass over {len(good)} images in a random order through a shuffle "
        f"buffer of {buffer_rows:,} pixels, {model.n_iter_} steps of {batch_rows:,} pixels "
        f"(step size (t + 2)^-{alpha:g})."
    )
    streamed.sort(key=lambda s: (s[2], s[1]))
    source = SharedPixels(spec, *hist.rows(options.space), streamed)
    model.callback = None
    return (sort_components(model, options.space), notes, None), source, plot_parts, good


class _ShuffleBuffer:
    """Rows in, random chunks out: a buffer of ``size`` rows; once full, every chunk of
    ``batch`` rows is drawn at random from it and its places go to the next rows in."""

    def __init__(self, size, batch, rng):
        self.size, self.batch, self.rng = max(size, batch), batch, rng
        self.rows = None
        self.n = 0

    def push(self, X):
        if self.rows is None:
            self.rows = np.empty((self.size, X.shape[1]), dtype=X.dtype)
        start = 0
        while start < len(X):
            take = min(self.size - self.n, len(X) - start)
            self.rows[self.n : self.n + take] = X[start : start + take]
            self.n += take
            start += take
            if self.n == self.size:
                idx = self.rng.choice(self.size, size=self.batch, replace=False)
                yield self.rows[idx].copy()
                # The drawn places are refilled: move the last rows into them.
                keep = np.setdiff1d(np.arange(self.size - self.batch, self.size), idx)
                holes = idx[idx < self.size - self.batch]
                self.rows[holes] = self.rows[keep]
                self.n -= self.batch

    def drain(self):
        if self.rows is None or self.n == 0:
            return
        rest = self.rows[self.rng.permutation(self.n)]
        self.rows = None
        # Equal chunks rather than a last small one.
        n_chunks = max(1, round(len(rest) / self.batch))
        yield from np.array_split(rest, n_chunks)


def _persisted(arrays, scheduler):
    """The arrays computed once and kept in the workers' memory for all the EM passes."""
    if hasattr(scheduler, "persist"):  # a distributed.Client
        return scheduler.persist(list(arrays))
    import dask

    return dask.persist(*arrays, scheduler=scheduler)


@dataclass
class SharedModel:
    """The mixture fitted to the pixels of all images of a batch, with what its model file
    and plots show: each component's colour, and the rows of the density plot (the colour
    histogram and a few weighted rows of each streamed frame)."""

    model: gmm.GaussianMixture
    notes: list
    selection: object  # gmm.Selection when the mixture was chosen by BIC
    space: str
    palette: np.ndarray  # (K, 3) uint8
    plot_X: np.ndarray
    plot_weight: np.ndarray

    @classmethod
    def of(cls, fitted, source, plot_parts, space):
        """From :func:`fit_shared`'s result, its :class:`SharedPixels` and the plot rows of
        the colour pass."""
        model, notes, selection = fitted
        xs, ws = [], []
        if source.hist_X is not None:
            xs.append(source.hist_X)
            ws.append(source.hist_w)
        for X, weight in plot_parts:
            xs.append(X)
            ws.append(np.full(len(X), weight))
        palette = rgb_to_uint8(features_to_rgb(model.means_, space))
        X = np.concatenate(xs).astype(np.float32, copy=False)
        return cls(model, notes, selection, space, palette, X, np.concatenate(ws))

    def save_plots(self, paths, overwrite):
        """The log-likelihood and density plots, at ``paths["loglik"]`` / ``["density"]``."""
        save_loglik_plot(self.model, paths["loglik"], overwrite)
        X = self.plot_X
        save_density_plot(
            self.model,
            paths["density"],
            X=X,
            rgb=features_to_rgb(X[:, :3], self.space).astype(np.float32),
            weight=self.plot_weight,
            space=self.space,
            palette=self.palette,
            overwrite=overwrite,
        )


def _shared_figures(shared, source):
    """The figures of NAME.model.json for the shared model, over all its pixels."""
    model = shared.model
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
        "notes": list(shared.notes),
    }
    if not source.streamed:  # the histogram is every pixel: PSNR of the quantised colours
        approx = shared.palette[model.predict(source.hist_X)] / 255.0
        rgb = features_to_rgb(source.hist_X, shared.space)
        figures["psnr_db"] = psnr(rgb, approx, source.hist_w)
    return figures


def shared_document(fitted, source, plot_parts, spec, in_dir, n_images):
    """The :class:`SharedModel` and its document, in the format of NAME.model.json so that
    ``segment apply -m shared.model.json`` reads it."""
    options = spec.options
    shared = SharedModel.of(fitted, source, plot_parts, options.space)
    figures = _shared_figures(shared, source)
    folder = {
        "folder": str(in_dir),
        "images": int(n_images),
        "streamed_frames": len(source.streamed),
        "pixels": figures["pixels"],
        "sample_per_image": spec.sample_per_image,
    }
    doc = model_document(
        shared.model,
        input=folder,
        options=options,
        space=options.space,
        xy=float(options.xy),
        palette=shared.palette,
        figures=figures,
        selection=shared.selection,
    )
    return shared, doc


def write_shared_model(shared, doc, out_dir, plots):
    paths = output_paths(out_dir, SHARED_STEM, plots=plots)
    if plots:
        shared.save_plots(paths, True)
    write_json(paths["model"], doc, overwrite=True)  # last: its presence marks the set complete
    return paths["model"]


def load_shared_model(path, spec):
    """The shared model of an earlier run of the same batch (``--resume``)."""
    model, options, doc = load_model_file(path)
    sample = (doc.get("input") or {}).get("sample_per_image")
    if options != spec.options or sample != spec.sample_per_image:
        raise SegmentError(
            f"{path} was fitted with other options; pass --overwrite to fit it again, or use "
            "another output folder."
        )
    fit = {"iterations": int(model.n_iter_), "converged": bool(model.converged_)}
    return model, fit
