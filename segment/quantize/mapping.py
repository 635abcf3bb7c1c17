"""Mapping pixels to a palette: the nearest colour (Euclidean RGB; for a given palette the
mapping with the least squared error), or Floyd–Steinberg error diffusion with
``dither``; :class:`PaletteImage` is the result without the RGB copy."""

import numpy as np

from ..errors import SegmentError

#: Rows per block of the row-wise work (nearest colour, Lab conversion).
BLOCK_ROWS = 65536


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


def unit_scale(dtype):
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
    scale = unit_scale(pixels.dtype)
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


class PaletteImage:
    """``palette[indices]`` read strip by strip, without building the whole RGB image."""

    def __init__(self, indices, palette):
        self.indices = indices
        self.palette = np.asarray(palette)
        self.shape = (*indices.shape, 3)

    def __getitem__(self, rows):
        return self.palette[self.indices[rows]]
