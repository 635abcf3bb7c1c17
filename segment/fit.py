"""Fitting the mixture to an image's feature rows: EM for one k, or BIC model selection over
a range of k and covariance types; a fit on a sample is polished by EM passes over all
pixels. :class:`Segmentation` is the fitted model with what it says of the image (labels,
PSNR, figures)."""

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np

import gmm
from gmm import COVARIANCE_TYPES

from .color import features_to_rgb, rgb_to_lab, rgb_to_uint8
from .errors import SegmentError
from .features import PixelData, pixel_data, quantisation_variance
from .labels import pixel_labels, smoothed_labels
from .mdl import data_features, describe_regions, sampling_step
from .memory import release_free_memory
from .metrics import labels_psnr, psnr
from .options import FitOptions
from .outputs.files import label_dtype, transparent_label
from .regions import merge_similar_neighbours, merge_small_regions


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
    recorder: object = None  # EMRecorder of the fit's iterations, for NAME.em.gif
    n_regions: int | None = None  # regions after merging by description length

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
            with contextlib.ExitStack() as colour_table:
                # One pass: the 2^24 colour table of an 8-bit image (64 MiB) serves the
                # smoothing and, when they read every pixel, the region statistics; those of
                # a large image read a grid of pixels, looked up without it.
                colour_table.enter_context(self.data.strip_pass())
                self._labels = self._make_labels(colour_table.close)
        return self._labels

    def _make_labels(self, release_colour_table):
        fill = transparent_label(self.k)
        dtype = label_dtype(self.k)
        budget = self.options.chunk_mib
        release_free_memory()  # the fit's freed temporaries, before full-size arrays
        if self.smooth > 0 and self.k > 1:
            labels = smoothed_labels(
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
            labels = pixel_labels(
                self.model, self.data, budget_mib=budget, out_dtype=dtype, fill=fill
            )
        if self.options.merge > 0 and self.k > 1:
            colours = rgb_to_lab(self.quantized_palette.astype(np.float64) / 255.0)
            merge_similar_neighbours(
                labels, colours, self.options.merge, n_labels=self.k, visible=self.data.visible
            )
        if self.options.merges_regions and self.k > 1:
            step = sampling_step(self.data.shape[0] * self.data.shape[1])
            with self.data.grid_lookup(step):  # the grid's colours, while the table exists
                if step > 1:
                    release_colour_table()
                release_free_memory()
                self._describe(labels)
        elif self.min_region > 1 and self.k > 1:
            release_free_memory()
            merge_small_regions(labels, self.min_region, n_labels=self.k, visible=self.data.visible)
        return labels

    def _describe(self, labels):
        """Merge the connected regions of ``labels`` by description length, in place; each
        merged region takes the component covering most of it (:mod:`segment.mdl`)."""
        features = data_features(self.data)
        visible = self.data.visible
        n_visible = self.data.n_pixels
        _, result = describe_regions(
            labels,
            self.k,
            features,
            visible=visible,
            min_size=self.min_region / max(n_visible, 1),
            n_regions=self.options.regions,
            components=True,
            out=labels,
        )
        self.n_regions = result.n_final

    def psnr(self):
        """PSNR (dB) of the quantised image that is written (each pixel its label's colour)."""
        if (
            self.data.deduplicated
            and self.smooth == 0
            and self.min_region <= 1
            and not self.options.merges_regions
        ):
            approx = self.quantized_palette[self.row_labels].astype(np.float64) / 255.0
            return psnr(self.data.rgb, approx, self.data.weight)
        return labels_psnr(self.data, self.label_image(), self.quantized_palette)

    def loglik_and_bic(self):
        """Mean log-likelihood per pixel and BIC of all the (visible) pixels. After a fit on a
        sample they come from the pass that makes the labels (made here if not yet), which
        measures them on the way, so the figures need no pass of their own."""
        if self.data.sampled:
            self.label_image()
        return loglik_and_bic(self.model, self.data, self._pixel_totals)


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
    """The recorded warnings as notes: each message whole (with its advice), on one line."""
    notes = []
    for w in caught:
        msg = " ".join(str(w.message).split()).rstrip(".") + "."
        if msg not in notes:
            notes.append(msg)
    return notes


def fit_image(image, options, on_iteration=None):
    """Fit a mixture to one image's pixels and label them.

    Parameters
    ----------
    image : segment.imageio.Image
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
    seg = segmentation_of(model, data, notes, options)
    seg.selection = selection
    return seg


def gmm_options(options, dtype=None):
    """Estimator arguments of ``options`` common to every fit."""
    reg_covar = options.reg_covar
    if reg_covar is None:
        reg_covar = quantisation_variance(options.space)
    out = dict(
        tol=options.tol,
        reg_covar=reg_covar,
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
                notes += _selection_notes(selection, ks)
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


def _selection_notes(selection, ks):
    """Say when the criterion still improves at an edge of the range of k (the choice is
    then the edge, not a minimum), and what ICL would choose among the same fits."""
    notes = []
    k, cov = selection.chosen
    if len(ks) > 1 and k in (ks[0], ks[-1]):
        side = "top" if k == ks[-1] else "bottom"
        notes.append(
            f"BIC is still improving at k={k}, the {side} of the range {ks[0]}:{ks[-1]}: "
            "that is an edge, not a minimum (on 10^5 pixels and more BIC keeps adding "
            "components; widen the range, or use --regions to merge regions instead)."
        )
    rows = [r for r in selection.table if r["covariance_type"] == cov]
    if rows:
        icl = min(rows, key=lambda r: r["icl"])["k"]
        notes.append(f"ICL would choose k={icl} among the same fits.")
    return notes


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


def segmentation_of(model, data, notes=(), options=None):
    """A :class:`Segmentation` of ``data`` by a fitted ``model``; without ``options`` the
    labels are pixel-wise (no smoothing, no region merging)."""
    if options is None:
        options = FitOptions(smooth=0.0, min_region=0, regions=0)
    row_labels = model.predict(data.X)
    palette = rgb_to_uint8(features_to_rgb(model.means_, data.space))
    return Segmentation(model, data, row_labels, palette, options, list(notes))


def loglik_and_bic(model, data, totals=None):
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
    psnr_db = seg.psnr()
    loglik, bic = seg.loglik_and_bic()
    return {
        "k": int(seg.k),
        "regions": seg.n_regions,
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
