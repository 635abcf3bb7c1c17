"""An 8-bit image's colour histogram, and exact nearest-palette mapping through it.

A photo of N pixels has far fewer distinct colours (2 MP: ~0.1–0.5 M), so everything that
depends only on a pixel's colour is computed once per distinct colour and looked up:

- :func:`count_colours` sorts the pixels' 24-bit keys ``r << 16 | g << 8 | b`` once and
  returns the distinct colours with their pixel counts (the exact histogram);
- :func:`binned` merges them into cells of ``8 - bits`` levels per channel, each cell
  carried by the mean of its colours (weighted): a fit on the cells is a fit on a few tens of
  thousands of rows, whatever the image size;
- :func:`nearest_colour` finds the nearest palette colour (Euclidean RGB, ties to the lower
  index, exactly as a brute-force ``argmin``) of many points: the RGB cube is cut into 16³
  cells, each with the palette colours that can be nearest to one of its points, and the
  points are handled cell by cell against those candidates only;
- :func:`map_pixels` writes the palette index of every pixel through a 2^24 table filled
  only at the image's colours.

Everything here is in 0–255 units; float32 arithmetic on integer colours is exact (sums of
squares stay below 2^24).
"""

import numpy as np

from ..colorkeys import keys_to_rgb

#: Palettes up to this size are compared with every point (the cell set-up costs more).
DENSE_MAX = 24
#: Levels per cell of the candidate grid, log2: coarse cells (fewer, with more candidates)
#: for few points, fine cells for many.
COARSE_SHIFT, FINE_SHIFT, FINE_FROM = 5, 4, 400_000
#: Rows per block of dense distance computations.
BLOCK = 1 << 15


def count_colours(flat_keys):
    """Distinct keys (sorted, uint32) and their counts (int64) of a flat key array."""
    s = np.sort(flat_keys)
    if len(s) == 0:
        return s, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.append(starts, len(s)))
    return s[starts], counts.astype(np.int64)


def binned(keys, counts, bits):
    """Merge distinct colours into cells of ``2**(8 - bits)`` levels per channel.

    Parameters
    ----------
    keys, counts : ndarray
        Distinct 24-bit keys and their counts (from :func:`count_colours`).
    bits : int
        Bits dropped per channel (0 keeps every colour).

    Returns
    -------
    rows : ndarray (m, 3) float64
        Count-weighted mean colour of each non-empty cell, 0–255 units.
    weight : ndarray (m,) float64
        Pixels in each cell.
    """
    rgb = keys_to_rgb(keys, np.float64)
    w = counts.astype(np.float64)
    if bits <= 0:
        return rgb, w
    mask = np.uint32((0xFF >> bits) << bits)
    cell = keys & np.uint32((mask << 16) | (mask << 8) | mask)
    # keys are sorted by (r, g, b), cells are not: group them with one stable sort.
    order = np.argsort(cell, kind="stable")
    cell = cell[order]
    starts = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
    weight = np.add.reduceat(w[order], starts)
    sums = np.add.reduceat(rgb[order] * w[order, None], starts, axis=0)
    return sums / weight[:, None], weight


def _dense(points, palette, out):
    p = palette.astype(np.float32)
    p2 = (p * p).sum(axis=1)
    for a in range(0, len(points), BLOCK):
        x = points[a : a + BLOCK].astype(np.float32)
        d = x @ (-2.0 * p.T)
        d += p2
        out[a : a + BLOCK] = np.argmin(d, axis=1)
    return out


def _candidates(palette, shift):
    """(G³, P) bool: colour j can be the nearest of some point of cell c.

    Per axis, the least and greatest distance of a colour to a cell's interval depends only
    on the cell's coordinate on that axis, so the G³×P tables are sums of three G×P ones.
    """
    G = 256 >> shift
    lo = (np.arange(G, dtype=np.float32) * (1 << shift))[:, None]
    hi = lo + (1 << shift)
    p = palette.astype(np.float32)
    dmin, dmax = [], []
    for axis in range(3):
        c = p[None, :, axis]
        dmin.append(np.maximum(0.0, np.maximum(lo - c, c - hi)) ** 2)
        dmax.append(np.maximum(np.abs(c - lo), np.abs(c - hi)) ** 2)
    dmin = dmin[0][:, None, None, :] + dmin[1][None, :, None, :] + dmin[2][None, None, :, :]
    dmax = dmax[0][:, None, None, :] + dmax[1][None, :, None, :] + dmax[2][None, None, :, :]
    bound = dmax.min(axis=3, keepdims=True)
    return (dmin <= bound).reshape(G**3, -1)


def nearest_colour(points, palette):
    """Index of the nearest palette colour of each point (ties to the lower index).

    Parameters
    ----------
    points : ndarray (n, 3)
        Colours in 0–255 units (uint8 or float in [0, 255]).
    palette : ndarray (P, 3)
        Palette colours in 0–255 units.

    Returns
    -------
    ndarray (n,) of intp
    """
    points = np.asarray(points)
    palette = np.asarray(palette)
    out = np.empty(len(points), dtype=np.intp)
    if len(palette) <= DENSE_MAX or len(points) < 4 * len(palette):
        return _dense(points, palette, out)
    shift = FINE_SHIFT if len(points) >= FINE_FROM else COARSE_SHIFT
    G = 256 >> shift
    cand = _candidates(palette, shift)
    ci = (
        np.minimum(points.astype(np.int32) >> shift, G - 1)
        if points.dtype.kind == "u"
        else (np.clip((np.asarray(points, np.float64) / (1 << shift)).astype(np.int32), 0, G - 1))
    )
    cell = (ci[:, 0] * G + ci[:, 1]) * G + ci[:, 2]
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_cells[1:] != sorted_cells[:-1])))
    ends = np.append(starts[1:], len(order))
    pts = points[order].astype(np.float32)
    pal = palette.astype(np.float32)
    p2 = (pal * pal).sum(axis=1)
    res = np.empty(len(order), dtype=np.intp)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        js = np.flatnonzero(cand[sorted_cells[a]])
        if len(js) == 1:
            res[a:b] = js[0]
            continue
        d = pts[a:b] @ (-2.0 * pal[js].T)
        d += p2[js]
        res[a:b] = js[np.argmin(d, axis=1)]
    out[order] = res
    return out


def map_pixels(keys_image, colour_keys_, colour_index, visible=None):
    """Palette index (H, W) uint8 of every pixel, from the index of each distinct colour.

    Parameters
    ----------
    keys_image : ndarray (H, W) uint32
        From :func:`colour_keys`.
    colour_keys_, colour_index : ndarray (n,)
        The distinct keys and their palette indices (< 256).
    visible : ndarray (H, W) bool, optional
        Invisible pixels get 0.
    """
    # np.empty's pages are only touched where the image's colours are written.
    table = np.empty(1 << 24, dtype=np.uint8)
    table[colour_keys_] = colour_index
    out = table[keys_image]
    if visible is not None:
        out[~visible] = 0
    return out
