"""The work of ``segment image`` and ``segment apply``, one function each (quantisation
lives in :mod:`segment.quantize`, folders in :mod:`segment.batch`). The CLI only parses
options and calls these.

``segment_file`` is: load → pixel features → fit (EM, or BIC selection) → labels (smoothed,
small regions merged) → outputs. The outputs of an image are written as one atomic group:
all of them or none; ``NAME.model.json`` lands last, so its presence marks a complete set
(batch ``--resume`` relies on that).
"""

import errno
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.color import rgb2lab

import gmm
from gmm._checks import COVARIANCE_TYPES

from . import __version__, spatial
from .errors import SegmentError
from .features import FEATURE_NAMES, PixelData, features_to_rgb, pixel_data, rgb_to_uint8
from .io import atomic_group, iter_frames, load_image
from .memory import release_free_memory
from .options import FitOptions
from .outputs import (
    label_dtype,
    psnr,
    transparent_label,
    write_json,
    write_labels_png,
    write_palette_png,
)

MODEL_FORMAT = "segment.model/1"
OUTPUT_KINDS = ("segmented", "quantized", "labels", "loglik", "density", "model")
PLOT_KINDS = ("loglik", "density")
SOFT_KINDS = ("soft", "uncertainty", "outliers", "overlay")


# -- fitting ----------------------------------------------------------------------------


@dataclass
class Segmentation:
    """A fitted model and what it says of one image."""

    model: gmm.GaussianMixture
    data: PixelData
    row_labels: np.ndarray  # (M,) label of each feature row
    quantized_palette: np.ndarray  # (K, 3) uint8: each component's mean colour
    options: FitOptions
    notes: list = field(default_factory=list)
    _labels: np.ndarray | None = None
    _pixel_totals: dict = field(default_factory=dict)  # log-likelihood met while labelling
    selection: object = None  # gmm.Selection when k was chosen by BIC

    @property
    def k(self):
        return self.model.n_components

    @property
    def smooth(self):
        return self.options.smooth_sigma(self.data.shape)

    @property
    def min_region(self):
        return self.options.min_region_pixels(self.data.shape)

    def label_image(self):
        """(H, W) labels after smoothing and small-region merging; invisible pixels get
        :func:`transparent_label`. Computed once."""
        if self._labels is None:
            fill = transparent_label(self.k)
            dtype = label_dtype(self.k)
            budget = self.options.chunk_mib
            release_free_memory()  # the fit's freed temporaries, before full-size arrays
            if self.smooth > 0 and self.k > 1:
                labels = spatial.smoothed_labels(
                    self.model,
                    self.data,
                    self.smooth,
                    budget_mib=budget,
                    out_dtype=dtype,
                    fill=fill,
                    totals=self._pixel_totals,
                )
            elif self.data.deduplicated:
                labels = self.data.scatter(self.row_labels.astype(dtype), fill)
            else:
                labels = spatial.pixel_labels(
                    self.model, self.data, budget_mib=budget, out_dtype=dtype, fill=fill
                )
            if self.options.merge > 0 and self.k > 1:
                colours = rgb2lab(self.quantized_palette[None].astype(np.float64) / 255.0)[0]
                spatial.merge_similar_neighbours(
                    labels, colours, self.options.merge, n_labels=self.k, visible=self.data.visible
                )
            self.data.release_lookup()  # 64 MB; rebuilt if soft maps need it
            if self.min_region > 1 and self.k > 1:
                release_free_memory()
                spatial.merge_small_regions(
                    labels, self.min_region, n_labels=self.k, visible=self.data.visible
                )
            self._labels = labels
        return self._labels

    def psnr(self):
        """PSNR (dB) of the quantised image that is written (each pixel its label's colour)."""
        if self.data.deduplicated and self.smooth == 0 and self.min_region <= 1:
            approx = self.quantized_palette[self.row_labels].astype(np.float64) / 255.0
            return psnr(self.data.rgb, approx, self.data.weight)
        return spatial.labels_psnr(self.data, self.label_image(), self.quantized_palette)


def sort_components(model, space):
    """Order the components from dark to light, so that labels read naturally and a series
    of images gets comparable label numbers."""
    rgb = features_to_rgb(model.means_[:, :3], space)
    order = np.argsort(rgb @ np.array([0.2126, 0.7152, 0.0722]), kind="stable")
    model.weights_ = model.weights_[order]
    model.means_ = model.means_[order]
    if model.covariance_type not in ("tied", "tied_diag"):
        model.covariances_ = model.covariances_[order]
        model.precisions_cholesky_ = model.precisions_cholesky_[order]
    return model


def collect_notes(caught):
    notes = []
    for w in caught:
        msg = str(w.message).split(". ")[0].rstrip(".") + "."
        if msg not in notes:
            notes.append(msg)
    return notes


def fit_image(image, options, on_iteration=None):
    """Fit a mixture to one image's pixels and label them.

    Parameters
    ----------
    image : segment.io.Image
    options : FitOptions
    on_iteration : callable, optional
        ``on_iteration(iteration, objective)`` after each EM iteration.

    Returns
    -------
    Segmentation
    """
    options.validate()
    data = pixel_data(image, **options.data_kwargs())
    return fit_data(data, options, on_iteration, where=image.path)


def fit_data(data, options, on_iteration=None, *, where="image"):
    """Fit a mixture to prepared :class:`PixelData` (see :func:`fit_image`); with a range
    of k or ``covariance_type="auto"`` the mixture is chosen by BIC."""
    model, notes, selection = fit_rows(
        data.X,
        data.weight,
        options,
        on_iteration=on_iteration,
        distinct=_distinct_rows(data, options.k_range[1] if options.k_range else options.k),
        where=where,
        polish=(lambda m: _polish(m, data, options.polish))
        if data.sampled and options.polish
        else None,
    )
    if data.sampled:
        notes.append(
            f"fitted on a uniform sample of {len(data.X):,} of {data.n_pixels:,} pixels"
            + (f", then {options.polish} EM passes over all of them" if options.polish else "")
            + "; the figures are on all pixels."
        )
    seg = _segmentation(model, data, notes, options)
    seg.selection = selection
    return seg


def gmm_options(options, dtype=None):
    """Estimator arguments of ``options`` common to every fit."""
    out = dict(
        tol=options.tol,
        reg_covar=options.reg_covar,
        max_iter=options.max_iter,
        n_init=options.n_init,
        init=options.init,
        prior="default" if options.prior else None,
        chunk_mib=options.chunk_mib,
    )
    if dtype is not None:
        out["dtype"] = dtype
    return out


def fit_rows(
    X,
    weight,
    options,
    *,
    on_iteration=None,
    distinct=None,
    dtype=None,
    init=None,
    where="image",
    polish=None,
):
    """Fit the mixture of ``options`` to feature rows (an array with its weights, or any
    chunk source of gmm with ``weight`` None), choosing k / the covariance type by BIC
    when asked.

    Parameters
    ----------
    distinct : int, optional
        Number of distinct rows when known to be small: k is capped by it (with a note).
    init : dict, optional
        ``weights_init`` / ``means_init`` / ``precisions_init`` (one k only).
    polish : callable, optional
        ``polish(model)`` after the fit (e.g. EM passes over all pixels).

    Returns
    -------
    model : gmm.GaussianMixture
        Components sorted from dark to light.
    notes : list of str
    selection : gmm.Selection or None
    """
    notes = []
    ks = range(options.k_range[0], options.k_range[1] + 1) if options.k_range else [options.k]
    if distinct is not None and distinct < ks[-1]:
        notes.append(f"only {distinct} distinct colours: k is at most {distinct}.")
        ks = [k for k in ks if k <= distinct] or [distinct]
    estimator = gmm_options(options, dtype)
    selection = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if options.selects:
                auto = options.covariance_type == "auto"
                progress = None if on_iteration is None else (lambda k, t, i, v: on_iteration(i, v))
                selection = gmm.select_model(
                    X,
                    weight,
                    n_components=ks,
                    covariance_types=COVARIANCE_TYPES if auto else (options.covariance_type,),
                    criterion="bic",
                    random_state=options.seed,
                    callback=progress,
                    **estimator,
                )
                model = selection.best
                notes.append(
                    f"BIC chose k={selection.chosen[0]}, {selection.chosen[1]} covariances "
                    f"(k from {ks[0]} to {ks[-1]})."
                )
            else:
                model = gmm.GaussianMixture(
                    ks[0],
                    covariance_type=options.covariance_type,
                    random_state=options.seed,
                    callback=on_iteration,
                    **estimator,
                    **(init or {}),
                )
                model.fit(X, sample_weight=weight)
            if polish is not None:
                model.callback = on_iteration
                polish(model)
        except ValueError as err:
            raise SegmentError(f"{where}: cannot fit the mixture: {err}") from None
    notes += collect_notes(caught)
    return sort_components(model, options.space), notes, selection


def _distinct_rows(data, k):
    """Distinct feature rows, counted only when there may be fewer than ``k`` (colour-only
    features; with position every pixel is a distinct point)."""
    if data.deduplicated:
        return len(data.X)
    if data.xy:
        return k
    rows = np.ascontiguousarray(data.X).view(
        np.dtype((np.void, data.X.dtype.itemsize * data.X.shape[1]))
    )
    return min(k, len(np.unique(rows)))


def _polish(model, data, passes):
    """A few EM iterations over all pixels from the fit on a sample; the history goes on
    from the sample's (the objective is the same mean log-likelihood per pixel)."""
    history = list(model.history_)
    resets = list(model.reset_iterations_)
    converged = model.converged_
    max_iter, tol = model.max_iter, model.tol
    model.warm_start, model.max_iter, model.tol = True, passes, 0.0
    with warnings.catch_warnings():
        # A fixed number of passes is not a convergence failure.
        warnings.simplefilter("ignore", gmm.ConvergenceWarning)
        model.fit(data.pixel_source())
    model.warm_start, model.max_iter, model.tol = False, max_iter, tol
    model.converged_ = converged
    offset = len(history)
    model.history_ = np.array(history + list(model.history_))
    model.reset_iterations_ = resets + [i + offset for i in model.reset_iterations_]
    model.n_iter_ = len(model.history_)


def _segmentation(model, data, notes=(), options=None):
    """A :class:`Segmentation` of ``data`` by a fitted ``model``; without ``options`` the
    labels are pixel-wise (no smoothing, no region merging)."""
    if options is None:
        options = FitOptions(smooth=0.0, min_region=0)
    row_labels = model.predict(data.X)
    palette = rgb_to_uint8(features_to_rgb(model.means_, data.space))
    return Segmentation(model, data, row_labels, palette, options, list(notes))


# -- outputs ----------------------------------------------------------------------------


def output_paths(out_dir, stem, *, plots=True, soft=False, masks=0, selection=False):
    """Paths of the outputs of one input, keyed by kind; the model file comes last.

    ``masks`` is the number of components whose masks are written (NAME.mask00.png ...).
    """
    kinds = [k for k in OUTPUT_KINDS if plots or k not in PLOT_KINDS]
    kinds.remove("model")
    if plots and selection:
        kinds.append("bic")
    if soft:
        kinds += SOFT_KINDS
    kinds += [f"mask{k:02d}" for k in range(masks)]
    kinds.append("model")
    ext = {"model": "json"}
    return {k: Path(out_dir) / f"{stem}.{k}.{ext.get(k, 'png')}" for k in kinds}


def check_outputs(paths, inputs, *, overwrite):
    """Refuse outputs that would replace an input, or (without ``overwrite``) any file."""
    resolved_inputs = {Path(p).resolve() for p in inputs}
    for p in paths:
        name = printable(p)
        try:
            if Path(p).resolve() in resolved_inputs:
                raise SegmentError(f"{name} is one of the inputs; choose another output folder.")
            if Path(p).is_dir():
                raise SegmentError(f"cannot write {name}: it is a directory.")
            if Path(p).exists() and not overwrite:
                raise SegmentError(f"{name} already exists; pass --overwrite to replace it.")
        except OSError as err:
            if getattr(err, "errno", None) == errno.ENAMETOOLONG:
                raise SegmentError(
                    f"cannot write {name}: the file name is too long; rename the input or "
                    "choose a shorter output folder."
                ) from None
            raise SegmentError(f"cannot write {name}: {err.strerror or err}.") from None


def printable(path):
    """A path as one printable line (messages are one line whatever a file name holds)."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(path)) or "''"


def segmented_palette(k):
    from .palette import default_component_colors

    return rgb_to_uint8(default_component_colors(k))


def write_segmentation(seg, paths, *, image, options, overwrite, figures, write_model=True):
    """Write the images, plots and (last) the model file of a segmentation."""
    labels = seg.label_image()
    visible = seg.data.visible
    write_palette_png(
        paths["segmented"], labels, segmented_palette(seg.k), visible, overwrite=overwrite
    )
    write_palette_png(
        paths["quantized"], labels, seg.quantized_palette, visible, overwrite=overwrite
    )
    write_labels_png(paths["labels"], labels, seg.k, visible, overwrite=overwrite)
    del labels
    _write_soft(seg, paths, overwrite)
    if "loglik" in paths and len(getattr(seg.model, "history_", ())):
        plot_loglik(seg, paths["loglik"], overwrite)
    if "density" in paths:
        plot_density(seg, paths["density"], overwrite)
    if "bic" in paths and seg.selection is not None:
        _plot_bic(seg.selection, paths["bic"], overwrite)
    if write_model:
        write_json(
            paths["model"], model_document(seg, image, options, figures), overwrite=overwrite
        )


def _write_soft(seg, paths, overwrite):
    from . import soft
    from .outputs import write_image_png, write_mask_png

    visible = seg.data.visible
    if "soft" in paths:
        maps = soft.soft_maps(seg)
        for kind in ("soft", "uncertainty", "outliers"):
            write_image_png(paths[kind], maps[kind], visible, overwrite=overwrite)
        del maps
        write_image_png(
            paths["overlay"],
            soft.overlay(seg.data, seg.label_image()),
            visible,
            overwrite=overwrite,
        )
    labels = seg.label_image()
    for kind, path in paths.items():
        if kind.startswith("mask"):
            write_mask_png(path, labels == int(kind[4:]), overwrite=overwrite)


def plot_loglik(seg, path, overwrite):
    from .plots import plot_loglik, save_figure

    m = seg.model
    fig = plot_loglik(
        m.history_,
        reset_iterations=m.reset_iterations_,
        converged=m.converged_,
        ylabel="mean log-likelihood per pixel"
        + (" (log-posterior)" if m.prior_ is not None else ""),
    )
    save_figure(fig, path, overwrite=overwrite)


def _plot_bic(selection, path, overwrite):
    from .plots import plot_criterion, save_figure

    ks, values = selection.values()
    fig = plot_criterion(ks, values, chosen=selection.chosen, criterion="BIC")
    save_figure(fig, path, overwrite=overwrite)


def plot_density(seg, path, overwrite):
    from gmm.covariance import full_covariances

    from .plots import plot_density, save_figure

    m, d = seg.model, seg.data
    K, D = m.means_.shape
    cov = full_covariances(m.covariance_type, m.covariances_, K, D)[:, :3, :3]
    fig = plot_density(
        d.X[:, :3],
        m.weights_,
        m.means_[:, :3],
        cov,
        sample_colors=d.rgb,
        component_colors=seg.quantized_palette / 255.0,
        feature_names=FEATURE_NAMES[d.space],
        sample_weight=d.weight,
    )
    save_figure(fig, path, overwrite=overwrite)


@dataclass(frozen=True)
class ImageInfo:
    """What the outputs need to know of an input once its pixels are gone."""

    path: Path
    mode: str
    format: str
    frame: int
    n_frames: int

    @classmethod
    def of(cls, image):
        return cls(
            Path(image.path), image.mode, image.format, int(image.frame), int(image.n_frames)
        )


def model_document(seg, image, options, figures):
    """The content of NAME.model.json: parameters, options, history, figures (no timings,
    so that the same command gives the same bytes)."""
    m = seg.model
    return {
        "format": MODEL_FORMAT,
        "segment_version": __version__,
        "input": {
            "path": str(image.path),
            "width": int(seg.data.shape[1]),
            "height": int(seg.data.shape[0]),
            "mode": image.mode,
            "format": image.format,
            "frame": int(image.frame),
        },
        "options": options.to_dict(),
        "features": {
            "space": seg.data.space,
            "xy": seg.data.xy,
            "names": [*FEATURE_NAMES[seg.data.space], *(("x", "y") if seg.data.xy else ())],
        },
        "labels": {
            "dtype": np.dtype(label_dtype(seg.k)).name,
            "transparent_label": transparent_label(seg.k),
            "order": "components sorted from dark to light",
        },
        "palette": {
            "segmented": segmented_palette(seg.k).tolist(),
            "quantized": seg.quantized_palette.tolist(),
        },
        "summary": {k: v for k, v in figures.items() if k not in ("seconds", "outputs", "input")},
        "history": [float(v) for v in m.history_],
        "selection": None if seg.selection is None else seg.selection.to_dict(),
        "gmm": m.to_dict(),
    }


def _loglik_and_bic(model, data, totals=None):
    """Mean log-likelihood per pixel and BIC of all the (visible) pixels: from the pass that
    made the labels when it measured them (``totals``), else from one pass."""
    if data.sampled:
        total = float(data.n_pixels)
        if totals and totals.get("pixels") == data.n_pixels:
            loglik = totals["loglik"] / total
        else:
            loglik = float(model.score(data.pixel_source()))
    else:
        loglik = float(model.score(data.X, data.weight))
        total = float(data.weight.sum()) if data.weight is not None else float(len(data.X))
    return loglik, -2.0 * loglik * total + model.n_parameters() * float(np.log(total))


def figures_of(seg):
    """Quality figures of a segmentation (at most one extra pass over the feature rows)."""
    m, d = seg.model, seg.data
    psnr_db = seg.psnr()  # makes the labels, and measures the log-likelihood on the way
    loglik, bic = _loglik_and_bic(m, d, seg._pixel_totals)
    return {
        "k": int(seg.k),
        "covariance_type": m.covariance_type,
        "iterations": int(m.n_iter_),
        "converged": bool(m.converged_),
        "log_likelihood": loglik,
        "bic": bic,
        "psnr_db": psnr_db,
        "pixels": d.n_pixels,
        "distinct_colours": len(d.X) if d.deduplicated else None,
        "resets": int(m.n_resets_),
        "notes": list(seg.notes),
    }


# -- commands -----------------------------------------------------------------------------


def stems_for(inputs):
    """Output stem of each input: its name without extension, or with it where two inputs
    would otherwise share a stem."""
    inputs = [Path(p) for p in inputs]
    counts = {}
    for p in inputs:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    stems = [p.stem if counts[p.stem] == 1 else p.name for p in inputs]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise SegmentError(
            f"two inputs are both named {dup!r}; process them into different output folders."
        )
    return stems


def frames(path, all_frames, max_pixels):
    if all_frames:
        yield from iter_frames(path, max_pixels=max_pixels)
    else:
        yield load_image(path, max_pixels=max_pixels)


def segment_file(
    path,
    out_dir,
    options,
    *,
    stem=None,
    overwrite=False,
    plots=True,
    all_frames=False,
    max_pixels=None,
    on_iteration=None,
    inputs=(),
    soft=False,
    masks=False,
):
    """Segment one file (each of its frames with ``all_frames``) and write its outputs.

    ``soft`` adds the soft, uncertainty, outliers and overlay images; ``masks`` one mask
    image per component.

    Returns
    -------
    list of dict
        One summary per frame: the figures, the outputs written and the seconds taken.
    """
    options.validate()

    def fit(data, path):
        seg = fit_data(data, options, on_iteration, where=path)
        return seg, figures_of(seg)

    return _each_frame(
        path,
        out_dir,
        options,
        fit,
        stem=stem,
        overwrite=overwrite,
        plots=plots,
        all_frames=all_frames,
        max_pixels=max_pixels,
        inputs=inputs,
        soft=soft,
        masks=masks,
    )


def _each_frame(
    path,
    out_dir,
    options,
    segment,
    *,
    stem,
    overwrite,
    plots,
    all_frames,
    max_pixels,
    inputs,
    skip=(),
    soft=False,
    masks=False,
):
    """The loop shared by the commands: per frame, check the outputs, make the features,
    release the decoded pixels, ``segment(data, path)`` -> (Segmentation, figures), write."""
    path = Path(path)
    stem = stem or path.stem
    out_dir = Path(out_dir)
    make_dir(out_dir)
    summaries = []
    for image in frames(path, all_frames, max_pixels):
        t0 = time.perf_counter()
        info = ImageInfo.of(image)
        frame_stem = stem if not all_frames or info.n_frames == 1 else f"{stem}.f{info.frame:03d}"
        max_k = options.k_range[1] if options.k_range else options.k
        paths = output_paths(
            out_dir,
            frame_stem,
            plots=plots,
            soft=soft,
            masks=max_k if masks else 0,
            selection=options.selects,
        )
        for kind in skip:
            paths.pop(kind, None)
        check_outputs(paths.values(), [path, *inputs], overwrite=overwrite)
        data = pixel_data(image, **options.data_kwargs())
        image_notes = list(getattr(image, "notes", ()))
        del image  # the features (or colour keys) carry all that is needed from here
        seg, figures = segment(data, path)
        if image_notes:
            figures["notes"] = image_notes + list(figures.get("notes", []))
        # k may have been lowered (fewer distinct colours): no masks of absent components
        paths = {
            k: v for k, v in paths.items() if not (k.startswith("mask") and int(k[4:]) >= seg.k)
        }
        with atomic_group():  # all outputs of the image, or none
            write_segmentation(
                seg, paths, image=info, options=options, overwrite=overwrite, figures=figures
            )
        summaries.append(
            {
                "input": str(path),
                "frame": info.frame,
                **figures,
                "seconds": time.perf_counter() - t0,
                "outputs": {k: str(v) for k, v in paths.items()},
            }
        )
    return summaries


def make_dir(out_dir):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SegmentError(
            f"cannot use {out_dir} as output folder: a file has that name."
        ) from None
    except OSError as err:
        raise SegmentError(f"cannot create the output folder {out_dir}: {err.strerror}.") from None


def load_model_file(model_path):
    """Read a NAME.model.json: the mixture and the options its features were made with."""
    model_path = Path(model_path)
    try:
        doc = json.loads(model_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegmentError(f"{model_path}: no such model file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SegmentError(f"{model_path}: not a readable model file ({err}).") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise SegmentError(
            f"{model_path}: not a segment model file (expected a NAME.model.json "
            "written by 'segment image')."
        )
    try:
        model = gmm.GaussianMixture.from_dict(doc["gmm"])
        options = FitOptions(**doc["options"]).validate()
    except (ValueError, KeyError, TypeError) as err:
        raise SegmentError(f"{model_path}: the model file is damaged ({err}).") from None
    return model, options, doc


def apply_file(
    model,
    options,
    path,
    out_dir,
    *,
    stem=None,
    overwrite=False,
    plots=True,
    all_frames=False,
    max_pixels=None,
    inputs=(),
    soft=False,
    masks=False,
):
    """Label an image with a saved model (no fitting) and write its outputs."""

    def label(data, path):
        if data.X.shape[1] != model.means_.shape[1]:
            raise SegmentError(
                f"{path}: the model expects {model.means_.shape[1]} features but "
                f"this image gives {data.X.shape[1]}."
            )
        seg = _segmentation(model, data, (), options)
        psnr_db = seg.psnr()
        loglik, bic = _loglik_and_bic(model, data, seg._pixel_totals)
        return seg, {
            "k": int(seg.k),
            "log_likelihood": loglik,
            "bic": bic,
            "psnr_db": psnr_db,
            "pixels": data.n_pixels,
        }

    return _each_frame(
        path,
        out_dir,
        options,
        label,
        stem=stem,
        overwrite=overwrite,
        plots=plots,
        all_frames=all_frames,
        max_pixels=max_pixels,
        inputs=inputs,
        skip=("loglik", "bic"),
        soft=soft,
        masks=masks,
    )
