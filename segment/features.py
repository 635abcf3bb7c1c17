"""Pixels to feature vectors and back.

Features are RGB in [0, 1] (``space="rgb"``) or CIELAB (``space="lab"``, L in [0, 100]),
optionally followed by the pixel's position (x, y) / max(H, W) times a weight, which pulls
the segments towards spatially compact regions.

For 8-bit images without position features the fit runs on the *distinct* colours with their
pixel counts as weights: EM on them is exactly EM on all pixels (a weighted sum over a colour
equals the sum over its pixels), and photos have 2–10× fewer distinct colours than pixels.
A colour is then carried by its 24-bit key ``r << 16 | g << 8 | b``, which is also how a
pixel's label is looked up after the fit.
"""

import contextlib
import itertools
from dataclasses import dataclass

import numpy as np

from gmm import ChunkSource

from .color import check_space, rgb_to_features
from .colorkeys import color_keys, keys_to_rgb
from .errors import SegmentError

FEATURE_NAMES = {"rgb": ("R", "G", "B"), "lab": ("L*", "a*", "b*")}

#: Why an image (or a frame) with no visible pixel is refused (or skipped).
NOTHING_TO_SEGMENT = "every pixel is fully transparent; there is nothing to segment"

#: Below this many pixels a colour's row is found by binary search in the sorted distinct
#: colours, above it through a 2^24-entry table (64 MB; ~0.25 s to build in fresh memory, as
#: long as a binary search over ~1.5 M pixels, and a lookup then costs ~1/10 of a search).
#: The labels look every pixel up two or three times within one pass (smoothing, region
#: statistics), so the table pays from about half a megapixel.
SEARCH_PIXELS = 1 << 19


def rows_per_strip(width, pixels, *, minimum=1):
    """Rows of an image ``width`` pixels wide that make a strip of about ``pixels`` pixels
    (at least ``minimum``)."""
    return max(minimum, int(pixels) // max(width, 1))


def strips(height, rows, *, min_last=1):
    """``(a, b)`` bounds of consecutive strips of ``rows`` image rows over ``height`` rows:
    the one way the project walks an image in strips. A last strip shorter than
    ``min_last`` rows joins the one before (an SSIM window needs 4 rows of its own)."""
    edges = [*range(0, height, max(1, int(rows))), height]
    if len(edges) > 2 and edges[-1] - edges[-2] < min_last:
        del edges[-2]
    return list(itertools.pairwise(edges))


@dataclass
class PixelData:
    """An image's pixels made ready for the mixture, and the way back to pixels.

    The rows ``X`` the mixture is fitted on are one of:

    - the distinct colours of the visible pixels (``deduplicated``), ``weight`` their pixel
      counts: exact, for 8-bit images without position features;
    - the visible pixels in row-major order, ``weight`` None;
    - a uniform sample of the visible pixels (``sampled``), ``weight`` None, when there are
      more than the row budget: then every pass over *all* pixels (labels, figures, polish
      iterations) computes their features strip by strip from the image itself.

    Attributes
    ----------
    X : ndarray (M, D) float32
        Feature rows the mixture is fitted on.
    weight : ndarray (M,) or None
    rgb : ndarray (M, 3) float32
        RGB in [0, 1] of each row of ``X``.
    visible : ndarray (H, W) bool or None
        None when every pixel is visible.
    shape : (H, W)
    space : str
    xy : float
        Weight of the position features (0: none).
    pixels8 : ndarray (H, W, 3) uint8 or None
        The image, when it is 8-bit and its colours map to feature rows through
        ``unique_keys`` / ``color_X`` (a fit on distinct colours, or CIELAB features).
    unique_keys : ndarray (C,) uint32 or None
        Sorted distinct colour keys of the visible pixels (8-bit images).
    pixels : ndarray (H, W, 3) or None
        The image otherwise (uint8, uint16, or float32 in [0, 1]): features are computed
        from it directly.
    color_X : ndarray (C, 3) float32 or None
        Colour features of each distinct colour (8-bit images).
    sampled : bool
    """

    X: np.ndarray
    weight: np.ndarray | None
    rgb: np.ndarray
    visible: np.ndarray | None
    shape: tuple
    space: str
    xy: float
    pixels8: np.ndarray | None = None
    unique_keys: np.ndarray | None = None
    pixels: np.ndarray | None = None
    color_X: np.ndarray | None = None
    sampled: bool = False
    _lut: np.ndarray | None = None
    _lut_users: int = 0
    _color_XT: np.ndarray | None = None
    _grid: tuple | None = None

    @property
    def n_pixels(self):
        return int(self.shape[0] * self.shape[1] if self.visible is None else self.visible.sum())

    @property
    def deduplicated(self):
        """Whether the rows of ``X`` are the image's distinct colours."""
        return self.pixels8 is not None and self.xy == 0 and not self.sampled

    @property
    def n_features(self):
        """Colour features, and two for the position when ``xy`` is set."""
        return 3 + (2 if self.xy else 0)

    # -- strips of image rows ----------------------------------------------------------

    def colour_rows(self, a, b, step=1):
        """Row of ``color_X`` (the distinct colours) of every pixel of image rows a:b:step,
        columns ::step: (rows, cols) int32 (8-bit images with ``color_X`` only; invisible
        pixels get an arbitrary row)."""
        if self._grid is not None and step == self._grid[0] and a % step == 0:
            return self._grid[1][a // step : a // step + len(range(a, b, step))]
        pixels8 = self.pixels8[a:b] if step == 1 else self.pixels8[a:b:step, ::step]
        lut = self._lut
        if lut is None and (self.shape[0] * self.shape[1] < SEARCH_PIXELS or not self._lut_users):
            # A small image, or a lookup outside a pass over the image: a binary search per
            # pixel costs less than building the table.
            keys = color_keys(pixels8)
            idx = np.searchsorted(self.unique_keys, keys)
            return np.minimum(idx, len(self.unique_keys) - 1).astype(np.int32)
        if lut is None:
            lut = np.zeros(1 << 24, dtype=np.int32)
            lut[self.unique_keys] = np.arange(len(self.unique_keys), dtype=np.int32)
            self._lut = lut  # kept for the rest of the pass
        return lut[color_keys(pixels8)]

    @contextlib.contextmanager
    def strip_pass(self):
        """A pass over the strips of the image: the colour-to-row lookup table of an 8-bit
        image (2^24 int32, 64 MiB) is built once for the pass and freed when the outermost
        pass ends. Outside a pass, colours are looked up by binary search."""
        self._lut_users += 1
        try:
            yield self
        finally:
            self._lut_users -= 1
            if not self._lut_users:
                self._lut = None

    @contextlib.contextmanager
    def grid_lookup(self, step):
        """Within the block, :meth:`colour_rows` of the grid of ``step`` (rows a:b:step
        from a multiple of ``step``, columns ::step) reads the rows of the grid's pixels
        looked up on entry through the table of the pass, if one holds it (the pass may
        then end), instead of by a binary search per pixel later. Invisible pixels get the
        arbitrary row a search gives them."""
        if step > 1 and self._lut is not None:
            rows = self.colour_rows(0, self.shape[0], step)
            if self.visible is not None:
                hidden = ~self.visible[::step, ::step]
                keys = color_keys(self.pixels8[::step, ::step][hidden])
                found = np.searchsorted(self.unique_keys, keys)
                rows[hidden] = np.minimum(found, len(self.unique_keys) - 1)
            rows.flags.writeable = False
            self._grid = (step, rows)
        try:
            yield self
        finally:
            self._grid = None

    def strip_rgb(self, a, b):
        """Colours (b-a, W, 3) float32 in [0, 1] of image rows [a, b)."""
        return _to_unit_rgb(self.pixels[a:b] if self.pixels8 is None else self.pixels8[a:b])

    def colour_features(self, a, b, step=1):
        """Colour features (rows, cols, 3) float32 of image rows a:b:step, columns ::step:
        looked up in ``color_X`` when the image's distinct colours have them (no conversion
        per pixel), else converted from the pixels."""
        if self.pixels8 is not None and self.color_X is not None and self.space != "rgb":
            rows = self.colour_rows(a, b, step)
            return np.take(self.color_X, rows, axis=0)
        return rgb_to_features(
            self.strip_rgb(a, b)[::step, ::step].reshape(-1, 3), self.space
        ).reshape(-(-(b - a) // step), -(-self.shape[1] // step), 3)

    def colour_planes(self, a, b, step=1):
        """:meth:`colour_features` as channel planes (3, rows, cols) float32 (the same
        values): one 1-D take per channel from the distinct colours' table."""
        if self.pixels8 is None or self.color_X is None or self.space == "rgb":
            return np.ascontiguousarray(np.moveaxis(self.colour_features(a, b, step), -1, 0))
        rows = self.colour_rows(a, b, step).astype(np.intp)
        out = np.empty((3, *rows.shape), dtype=np.float32)
        for c in range(3):  # the table's columns copied per call: none kept beside it
            np.take(np.ascontiguousarray(self.color_X[:, c]), rows, out=out[c])
        return out

    def strip_features(self, a, b):
        """Features ((b-a) W, D) float32 of every pixel of image rows [a, b), invisible ones
        included (their values are meaningless), and the visible mask (b-a, W) or None.

        The array is column-major (a transposed (D, n) buffer): the E-step reads features
        as rows of length n, and each column is written here without a copy.
        """
        H, W = self.shape
        n = (b - a) * W
        out = np.empty((self.n_features, n), dtype=np.float32)
        if self.space == "rgb":  # the same values as ``color_X``, without a lookup
            pixels = self.pixels if self.pixels8 is None else self.pixels8
            _to_unit_rgb(pixels[a:b].reshape(-1, 3).T, out=out[:3])
        elif self.pixels8 is not None:
            if self._color_XT is None:
                self._color_XT = np.ascontiguousarray(self.color_X.T, dtype=np.float32)
            np.take(self._color_XT, self.colour_rows(a, b).ravel(), axis=1, out=out[:3])
        else:
            out[:3] = rgb_to_features(self.strip_rgb(a, b).reshape(-1, 3), self.space).T
        if self.xy:
            scale = np.float32(self.xy / max(H, W))
            out[3].reshape(b - a, W)[:] = np.arange(W, dtype=np.float32) * scale
            out[4].reshape(b - a, W)[:] = (np.arange(a, b, dtype=np.float32) * scale)[:, None]
        visible = None if self.visible is None else self.visible[a:b]
        return out.T, visible

    def pixel_source(self, budget_rows=1 << 18):
        """A chunk source over the features of all visible pixels (for passes over them all
        when ``X`` holds only a sample)."""
        return _PixelSource(self, budget_rows)

    def scatter(self, row_values, fill, *, block=1 << 20):
        """Per-row values of a deduplicated ``X`` → (H, W, ...) over the image (``fill``
        where invisible), through a lookup table indexed by colour key, block by block."""
        if not self.deduplicated:
            raise ValueError("scatter needs rows that are the image's distinct colours")
        row_values = np.asarray(row_values)
        H, W = self.shape
        tail = row_values.shape[1:]
        lut = np.zeros((1 << 24, *tail), dtype=row_values.dtype)
        lut[self.unique_keys] = row_values
        out = np.empty((H, W, *tail), dtype=row_values.dtype)
        for a, b in strips(H, rows_per_strip(W, block)):
            out[a:b] = lut[color_keys(self.pixels8[a:b])]
        del lut
        if self.visible is not None:
            out[~self.visible] = fill
        return out


class _PixelSource(ChunkSource):
    """Chunk source yielding the features of visible pixels, strip by strip."""

    def __init__(self, data, budget_rows):
        self.data = data
        self.n_features = data.n_features
        self.n_rows = data.n_pixels
        self.budget_rows = budget_rows

    def chunks(self, max_rows):
        d = self.data
        W = d.shape[1]
        with d.strip_pass():
            for a, b in strips(d.shape[0], rows_per_strip(W, self.budget_rows)):
                X, visible = d.strip_features(a, b)
                if visible is not None:
                    X = X[visible.ravel()]
                for s in range(0, X.shape[0], max_rows):
                    yield X[s : s + max_rows], None


def distinct_colors(pixels8, visible=None):
    """Sorted distinct 24-bit colour keys of the visible pixels, and their pixel counts.

    The keys are sorted in place (numpy's vectorised sort, no copy); invisible pixels get a
    key above 24 bits so that they sort last and are dropped.
    """
    keys = color_keys(pixels8).ravel()
    if visible is not None:
        keys[~visible.ravel()] = 1 << 24
    keys.sort()
    n = keys.shape[0] if visible is None else int(np.searchsorted(keys, 1 << 24))
    starts = np.empty(n, dtype=bool)
    if n:
        starts[0] = True
        np.not_equal(keys[1:n], keys[: n - 1], out=starts[1:])
    first = np.flatnonzero(starts)
    del starts
    unique = keys[first]
    counts = np.diff(np.append(first, n))
    return unique, counts


_UNIT_SCALE = {np.dtype(np.uint8): np.float32(255.0), np.dtype(np.uint16): np.float32(65535.0)}


def _to_unit_rgb(pixels, out=None):
    """Pixels (uint8, uint16 or float32 in [0, 1]) as float32 in [0, 1], into ``out`` if
    given (the same values either way: the division is in float32)."""
    scale = _UNIT_SCALE.get(pixels.dtype)
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    if scale is None:
        np.copyto(out, pixels, casting="same_kind")
    else:
        np.divide(pixels, scale, out=out)
    return out


def pixel_data(image, *, space="rgb", xy=0.0, dedup=True, max_rows=None, max_colors=None, seed=0):
    """Features of an image's visible pixels.

    Parameters
    ----------
    image : segment.imageio.Image
        ``pixels`` (H, W, 3) uint8, uint16 or float32 in [0, 1]; ``alpha`` (H, W) bool or None.
    space : {"rgb", "lab"}
    xy : float
        Weight of the (x, y) position features; 0 for colour only. Positions are divided by
        max(H, W) and multiplied by ``xy`` times the colour space's range (1 for RGB, 100
        for CIELAB), so a weight means the same in either space.
    dedup : bool
        Fit on distinct colours weighted by counts where that is exact (8-bit, no xy).
    max_rows : int or None
        Most pixel rows to fit on: more visible pixels than this are sampled uniformly
        (with ``seed``).
    max_colors : int or None
        Most distinct-colour rows: with more, the fit is on sampled pixels instead.

    Raises
    ------
    SegmentError
        If no pixel is visible.
    """
    check_space(space)
    pixels = image.pixels
    visible = image.alpha
    if visible is not None and visible.all():
        visible = None
    H, W = pixels.shape[:2]
    if visible is not None and not visible.any():
        raise SegmentError(f"{image.path}: {NOTHING_TO_SEGMENT}.")
    xy_weight = float(xy) * SPACE_RANGE[space]
    common = dict(visible=visible, shape=(H, W), space=space, xy=xy_weight)
    # Distinct colours serve two ends: an exact fit on them (8-bit, no position), and
    # CIELAB conversion once per colour instead of per pixel. For neither, the features
    # come straight from the pixels: no sort of all pixels, no 2^24 lookup table.
    colour_only = dedup and xy == 0
    if pixels.dtype == np.uint8 and (colour_only or space == "lab"):
        unique_keys, counts = distinct_colors(pixels, visible)
        if colour_only and (max_colors is None or len(unique_keys) <= max_colors):
            colours = keys_to_rgb(unique_keys, np.float32) / 255.0
            color_X = rgb_to_features(colours, space)
            color = dict(pixels8=pixels, unique_keys=unique_keys, color_X=color_X)
            return PixelData(color_X, counts.astype(np.float64), colours, **common, **color)
        del counts
    if pixels.dtype == np.uint8 and space == "lab":
        color_X = rgb_to_features(keys_to_rgb(unique_keys, np.float32) / 255.0, space)
        empty = np.empty((0, 3), np.float32)
        color = dict(pixels8=pixels, unique_keys=unique_keys, color_X=color_X)
        data = PixelData(empty, None, empty, **common, **color)
    else:
        empty = np.empty((0, 3), np.float32)
        data = PixelData(empty, None, empty, **common, pixels=pixels)
    return _fit_rows(data, max_rows, seed)


def _uniform_subset(n, m, rng):
    """``m`` distinct sorted indices of ``range(n)``, uniformly.

    Indices are drawn with replacement into a bitmap of n flags until at least m are set
    (O(m) draws; the flags cost n bytes, scanned in C), and the few above m are dropped at
    random: every m-subset is equally likely, by symmetry. ``Generator.choice(replace=
    False)`` would permute all n when m is a sizeable fraction of n, and sorting-based
    deduplication costs O(m log m) per round.
    """
    chosen = np.zeros(n, dtype=bool)
    count = 0
    while count < m:
        need = m - count
        chosen[rng.integers(0, n, size=need + need // 8 + 64)] = True
        count = int(np.count_nonzero(chosen))
    idx = np.flatnonzero(chosen)
    if len(idx) > m:
        idx = np.delete(idx, rng.choice(len(idx), size=len(idx) - m, replace=False))
    return idx


#: Range of the colour features of each space, which scales the position features.
SPACE_RANGE = {"rgb": 1.0, "lab": 100.0}


def quantisation_variance(space):
    """Variance of the rounding of 8-bit colours in ``space``'s units: one step of 1/255 of
    the space's range, as uniform noise (step² / 12).

    The mixture's covariances are regularised by it (``reg_covar``): the data hold no detail
    finer than one step, and a component on a clipped colour (pure black or white, many
    identical pixels) then has the spread of a step instead of collapsing onto a point.
    """
    return (SPACE_RANGE[space] / 255.0) ** 2 / 12.0


def _fit_rows(data, max_rows, seed):
    """Fill ``X`` / ``rgb`` with all visible pixels, or a uniform sample of ``max_rows``."""
    H, W = data.shape
    n = data.n_pixels
    if max_rows is None or n <= max_rows:
        xs, rgbs = [], []
        with data.strip_pass():
            for a, b in strips(H, rows_per_strip(W, 1 << 20)):
                X, visible = data.strip_features(a, b)
                rgb = data.strip_rgb(a, b).reshape(-1, 3)
                if visible is not None:
                    X, rgb = X[visible.ravel()], rgb[visible.ravel()]
                xs.append(X)
                rgbs.append(rgb)
        data.X = np.ascontiguousarray(np.concatenate(xs), dtype=np.float32)
        data.rgb = np.concatenate(rgbs)
        return data
    flat = None if data.visible is None else np.flatnonzero(data.visible)
    pick = _uniform_subset(n, max_rows, np.random.default_rng(seed))
    idx = pick if flat is None else flat[pick]
    data.sampled = True
    rows, cols = np.divmod(idx, W)
    if data.pixels8 is not None:
        keys = color_keys(data.pixels8[rows, cols])
        which = np.searchsorted(data.unique_keys, keys)
        colour, rgb = data.color_X[which], keys_to_rgb(keys, np.float32) / 255.0
    else:
        rgb = _to_unit_rgb(data.pixels[rows, cols])
        colour = rgb_to_features(rgb, data.space)
    if data.xy:
        scale = np.float32(data.xy / max(H, W))
        colour = np.column_stack(
            [colour, cols.astype(np.float32) * scale, rows.astype(np.float32) * scale]
        )
    data.X = np.ascontiguousarray(colour, dtype=np.float32)
    data.rgb = rgb
    return data
