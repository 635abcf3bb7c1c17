"""``segment quantize``: a palette PNG of at most k colours, fitted on the colour histogram.

1. The image's distinct colours and their pixel counts (one sort of the 24-bit keys,
   :mod:`segment.quantize.histogram`), merged into cells of 2–8 levels per channel for the fit
   (``speed``; the PSNR cost is measured in ``benchmarks/bench_quantize.py``).
2. The palette (:mod:`segment.quantize.histfit`): variance splits of the cells into k clusters, then
   weighted Lloyd iterations, which minimise the squared error the result is judged by.
3. Every distinct colour takes its nearest palette colour (exact), every pixel its colour's
   through a table; with ``dither`` > 0, error diffusion where it helps
   (:mod:`segment.quantize.diffusion`).

PSNR is exact and cheap from the histogram; SSIM and mean ΔE2000 only when asked for
(``figures=True``), as they cost more than the quantisation.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..colorkeys import color_keys, keys_to_rgb
from ..errors import SegmentError, printable
from .histfit import SPEEDS, lloyd, order_palette, seed_centres, split_centres
from .histogram import binned, count_colours, map_pixels, nearest_colour

MAX_COLOURS = 256
#: pngquant's exit statuses, which ``segment quantize`` shares.
EXIT_QUALITY = 99
EXIT_LARGER = 98


class QualityTooLow(SegmentError):
    """Even the largest palette cannot reach the minimum quality (exit status 99)."""

    exit_code = EXIT_QUALITY


class OutputLarger(SegmentError):
    """``skip_if_larger`` and the result is larger than the input (exit status 98)."""

    exit_code = EXIT_LARGER


@dataclass
class Histogram:
    """An 8-bit image's colours: ``keys_image`` (H, W) uint32, the distinct ``keys`` with
    their ``counts``, and the ``visible`` mask (None: all visible)."""

    keys_image: np.ndarray
    keys: np.ndarray
    counts: np.ndarray
    visible: np.ndarray | None

    @classmethod
    def of(cls, pixels8, visible=None):
        keys_image = color_keys(pixels8)
        keys, counts = count_colours(keys_image.ravel() if visible is None else keys_image[visible])
        return cls(keys_image, keys, counts, visible)

    def colours(self):
        return keys_to_rgb(self.keys, np.float32)

    def sse(self, palette, index=None):
        """Squared error (0–255 units, summed over pixels and channels) of the nearest
        mapping, and the index of each distinct colour."""
        rgb = self.colours()
        if index is None:
            index = nearest_colour(rgb, palette)
        d = rgb - np.asarray(palette, np.float32)[index]
        return float(self.counts @ (d.astype(np.float64) ** 2).sum(axis=1)), index

    def psnr(self, sse):
        n = 3.0 * float(self.counts.sum())
        return float("inf") if sse <= 0 else 10.0 * math.log10(255.0**2 * n / sse)


def posterize_palette(palette, bits):
    """Palette colours with ``8 - bits`` significant bits per channel (pngquant's
    ``--posterize``), the levels spread over 0–255."""
    if not bits:
        return np.asarray(palette, np.uint8)
    levels = (1 << (8 - bits)) - 1
    q = np.rint(np.asarray(palette, np.float64) * levels / 255.0)
    return np.rint(q * 255.0 / levels).astype(np.uint8)


def fit_palette(hist, k, *, speed=4, seed=0, max_iter=None, tol=1e-4, posterize=0):
    """A palette of at most ``k`` colours for a :class:`Histogram`.

    The work per Lloyd iteration grows with k (up to the candidate grid's width), so small
    palettes (k <= 32) are fitted on cells twice as coarse, with more iterations and extra
    starts (weighted k-means++ seeds besides the variance splits; the lowest squared error
    wins), then polished by Lloyd iterations on cells 4× finer: local optima and the
    cells' coarseness matter most with few colours.

    Returns
    -------
    ndarray (P, 3) uint8, distinct colours ordered dark to light (P <= k).
    """
    bits, iters, small_iters, polish = SPEEDS[speed]
    few = k <= 32
    # Few colours lose little to cells twice as coarse (K = 16: 0.01 dB against 4-level cells
    # on the sample photos), whose fewer rows pay for the extra starts.
    bits = min(4, bits + (few and bits > 0))
    if len(hist.keys) <= k and not posterize:
        return order_palette(hist.colours().astype(np.uint8))
    # A polishing iteration costs more as k passes the dense nearest-colour search (k > 24),
    # and extra starts help little beyond k = 16 (none at k = 32 on the sample photos).
    polish = polish * 16 // max(k, 16)
    if max_iter is None:
        max_iter = small_iters if few else iters
    else:
        polish = min(polish, max_iter)
    starts = 1 if speed >= 7 or not few else min(8 if speed <= 4 else 3, 2048 // k**2)
    rows, weight = binned(hist.keys, hist.counts, bits)
    rng = None  # made only for a second start: importing numpy.random costs start-up time
    best, best_sse = None, np.inf
    for start in range(starts):
        if start == 0:
            centres = split_centres(rows, weight, k)
        elif len(rows) > k:
            rng = np.random.default_rng(seed) if rng is None else rng
            centres = seed_centres(rows, weight, k, rng)
        else:
            break
        centres, sse = lloyd(rows, weight, centres, max_iter=max_iter, tol=tol)
        if sse < best_sse:
            best, best_sse = centres, sse
    if few and polish and bits > 0:
        rows, weight = binned(hist.keys, hist.counts, max(0, bits - 2))
        best, _ = lloyd(rows, weight, best, max_iter=polish, tol=tol)
    pal = np.clip(np.rint(best), 0, 255).astype(np.uint8)
    return order_palette(posterize_palette(pal, posterize))


def smallest_k_reaching(hist, k_max, target_db, fit):
    """The smallest k <= ``k_max`` whose PSNR reaches ``target_db`` (bisection over k, as
    PSNR grows with k almost monotonically); None when even ``k_max`` does not.

    Returns (k, palette, sse, index, tried) with ``tried`` a list of (k, PSNR)."""
    tried = []
    cache = {}

    def attempt(k):
        if k not in cache:
            pal = fit(k)
            sse, index = hist.sse(pal)
            cache[k] = (pal, sse, index)
            tried.append((k, hist.psnr(sse)))
        return hist.psnr(cache[k][1]) >= target_db

    if not attempt(k_max):
        return None, *cache[k_max], tried
    lo, hi = 0, k_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    return hi, *cache[hi], tried


def parse_quality(text):
    """``"MIN-MAX"`` or ``"MAX"`` (PSNR in dB) → (min or None, max)."""
    if text is None:
        return None
    raw = str(text).strip()
    lo, sep, hi = raw.partition("-")
    try:
        lo, hi = (None, float(lo)) if not sep else (float(lo), float(hi))
    except ValueError:
        raise SegmentError(
            f"--quality must be MAX or MIN-MAX in dB of PSNR (e.g. 35 or 30-40); got {raw!r}."
        ) from None
    for v in (lo, hi):
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise SegmentError(f"--quality values must be positive dB; got {raw!r}.")
    if lo is not None and lo > hi:
        raise SegmentError(f"--quality MIN-MAX needs MIN <= MAX; got {raw!r}.")
    return lo, hi


def read_palette(path):
    """Colours (P, 3) uint8 of a palette file, in its order: a palette image's entries, or
    the distinct colours of any other image in raster order of first appearance."""
    from PIL import Image as PILImage

    from ..imageio.read import load_image

    path = Path(path)
    try:
        with PILImage.open(path) as im:
            if im.mode == "P":
                pal = np.array(im.getpalette("RGB"), dtype=np.uint8).reshape(-1, 3)
                return _checked_palette(pal[: max(1, len(pal))], path)
    except (OSError, ValueError):
        pass
    image = load_image(path)
    px = image.pixels
    if px.dtype != np.uint8:
        raise SegmentError(f"{path.name}: a palette file must be an 8-bit image.")
    keys, first = np.unique(color_keys(px).ravel(), return_index=True)
    return _checked_palette(keys_to_rgb(keys[np.argsort(first)], np.uint8), path)


def _checked_palette(pal, path):
    if len(pal) > MAX_COLOURS:
        raise SegmentError(
            f"{path.name}: a palette has at most 256 colours; this image has {len(pal)}."
        )
    return pal


def refuse_missing_channels(image, path):
    """SegmentError when some pixels of ``image`` miss channels (NaN): a palette image
    needs every channel."""
    if image.pixels.dtype.kind == "f" and np.isnan(image.pixels).any():
        n = int(np.isnan(image.pixels).any(axis=2).sum())
        raise SegmentError(
            f"{printable(path)}: {n} pixel(s) miss some channels (NaN); a palette image needs "
            "every channel: fill them first (segment fill IMAGE -o FILLED.tif)."
        )


def to_uint8(pixels):
    """8-bit pixels of any depth (rounded; a palette PNG is 8-bit)."""
    p = np.asarray(pixels)
    if p.dtype == np.uint8:
        return p
    scale = 65535.0 if p.dtype == np.uint16 else 1.0
    return np.clip(np.rint(p.astype(np.float32) * (255.0 / scale)), 0, 255).astype(np.uint8)


def quantize_pixels(
    pixels8,
    visible=None,
    *,
    k=16,
    quality=None,
    dither=0.0,
    speed=4,
    seed=0,
    max_iter=None,
    tol=1e-4,
    posterize=0,
    palette=None,
):
    """Quantise an (H, W, 3) uint8 image.

    Parameters
    ----------
    pixels8 : ndarray (H, W, 3) uint8
    visible : ndarray (H, W) bool, optional
    k : int
        Colours (the largest tried with ``quality``).
    quality : (float or None, float), optional
        (MIN, MAX) PSNR in dB: the smallest k reaching MAX; :class:`QualityTooLow` when
        even k cannot reach MIN.
    dither : float in [0, 1]
        Strength of the adaptive error diffusion (0: none).
    speed : int in 1..10
        1 is slowest and best, 10 fastest.
    posterize : int in 0..4
        Bits of precision taken off the palette colours.
    palette : ndarray (P, 3) uint8, optional
        Map onto this palette, in its order, instead of fitting one.

    Returns
    -------
    indices : ndarray (H, W) uint8
    palette : ndarray (P, 3) uint8
    info : dict
        ``k``, ``psnr_db`` (undithered mapping for targets; of the written image otherwise),
        ``search``, ``reached``.
    """
    hist = Histogram.of(pixels8, visible)
    if len(hist.keys) == 0:
        raise SegmentError("no pixel is visible; there is nothing to quantise.")
    info = {"search": None, "reached": None}

    def fit(kk):
        return fit_palette(
            hist, kk, speed=speed, seed=seed, max_iter=max_iter, tol=tol, posterize=posterize
        )

    if palette is not None:
        pal = np.asarray(palette, np.uint8)
        sse, index = hist.sse(pal)
        info["k"] = len(pal)
    elif quality is not None:
        q_min, q_max = quality
        best, pal, sse, index, tried = smallest_k_reaching(hist, k, q_max, fit)
        info["search"] = [{"k": kk, "psnr_db": p, "reached": p >= q_max} for kk, p in tried]
        info["reached"] = best is not None
        if best is None and q_min is not None and hist.psnr(sse) < q_min:
            raise QualityTooLow(
                f"quality too low: the largest palette (k={k}) gives PSNR "
                f"{hist.psnr(sse):.2f} dB, below the minimum {q_min:g} dB; nothing written."
            )
        info["k"] = k if best is None else best
    else:
        pal = fit(k)
        sse, index = hist.sse(pal)
        info["k"] = k
    info["psnr_undithered_db"] = hist.psnr(sse)
    indices = map_pixels(hist.keys_image, hist.keys, index.astype(np.uint8), visible)
    info["psnr_db"] = info["psnr_undithered_db"]
    if dither > 0:
        from .diffusion import adaptive_dither

        indices = adaptive_dither(pixels8, pal, dither, visible=visible, nearest=indices)
        info["psnr_db"] = image_psnr(pixels8, pal[indices], visible)
    return indices, pal, info


def image_psnr(a, b, visible=None, rows=256):
    """PSNR (dB) of two (H, W, 3) uint8 images over the visible pixels, strip by strip."""
    sse, n = 0.0, 0
    for y in range(0, a.shape[0], rows):
        d = a[y : y + rows].astype(np.int32) - b[y : y + rows]
        d2 = (d * d).sum(axis=2)
        if visible is not None:
            d2 = d2[visible[y : y + rows]]
        sse += float(d2.sum())
        n += d2.size
    return float("inf") if sse == 0 else 10.0 * math.log10(255.0**2 * 3.0 * n / sse)


def elapsed(t0):
    return time.perf_counter() - t0
