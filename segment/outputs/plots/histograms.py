"""What the density figure draws of the data, as histograms of the rows the fit already has
(an image's distinct colours weighted by their pixel counts, or the fitted sample): bin edges
per feature, each feature's weighted histogram, and for each pair of features a weighted 2-D
histogram with the weighted mean colour of every cell, drawn as one image.

Their cost grows with the rows (a few bincounts), not with the pixels, and the figure draws
one image per pair panel instead of a point per row.
"""

import math

import numpy as np

#: Above this many rows the bins are not fitted to the distinct values (a sort of them all).
UNIQUE_LIMIT = 4_000_000


def feature_edges(values, *max_bins):
    """Bin edges over the range of ``values``, one array for each number of bins asked.

    The edges are uniform. The number of bins follows the number of distinct values
    (square-root rule, at most ``max_bins``), not the number of rows, so unique colours
    weighted by their counts get the same bins as the pixels themselves. Quantised features
    (8-bit colours: multiples of 1/255) get edges half-way between the levels and the same
    number of levels in every bin; edges at arbitrary places would catch 3 levels in one bin
    and 4 in the next and draw a false comb pattern.
    """
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        half = max(abs(lo) * 1e-3, 1e-6)
        return [np.array([lo - half, hi + half]) for _ in max_bins]
    if values.size > UNIQUE_LIMIT:
        return [np.linspace(lo, hi, m + 1) for m in max_bins]
    levels = np.unique(values)
    if levels.size <= 4096:
        step = float(np.min(np.diff(levels)))
        ratio = (levels - lo) / step
        if np.allclose(ratio, np.round(ratio), atol=1e-3):
            n_levels = round((hi - lo) / step) + 1
            out = []
            for m in max_bins:
                per_bin = math.ceil(n_levels / m)
                n_edges = math.ceil(n_levels / per_bin) + 1
                out.append(lo - step / 2 + per_bin * step * np.arange(n_edges))
            return out
    return [np.linspace(lo, hi, int(np.clip(math.sqrt(levels.size), 8, m)) + 1) for m in max_bins]


def bin_index(values, edges):
    """Bin of each value for uniform ``edges`` (values outside go to the first or last bin,
    the upper edge belongs to the last bin, as in ``np.histogram``)."""
    n_bins = len(edges) - 1
    scale = n_bins / (float(edges[-1]) - float(edges[0]))
    index = np.floor((np.asarray(values, dtype=np.float64) - float(edges[0])) * scale)
    return np.clip(index, 0, n_bins - 1).astype(np.intp)


def pair_histogram(x, y, x_edges, y_edges, weight=None, colours=None):
    """Weighted 2-D histogram of the rows (x, y) and the weighted mean colour of each cell.

    Parameters
    ----------
    x, y : ndarray (n,)
    x_edges, y_edges : ndarray
        Uniform bin edges (:func:`feature_edges`).
    weight : ndarray (n,), optional
        Row weights (pixel counts); 1 each if None.
    colours : ndarray (n, 3), optional
        RGB in [0, 1] of each row.

    Returns
    -------
    mass : ndarray (len(y_edges) - 1, len(x_edges) - 1) float64
        Summed weights per cell, rows along y (an image with ``origin="lower"``).
    mean_colour : ndarray (ny, nx, 3) float64 or None
        Weighted mean colour of each cell (0 where the cell is empty); None without
        ``colours``.
    """
    nx, ny = len(x_edges) - 1, len(y_edges) - 1
    cell = bin_index(y, y_edges) * nx + bin_index(x, x_edges)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    mass = np.bincount(cell, weights=w, minlength=nx * ny).astype(np.float64)
    if colours is None:
        return mass.reshape(ny, nx), None
    mean = np.zeros((nx * ny, 3))
    filled = mass > 0
    for c in range(3):
        part = colours[:, c] if w is None else w * colours[:, c]
        total = np.bincount(cell, weights=part, minlength=nx * ny)
        mean[filled, c] = total[filled] / mass[filled]
    return mass.reshape(ny, nx), np.clip(mean, 0.0, 1.0).reshape(ny, nx, 3)


def density_image(mass, mean_colour=None, grey=0.54):
    """RGBA image (ny, nx, 4) of a 2-D histogram: each filled cell in its mean colour (or
    grey), more opaque where more rows fall, on a log scale (a photo's few large flat areas
    would otherwise hide the rest); empty cells transparent."""
    rgba = np.zeros((*mass.shape, 4))
    filled = mass > 0
    if not filled.any():
        return rgba
    rgba[..., :3] = grey if mean_colour is None else mean_colour
    smallest, largest = float(mass[filled].min()), float(mass.max())
    level = np.log1p(mass[filled] / smallest) / math.log1p(largest / smallest)
    rgba[filled, 3] = 0.15 + 0.6 * level
    return rgba
