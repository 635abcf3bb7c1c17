"""The search for the smallest number of colours that reaches a quality target (a PSNR in
dB, a mean ΔE), with every palette tried kept as a :class:`Candidate`."""

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SegmentError
from ..features import rows_per_strip, strips
from ..metrics import as_unit_float, image_figures, row_figures
from .mapping import BLOCK_ROWS, NearestColour, PaletteImage, dither_indices, nearest_palette
from .palette import PaletteFit, fit_palette


@dataclass
class Candidate:
    """One palette tried: its figures, and what is needed to write it."""

    k: int
    fit: PaletteFit
    figures: dict
    row_indices: np.ndarray | None = None  # nearest colour of each feature row
    indices: np.ndarray | None = None  # (H, W) palette indices (dithered)


class Quantizer:
    """Fits, maps and judges palettes for one image (shared by the fixed-k and search
    paths)."""

    def __init__(self, pixels, data, *, dither, lloyd, fit_options, on_iteration):
        self.pixels = pixels
        self.data = data
        self.dither = dither
        self.lloyd = lloyd
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
            lloyd=self.lloyd,
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
        for a, b in strips(H, rows_per_strip(W, BLOCK_ROWS), min_last=4):
            rgb = np.clip(as_unit_float(self.pixels[a:b]).reshape(-1, 3), 0.0, 1.0)
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


def meets_target(figures, quality, max_delta_e):
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


def not_reached_note(chosen, quality, max_delta_e):
    wanted = [f"PSNR >= {quality:g} dB"] if quality is not None else []
    wanted += [f"mean ΔE <= {max_delta_e:g}"] if max_delta_e is not None else []
    f = chosen.figures
    return (
        f"target not reached: the largest palette tried (k={chosen.k}) gives PSNR "
        f"{f['psnr_db']:.2f} dB and mean ΔE {f['delta_e']:.2f}; wanted {' and '.join(wanted)}."
    )


def check_target(name, value, minimum, strict):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SegmentError(f"{name} must be a finite number; got {value!r}.")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise SegmentError(f"{name} must be {op} {minimum:g}; got {value:g}.")
    return float(value)
