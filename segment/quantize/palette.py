"""Fitting a palette of at most k colours: the means of a Gaussian mixture fitted to the
pixels' colours (the distinct colours weighted by their counts for 8-bit images), then
*polished* by weighted Lloyd iterations in RGB on the same colours: each palette colour
moves to the mean of the colours nearest to it, which never increases the squared error
the result is judged on (a mixture's means are weighted by soft responsibilities, not the
squared-error centroids of the nearest-colour cells)."""

import warnings
from dataclasses import dataclass, field

import numpy as np

import gmm

from ..color import features_to_rgb, rgb_to_uint8
from ..colorkeys import keys_to_rgb
from ..errors import SegmentError
from ..fit import collect_notes

MAX_COLOURS = 256


#: Pixels the mixture is fitted on when the image is not 8-bit (a uniform sample).
FIT_ROWS = 1 << 20


_LUMA = np.array([0.2126, 0.7152, 0.0722])


def polish_palette(rgb, weight, palette01, *, max_iter=30, rtol=1e-4, max_rows=262_144, seed=0):
    """Weighted Lloyd iterations in RGB (gmm's k-means step): every palette colour moves to
    the weighted mean of the rows nearest to it, until no row changes colour or the colours
    move less than ``rtol`` times the rows' mean variance.

    The squared error of the nearest-colour mapping never increases from one iteration to
    the next. A colour that no row is nearest to moves to the row with the largest weighted
    error. Above ``max_rows`` rows the iterations run on that many rows drawn with
    probability proportional to their weight (the refinement of a palette needs no more).

    Parameters
    ----------
    rgb : ndarray (n, 3)
        Rows in [0, 1] (distinct colours, or pixels).
    weight : ndarray (n,) or None
        Counts of the rows.
    palette01 : ndarray (P, 3)
        Starting palette in [0, 1].
    max_iter, rtol : int, float
        Iteration limit and relative movement of the colours below which to stop.
    max_rows : int
        Rows above which a weighted sample is used.
    seed : int
        Seed of that sample.

    Returns
    -------
    ndarray (P, 3) in [0, 1]
    """
    x = np.asarray(rgb)
    w = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    if len(x) > max_rows:
        rows = np.random.default_rng(seed).choice(len(x), size=max_rows, p=w / w.sum())
        rows, w = np.unique(rows, return_counts=True)
        x, w = x[rows], w.astype(np.float64)
    x = np.asarray(x, dtype=np.float64)
    centres = np.clip(np.array(palette01, dtype=np.float64), 0.0, 1.0)
    return gmm.lloyd(x, w, centres, max_iter=max_iter, tol=rtol)


def _distinct_sorted(palette):
    """Distinct palette colours, ordered dark to light (then by value)."""
    pal = np.unique(palette, axis=0)
    order = np.lexsort((pal[:, 2], pal[:, 1], pal[:, 0], pal @ _LUMA))
    return pal[order]


@dataclass
class PaletteFit:
    """A fitted palette: ``palette`` (P, 3) uint8, distinct colours ordered dark to light;
    the mixture it came from (None when the image has no more colours than asked)."""

    palette: np.ndarray
    model: gmm.GaussianMixture | None
    notes: list = field(default_factory=list)


def fit_palette(
    data,
    k,
    *,
    seed=0,
    covariance_type="full",
    max_iter=100,
    tol=1e-3,
    lloyd=True,
    start=None,
    on_iteration=None,
):
    """Fit a palette of at most ``k`` colours to an image's pixels.

    Parameters
    ----------
    data : segment.features.PixelData
        Colour features (no position features).
    k : int
        Number of mixture components.
    seed : int
    covariance_type, max_iter, tol
        Options of the mixture.
    lloyd : bool, default True
        Refine the mixture's means by :func:`polish_palette` (least squared error in RGB).
    start : gmm.GaussianMixture, optional
        A mixture with fewer components fitted to the same data: the fit starts from it
        with components split (:func:`gmm.grow_mixture`) instead of from k-means.
    on_iteration : callable, optional
        ``on_iteration(iteration, objective)`` after each EM iteration.

    Returns
    -------
    PaletteFit

    Raises
    ------
    SegmentError
        If the mixture cannot be fitted.
    """
    if data.xy:
        raise SegmentError("a palette is fitted to colours only; use xy=0 for the features.")
    if data.deduplicated and len(data.X) <= k:
        palette = _distinct_sorted(keys_to_rgb(data.unique_keys, np.uint8))
        notes = (
            []
            if len(data.X) == k
            else [
                f"only {len(data.X)} distinct colours: the palette is those colours (k={k} asked)."
            ]
        )
        return PaletteFit(palette, None, notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if start is not None and start.n_components < k:
                model = gmm.grow_mixture(
                    start,
                    data.X,
                    data.weight,
                    n_components=k,
                    random_state=seed,
                    callback=on_iteration,
                )
            else:
                model = gmm.GaussianMixture(
                    k,
                    covariance_type=covariance_type,
                    max_iter=max_iter,
                    tol=tol,
                    random_state=seed,
                    callback=on_iteration,
                ).fit(data.X, data.weight)
        except ValueError as err:
            raise SegmentError(f"cannot fit the mixture: {err}") from None
    rgb = features_to_rgb(model.means_, data.space)
    if lloyd:
        rgb = polish_palette(data.rgb, data.weight, rgb)
    return PaletteFit(_distinct_sorted(rgb_to_uint8(rgb)), model, collect_notes(caught))
