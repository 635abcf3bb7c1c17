"""Colour quantisation: a palette of at most k colours fitted to an image's pixels, every
pixel mapped to a palette colour, the quality figures of the result, and the search for the
smallest k that reaches a quality target.

Palette
    The means of a Gaussian mixture fitted to the pixels' colours (the distinct colours
    weighted by their counts for 8-bit images), then *polished* by weighted Lloyd
    iterations in RGB on the same colours: each palette colour moves to the mean of the
    colours nearest to it, which never increases the squared error the result is judged on
    (a mixture's means are weighted by soft responsibilities, not the squared-error
    centroids of the nearest-colour cells).
Mapping
    Each pixel takes its *nearest* palette colour (Euclidean RGB), never the colour of its
    most likely component: for a given palette that is the mapping with the least squared
    error. With ``dither`` the choice is the nearest colour to the pixel plus the error
    diffused to it (Floyd–Steinberg, see :func:`dither_indices`).
Figures
    PSNR (dB) and SSIM on RGB in [0, 1] and the mean CIEDE2000 ΔE, over the visible pixels.
"""

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gmm
from gmm.init import lloyd

from .errors import SegmentError
from .features import color_keys, features_to_rgb, keys_to_rgb8, pixel_data, rgb_to_uint8
from .io import load_image
from .outputs import write_palette_png
from .pipeline import check_outputs, collect_notes, make_dir

MAX_COLOURS = 256
#: Pixels the mixture is fitted on when the image is not 8-bit (a uniform sample).
FIT_ROWS = 1 << 20
#: Rows per block of the row-wise work (nearest colour, Lab conversion).
BLOCK_ROWS = 65536
#: Pixels per strip of the image-wise figures (SSIM, figures of dithered images).
STRIP_PIXELS = 1 << 19
#: SSIM window (scikit-image's default) and the rows a strip borrows from its neighbours.
SSIM_WIN = 7
_LUMA = np.array([0.2126, 0.7152, 0.0722])


# =========================================================================================
# Mapping pixels to the palette
# =========================================================================================


def nearest_palette(rgb, palette):
    """Index of the nearest palette colour (Euclidean RGB) of each row, in blocks.

    Parameters
    ----------
    rgb : array-like (n, 3)
        Colours in [0, 1].
    palette : ndarray (P, 3) uint8

    Returns
    -------
    ndarray (n,) of intp
    """
    nearest = NearestColour(np.asarray(palette, dtype=np.float64) / 255.0, len(rgb))
    out = np.empty(len(rgb), dtype=np.intp)
    for a in range(0, len(rgb), BLOCK_ROWS):
        x = np.clip(np.asarray(rgb[a : a + BLOCK_ROWS], dtype=np.float64), 0.0, 1.0)
        out[a : a + BLOCK_ROWS] = nearest(x)
    return out


def _unit_scale(dtype):
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


class NearestColour:
    """Nearest palette colour of points in [0, 1]³, exact, with a grid of candidate lists.

    For a palette of more than :attr:`GRID_MIN` colours the RGB cube is cut into G³ cells;
    a colour can be the nearest to some point of a cell only if its least distance to the
    cell is no more than the smallest greatest distance of any colour to the cell, and those
    colours (usually a handful out of 256) are the cell's candidates. Points in cells with
    more candidates than the table's width, and every point for small palettes, are
    compared with every colour. Ties go to the lower palette index, as with ``argmin``.

    Parameters
    ----------
    palette01 : ndarray (P, 3)
        Palette colours in [0, 1].
    n_points : int, optional
        How many points will be looked up: the grid (which costs about as much as
        comparing 2 million points with every colour) is built only for many.
    """

    GRID_MIN = 32
    GRID = 32
    WIDTH_QUANTILE = 90

    def __init__(self, palette01, n_points=None):
        self.pal = np.asarray(palette01, dtype=np.float64)
        self.palT = np.ascontiguousarray(self.pal.T)
        self.p2 = (self.pal**2).sum(axis=1)
        self.table = None
        if len(self.pal) > self.GRID_MIN and (n_points is None or n_points > 2_000_000):
            self._build_grid()

    def _build_grid(self):
        G = self.GRID
        corners = np.indices((G, G, G)).reshape(3, -1).T / G  # flat index (r*G + g)*G + b
        cand = np.empty((G**3, len(self.pal)), dtype=bool)
        pal = self.pal[None, :, :]
        for a in range(0, G**3, 1024):
            lo = corners[a : a + 1024, None, :]
            below, above = lo - pal, pal - (lo + 1.0 / G)
            dmin = (np.maximum(0.0, np.maximum(below, above)) ** 2).sum(axis=2)
            dmax = (np.maximum(np.abs(below), np.abs(above)) ** 2).sum(axis=2)
            # A margin for rounding: a candidate too many costs nothing, one too few is wrong.
            cand[a : a + 1024] = dmin <= dmax.min(axis=1, keepdims=True) * (1 + 1e-9) + 1e-12
        count = cand.sum(axis=1)
        width = int(max(4, np.percentile(count, self.WIDTH_QUANTILE)))
        if width * 2 >= len(self.pal):
            return
        # Candidates in palette order, padded with the last one (so ties keep argmin's rule).
        order = np.argsort(~cand, axis=1, kind="stable")[:, :width]
        last = np.take_along_axis(order, np.minimum(count, width)[:, None] - 1, axis=1)
        pad = np.arange(width)[None, :] >= count[:, None]
        self.table = np.where(pad, last, order).astype(np.intp)
        self.wide = count > width
        self.channels = [np.ascontiguousarray(c) for c in self.palT]

    def __call__(self, v):
        """Index (n,) of the nearest colour of each row of ``v`` (n, 3), clipped to [0, 1]."""
        if self.table is None:
            return self._full(v)
        G = self.GRID
        cell = np.minimum((v * G).astype(np.intp), G - 1)
        flat = (cell[:, 0] * G + cell[:, 1]) * G + cell[:, 2]
        cand = self.table[flat]
        # p² - 2 v·p over the candidates, one channel at a time (contiguous gathers).
        d = self.channels[0][cand] * v[:, 0:1]
        d += self.channels[1][cand] * v[:, 1:2]
        d += self.channels[2][cand] * v[:, 2:3]
        d *= -2.0
        d += self.p2[cand]
        out = np.take_along_axis(cand, np.argmin(d, axis=1)[:, None], axis=1)[:, 0]
        wide = self.wide[flat]
        if wide.any():
            out[wide] = self._full(v[wide])
        return out

    def _full(self, v):
        return np.argmin(self.p2[None, :] - 2.0 * (v @ self.palT), axis=1)


def dither_indices(pixels, palette, visible=None):
    """Floyd–Steinberg error diffusion of an image onto a palette.

    The classic variant (Floyd & Steinberg 1976): pixels in raster order, left to right on
    every row (no serpentine); each pixel takes the palette colour nearest (Euclidean RGB)
    to its value plus the error diffused to it, clipped to [0, 1]; the error (that clipped
    value minus the chosen colour) goes 7/16 to the right neighbour, 3/16 below left, 5/16
    below and 1/16 below right; error that would leave the image is dropped. Invisible
    pixels neither receive nor pass on error.

    The result is that of the sequential algorithm, computed by wavefronts: pixel (y, x)
    depends only on pixels processed earlier in raster order whose step ``x + 2y`` is
    smaller than its own, so all pixels of one step are done in one vectorised operation.
    There are ``W + 2H - 2`` steps of at most ``min(H, W/2)`` pixels; besides the output,
    memory is O(H).

    Parameters
    ----------
    pixels : ndarray (H, W, 3)
        uint8, uint16 or float in [0, 1].
    palette : ndarray (P, 3) uint8
    visible : ndarray (H, W) bool, optional

    Returns
    -------
    ndarray (H, W)
        Palette indices, uint8 for up to 256 colours (uint16 otherwise); 0 where invisible.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise SegmentError(f"pixels must have shape (H, W, 3); got {pixels.shape}.")
    H, W = pixels.shape[:2]
    pal = np.asarray(palette, dtype=np.float64) / 255.0
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise SegmentError(f"palette must have shape (P, 3) with P >= 1; got {pal.shape}.")
    scale = _unit_scale(pixels.dtype)
    nearest = NearestColour(pal, H * W)
    out = np.zeros((H, W), dtype=np.uint8 if len(pal) <= 256 else np.uint16)
    # err[s % 4][y] is the error diffused to the pixel of row y processed at step s.
    err = np.zeros((4, H + 1, 3))
    for t in range(W + 2 * H - 2):
        y0, y1 = max(0, (t - W + 2) // 2), min(H - 1, t // 2)
        ys = np.arange(y0, y1 + 1)
        xs = t - 2 * ys
        err[(t + 3) % 4] = 0.0  # held step t - 1, done; now collects for step t + 3
        here = err[t % 4]
        v = pixels[ys, xs].astype(np.float64)
        if scale != 1.0:
            v /= scale
        v += here[y0 : y1 + 1]
        np.clip(v, 0.0, 1.0, out=v)
        idx = nearest(v)
        out[ys, xs] = idx
        e = v - pal[idx]
        if visible is not None:
            e[~visible[ys, xs]] = 0.0
        # Error for a position outside the image lands in a slot no step reads (that
        # row is not processed at that step), and the slot is cleared before reuse.
        below = slice(y0 + 1, y1 + 2)
        err[(t + 1) % 4][y0 : y1 + 1] += (7.0 / 16.0) * e  # right (y, x + 1): step t + 1
        err[(t + 1) % 4][below] += (3.0 / 16.0) * e  # below left (y + 1, x - 1): step t + 1
        err[(t + 2) % 4][below] += (5.0 / 16.0) * e  # below (y + 1, x): step t + 2
        err[(t + 3) % 4][below] += (1.0 / 16.0) * e  # below right (y + 1, x + 1): step t + 3
    return out


# =========================================================================================
# The palette
# =========================================================================================


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
    return lloyd(x, w, centres, max_iter=max_iter, tol=rtol)


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
    polish=True,
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
    polish : bool, default True
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
        palette = _distinct_sorted(keys_to_rgb8(data.unique_keys))
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
    if polish:
        rgb = polish_palette(data.rgb, data.weight, rgb)
    return PaletteFit(_distinct_sorted(rgb_to_uint8(rgb)), model, collect_notes(caught))


# =========================================================================================
# Quality figures
# =========================================================================================


class PaletteImage:
    """``palette[indices]`` read strip by strip, without building the whole RGB image."""

    def __init__(self, indices, palette):
        self.indices = indices
        self.palette = np.asarray(palette)
        self.shape = (*indices.shape, 3)

    def __getitem__(self, rows):
        return self.palette[self.indices[rows]]


def _unit(a):
    a = np.asarray(a)
    scale = _unit_scale(a.dtype)
    return a.astype(np.float64) / scale if scale != 1.0 else a.astype(np.float64)


def _lab(rgb01):
    from skimage.color import rgb2lab

    return rgb2lab(rgb01[None, :, :])[0]


def _delta_e(rgb01, approx01):
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(_lab(rgb01), _lab(approx01), channel_axis=-1)


def _psnr(sse, n_values):
    mse = sse / n_values
    return float("inf") if mse <= 0 else float(10.0 * np.log10(1.0 / mse))


def row_figures(rgb, weight, approx):
    """PSNR (dB) and mean CIEDE2000 ΔE of ``approx`` against ``rgb``, rows weighted.

    Parameters
    ----------
    rgb, approx : ndarray (n, 3)
        Colours in [0, 1]; ``approx`` may also be uint8.
    weight : ndarray (n,) or None
        Pixel counts of the rows.

    Returns
    -------
    dict
        ``psnr_db``, ``delta_e``.
    """
    sse = de = 0.0
    total = 0.0
    for a in range(0, len(rgb), BLOCK_ROWS):
        x = _unit(rgb[a : a + BLOCK_ROWS])
        y = _unit(approx[a : a + BLOCK_ROWS])
        w = np.ones(len(x)) if weight is None else np.asarray(weight[a : a + BLOCK_ROWS], float)
        sse += float(w @ ((x - y) ** 2).sum(axis=1))
        de += float(w @ _delta_e(x, y))
        total += float(w.sum())
    return {"psnr_db": _psnr(sse, 3.0 * total), "delta_e": de / total}


def _strips(H, rows):
    """Strip boundaries; the last strip has at least 4 rows (an SSIM window needs 7 with the
    3 rows borrowed on each side)."""
    edges = [*range(0, H, rows), H]
    if len(edges) > 2 and edges[-1] - edges[-2] < 4:
        del edges[-2]
    return list(itertools.pairwise(edges))


def _pair_rows(original8, palette_image, visible, strips):
    """Distinct (colour, palette index) pairs of an 8-bit image and its palette image, with
    their pixel counts: the figures of the pairs weighted by the counts are those of all
    pixels, for far fewer colour conversions."""
    parts, counts = [], []
    for a, b in strips:
        keys = color_keys(original8[a:b]).astype(np.int64) << 16
        keys |= palette_image.indices[a:b]
        if visible is not None:
            keys = keys[visible[a:b]]
        u, c = np.unique(keys, return_counts=True)
        parts.append(u)
        counts.append(c)
    keys, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=np.concatenate(counts).astype(np.float64))
    colours = keys_to_rgb8((keys >> 16).astype(np.uint32)).astype(np.float64) / 255.0
    return colours, weight, palette_image.palette[keys & 0xFFFF]


def image_figures(original, result, visible=None, *, ssim=True, strip_rows=None):
    """PSNR (dB), SSIM and mean CIEDE2000 ΔE of ``result`` against ``original``.

    Computed strip by strip over the visible pixels. SSIM is scikit-image's
    ``structural_similarity(original, result, channel_axis=-1, data_range=1)``, with the
    mean of its per-pixel map taken over the visible pixels at least 3 pixels from the
    border (where scikit-image takes its mean); strips borrow 3 rows from their neighbours,
    so each strip's map is exactly that of the whole image. For an 8-bit ``original`` and a
    :class:`PaletteImage` ``result``, PSNR and ΔE are computed once per distinct pair of
    original colour and palette colour, weighted by its pixel count (the same figures).

    Parameters
    ----------
    original, result : ndarray (H, W, 3) or :class:`PaletteImage`
        uint8, uint16, or float in [0, 1].
    visible : ndarray (H, W) bool, optional
    ssim : bool, default True
        Compute SSIM (None when the image is smaller than 7×7 pixels, SSIM's window).
    strip_rows : int, optional
        Rows per strip; by default about half a million pixels per strip.

    Returns
    -------
    dict
        ``psnr_db``, ``ssim``, ``delta_e``.
    """
    from skimage.metrics import structural_similarity

    H, W = original.shape[:2]
    if tuple(result.shape) != tuple(original.shape):
        raise SegmentError(f"result shape {result.shape} differs from original {original.shape}.")
    if visible is not None and not visible.any():
        raise SegmentError("no pixel is visible; there is nothing to compare.")
    strips = _strips(H, strip_rows or max(8, STRIP_PIXELS // max(W, 1)))
    pad = (SSIM_WIN - 1) // 2
    do_ssim = ssim and min(H, W) >= SSIM_WIN
    by_pairs = isinstance(result, PaletteImage) and np.asarray(original).dtype == np.uint8
    sse = de = s_sum = 0.0
    n = s_n = 0
    for a, b in strips if do_ssim or not by_pairs else ():
        a0, b0 = (max(0, a - pad), min(H, b + pad)) if do_ssim else (a, b)
        o, r = _unit(original[a0:b0]), _unit(result[a0:b0])
        core = slice(a - a0, b - a0)
        v = np.ones((b - a, W), bool) if visible is None else visible[a:b]
        if not by_pairs:
            oc, rc = o[core][v], r[core][v]
            sse += float(((oc - rc) ** 2).sum())
            de += float(_delta_e(oc, rc).sum()) if len(oc) else 0.0
            n += int(v.sum())
        if do_ssim:
            _, S = structural_similarity(o, r, channel_axis=-1, data_range=1.0, full=True)
            rows = np.arange(a, b)
            inner = v & ((rows >= pad) & (rows < H - pad))[:, None]
            inner[:, :pad] = False
            inner[:, W - pad :] = False
            s_sum += float(S[core][inner].sum())
            s_n += 3 * int(inner.sum())
    if by_pairs:
        colour = row_figures(*_pair_rows(original, result, visible, strips))
    else:
        colour = {"psnr_db": _psnr(sse, 3.0 * n), "delta_e": de / n}
    return {**colour, "ssim": s_sum / s_n if do_ssim and s_n else None}


# =========================================================================================
# Quantising an image, with a quality target
# =========================================================================================


@dataclass
class Candidate:
    """One palette tried: its figures, and what is needed to write it."""

    k: int
    fit: PaletteFit
    figures: dict
    row_indices: np.ndarray | None = None  # nearest colour of each feature row
    indices: np.ndarray | None = None  # (H, W) palette indices (dithered)


class _Quantizer:
    """Fits, maps and judges palettes for one image (shared by the fixed-k and search
    paths)."""

    def __init__(self, pixels, data, *, dither, polish, fit_options, on_iteration):
        self.pixels = pixels
        self.data = data
        self.dither = dither
        self.polish = polish
        self.fit_options = fit_options
        self.on_iteration = on_iteration
        self.tried = {}

    def model_below(self, k):
        """The fitted mixture with the most components below k, to start from."""
        below = [c for kk, c in self.tried.items() if kk < k and c.fit.model is not None]
        return max(below, key=lambda c: c.k).fit.model if below else None

    def evaluate(self, k, *, warm=True):
        fit = fit_palette(
            self.data,
            k,
            polish=self.polish,
            start=self.model_below(k) if warm else None,
            on_iteration=self.on_iteration,
            **self.fit_options,
        )
        d = self.data
        if d.deduplicated and not self.dither:
            rows = nearest_palette(d.rgb, fit.palette)
            cand = Candidate(k, fit, row_figures(d.rgb, d.weight, fit.palette[rows]), rows)
        else:
            if self.dither:
                indices = dither_indices(self.pixels, fit.palette, d.visible)
            else:
                indices = self._nearest_image(fit.palette)
            figures = image_figures(
                self.pixels, PaletteImage(indices, fit.palette), d.visible, ssim=False
            )
            figures.pop("ssim")
            cand = Candidate(k, fit, figures, indices=indices)
        self.tried[k] = cand
        return cand

    def _nearest_image(self, palette):
        """Nearest palette colour of every pixel, strip by strip (rows not deduplicated)."""
        H, W = self.data.shape
        nearest = NearestColour(np.asarray(palette, dtype=np.float64) / 255.0, H * W)
        out = np.zeros((H, W), dtype=np.uint8 if len(palette) <= 256 else np.uint16)
        for a, b in _strips(H, max(1, BLOCK_ROWS // max(W, 1))):
            rgb = np.clip(_unit(self.pixels[a:b]).reshape(-1, 3), 0.0, 1.0)
            out[a:b] = nearest(rgb).reshape(b - a, W)
        return out

    def indices(self, cand):
        """(H, W) palette indices of a candidate (recomputed if they were let go)."""
        if cand.indices is not None:
            return cand.indices
        d = self.data
        if d.deduplicated and not self.dither:
            rows = cand.row_indices
            if rows is None:
                rows = nearest_palette(d.rgb, cand.fit.palette)
            dtype = np.uint8 if len(cand.fit.palette) <= 256 else np.uint16
            return d.scatter(rows.astype(dtype), fill=0)
        if self.dither:
            return dither_indices(self.pixels, cand.fit.palette, self.data.visible)
        return self._nearest_image(cand.fit.palette)


def _meets(figures, quality, max_delta_e):
    ok = True
    if quality is not None:
        ok &= figures["psnr_db"] >= quality
    if max_delta_e is not None:
        ok &= figures["delta_e"] <= max_delta_e
    return bool(ok)


def search_k(evaluate, k_max, meets):
    """The smallest k (among those tried) whose result ``meets`` a target.

    k = 1, 2, 4, ... (doubling, capped at ``k_max``) until one meets the target, then
    bisection between the last failing and the first meeting k. Quality grows with k
    almost monotonically, so this tries about 2 log2(k) values; whatever the figures do,
    the answer is the smallest k tried that meets the target.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(k)`` -> result.
    k_max : int
    meets : callable
        ``meets(result)`` -> bool.

    Returns
    -------
    best : int or None
        The smallest k tried that meets the target; None if even ``k_max`` does not.
    tried : list of (k, result, bool)
        In the order tried.
    """
    tried = []

    def attempt(k):
        r = evaluate(k)
        ok = bool(meets(r))
        tried.append((k, r, ok))
        return ok

    lo, hi, k = 0, None, 1
    while hi is None:
        if attempt(k):
            hi = k
        elif k >= k_max:
            return None, tried
        else:
            lo, k = k, min(2 * k, k_max)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    return hi, tried


def _not_reached(chosen, quality, max_delta_e):
    wanted = [f"PSNR >= {quality:g} dB"] if quality is not None else []
    wanted += [f"mean ΔE <= {max_delta_e:g}"] if max_delta_e is not None else []
    f = chosen.figures
    return (
        f"target not reached: the largest palette tried (k={chosen.k}) gives PSNR "
        f"{f['psnr_db']:.2f} dB and mean ΔE {f['delta_e']:.2f}; wanted {' and '.join(wanted)}."
    )


def _check_target(name, value, minimum, strict):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SegmentError(f"{name} must be a finite number; got {value!r}.")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise SegmentError(f"{name} must be {op} {minimum:g}; got {value:g}.")
    return float(value)


def quantize_file(
    path,
    out_path,
    *,
    k=None,
    quality=None,
    max_delta_e=None,
    dither=False,
    polish=True,
    seed=0,
    space="rgb",
    max_iter=100,
    tol=1e-3,
    overwrite=False,
    max_pixels=None,
    on_iteration=None,
):
    """Colour-quantise an image into a palette PNG.

    With no target, the palette has at most ``k`` colours (default 16). With ``quality``
    (PSNR in dB) and/or ``max_delta_e`` (mean CIEDE2000), the smallest k up to ``k``
    (default 256) whose result reaches the target(s) is searched for (:func:`search_k`);
    each k after the first starts from the largest mixture fitted below it. Fully
    transparent pixels stay transparent and take one palette entry (so k <= 255 then).

    Parameters
    ----------
    path, out_path : str or Path
        Input image; output ``.png``.
    k : int, optional
        Colours (1–256); with a target, the largest k tried.
    quality : float, optional
        Target PSNR in dB (> 0).
    max_delta_e : float, optional
        Target mean ΔE (CIEDE2000, >= 0).
    dither : bool, default False
        Floyd–Steinberg error diffusion onto the palette (:func:`dither_indices`).
    polish : bool, default True
        Lloyd-polish the mixture's means into the least-squared-error palette.
    seed, space, max_iter, tol
        Options of the mixture fit (features in ``space``; the mapping is always RGB).
    overwrite, max_pixels, on_iteration
        As for the other commands.

    Returns
    -------
    dict
        ``k``, ``colours_used``, ``psnr_db``, ``ssim``, ``delta_e``, sizes and their
        ratio, ``dither``, ``mapping``, ``target`` and ``search`` (the k tried, with their
        figures) when a target was given, ``iterations``, ``converged``, ``notes``,
        ``seconds``.

    Raises
    ------
    SegmentError
        For invalid options, unreadable inputs, existing outputs without ``overwrite``.
    """

    t0 = time.perf_counter()
    path, out_path = Path(path), Path(out_path)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 256):
        raise SegmentError(f"k must be between 1 and 256 for a palette PNG; got {k}.")
    quality = _check_target("the PSNR target (--quality)", quality, 0.0, True)
    max_delta_e = _check_target("the ΔE target (--max-delta-e)", max_delta_e, 0.0, False)
    if out_path.suffix.lower() != ".png":
        raise SegmentError(
            f"{out_path}: the quantised image is a PNG; give the output a .png name."
        )
    check_outputs([out_path], [path], overwrite=overwrite)
    if out_path.parent != Path():
        make_dir(out_path.parent)
    image = load_image(path, max_pixels=max_pixels)
    # 8-bit images: the distinct colours with their counts (exact); others: at most
    # FIT_ROWS pixels sampled for the fit, every pixel mapped strip by strip.
    data = pixel_data(image, space=space, max_rows=FIT_ROWS, seed=seed)
    notes = list(getattr(image, "notes", ()))
    targeted = quality is not None or max_delta_e is not None
    k_max = MAX_COLOURS - (data.visible is not None)
    k = k if k is not None else (k_max if targeted else 16)
    if k > k_max:
        notes.append(f"transparency takes one palette entry: used k={k_max}.")
        k = k_max
    q = _Quantizer(
        image.pixels,
        data,
        dither=bool(dither),
        polish=bool(polish),
        fit_options={"seed": seed, "max_iter": max_iter, "tol": tol},
        on_iteration=on_iteration,
    )
    search = target = None
    if targeted:

        def meets(c):
            return _meets(c.figures, quality, max_delta_e)

        def evaluate(kk):
            # Keep the mapping only of the last k tried if it meets the target (the smallest
            # so far that does); others are recomputed if chosen after all.
            c = q.evaluate(kk)
            drop = [o for o in q.tried.values() if o is not c] if meets(c) else [c]
            for o in drop:
                o.indices = o.row_indices = None
            return c

        best, tried = search_k(evaluate, k, meets)
        search = [{"k": kk, **c.figures, "reached": ok} for kk, c, ok in tried]
        target = {"psnr_db": quality, "delta_e": max_delta_e, "reached": best is not None}
        chosen = q.tried[k if best is None else best]
        if best is None:
            notes.append(_not_reached(chosen, quality, max_delta_e))
    else:
        chosen = q.evaluate(k)
    palette = chosen.fit.palette
    indices = q.indices(chosen)
    q.tried.clear()
    size = write_palette_png(out_path, indices, palette, data.visible, overwrite=overwrite)
    figures = image_figures(image.pixels, PaletteImage(indices, palette), data.visible)
    used = np.unique(indices if data.visible is None else indices[data.visible])
    in_size = path.stat().st_size
    model = chosen.fit.model
    return {
        "input": str(path),
        "output": str(out_path),
        "k": int(chosen.k),
        "colours_used": len(used),
        "psnr_db": figures["psnr_db"],
        "ssim": figures["ssim"],
        "delta_e": figures["delta_e"],
        "input_bytes": int(in_size),
        "output_bytes": int(size),
        "size_ratio": float(size / in_size) if in_size else None,
        "dither": bool(dither),
        "mapping": "nearest palette colour" + (" with Floyd–Steinberg dithering" if dither else ""),
        "polish": bool(polish),
        "target": target,
        "search": search,
        "iterations": None if model is None else int(model.n_iter_),
        "converged": None if model is None else bool(model.converged_),
        "notes": notes + chosen.fit.notes,
        "seconds": time.perf_counter() - t0,
    }
