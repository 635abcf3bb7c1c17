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

from dataclasses import dataclass

import numpy as np

from .errors import SegmentError

COLOR_SPACES = ("rgb", "lab")
FEATURE_NAMES = {"rgb": ("R", "G", "B"), "lab": ("L*", "a*", "b*")}


def check_space(space):
    if space not in COLOR_SPACES:
        raise SegmentError(f"unknown colour space {space!r}; use one of {', '.join(COLOR_SPACES)}.")
    return space


def rgb_to_features(rgb, space):
    """(n, 3) RGB in [0, 1] → (n, 3) float32 features of ``space``."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if space == "rgb":
        return rgb
    from skimage.color import rgb2lab

    return rgb2lab(rgb[None, :, :].astype(np.float64))[0].astype(np.float32)


def features_to_rgb(features, space):
    """Colour part of features (n, >=3) → (n, 3) RGB in [0, 1], clipped."""
    f = np.asarray(features, dtype=np.float64)[:, :3]
    if space == "lab":
        from skimage.color import lab2rgb

        f = lab2rgb(f[None, :, :])[0]
    return np.clip(f, 0.0, 1.0)


def rgb_to_uint8(rgb01):
    return np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)


def color_keys(pixels8, *, block=1 << 20):
    """24-bit keys (H, W) uint32 of an (H, W, 3) uint8 image, built in blocks of rows so
    that no full-size temporary is made."""
    H, W, _ = pixels8.shape
    keys = np.empty((H, W), dtype=np.uint32)
    rows = max(1, block // max(W, 1))
    for a in range(0, H, rows):
        p = pixels8[a : a + rows]
        k = keys[a : a + rows]
        np.left_shift(p[..., 0], 16, out=k, dtype=np.uint32)
        k |= np.left_shift(p[..., 1], 8, dtype=np.uint32)
        k |= p[..., 2]
    return keys


def keys_to_rgb8(keys):
    keys = np.asarray(keys, dtype=np.uint32)
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=-1).astype(np.uint8)


@dataclass
class PixelData:
    """An image's pixels made ready for the mixture, and the way back to pixels.

    Exactly one of two layouts:

    - ``pixels8`` (H, W, 3) uint8 and ``unique_keys`` (M,) sorted: the rows of ``X`` are the
      distinct colours of the visible pixels, ``weight`` their pixel counts; a pixel finds
      its row through its colour key;
    - ``pixels8`` None: the rows of ``X`` are the visible pixels in row-major order,
      ``weight`` None.

    Attributes
    ----------
    X : ndarray (M, D) float32
        Feature rows the mixture sees.
    weight : ndarray (M,) or None
    rgb : ndarray (M, 3) float32
        RGB in [0, 1] of each row (for colour statistics and plots).
    visible : ndarray (H, W) bool or None
        None when every pixel is visible.
    shape : (H, W)
    space : str
    xy : float
        Weight of the position features (0: none).
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

    @property
    def n_pixels(self):
        return int(self.shape[0] * self.shape[1] if self.visible is None else self.visible.sum())

    @property
    def deduplicated(self):
        return self.pixels8 is not None

    def scatter(self, row_values, fill, *, block=1 << 20):
        """Per-row values → an (H, W, ...) array over the image, ``fill`` where invisible.

        With distinct colours, the values go through a lookup table indexed by colour key,
        built block by block of image rows so that no full-size key array is needed.
        """
        row_values = np.asarray(row_values)
        H, W = self.shape
        tail = row_values.shape[1:]
        if self.deduplicated:
            lut = np.zeros((1 << 24, *tail), dtype=row_values.dtype)
            lut[self.unique_keys] = row_values
            out = np.empty((H, W, *tail), dtype=row_values.dtype)
            rows = max(1, block // max(W, 1))
            for a in range(0, H, rows):
                out[a : a + rows] = lut[color_keys(self.pixels8[a : a + rows])]
            del lut
            if self.visible is not None:
                out[~self.visible] = fill
            return out
        out = np.full((H, W, *tail), fill, dtype=row_values.dtype)
        if self.visible is None:
            out.reshape(H * W, *tail)[:] = row_values
        else:
            out[self.visible] = row_values
        return out


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


def _to_unit_rgb(pixels):
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return pixels.astype(np.float32, copy=False)


def pixel_data(image, *, space="rgb", xy=0.0, dedup=True):
    """Features of an image's visible pixels.

    Parameters
    ----------
    image : segment.io.Image
        ``pixels`` (H, W, 3) uint8, uint16 or float32 in [0, 1]; ``alpha`` (H, W) bool or None.
    space : {"rgb", "lab"}
    xy : float
        Weight of the (x, y) position features; 0 for colour only.
    dedup : bool
        Fit on distinct colours weighted by counts where that is exact (8-bit, no xy).

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
        raise SegmentError(
            f"{image.path}: every pixel is fully transparent; there is nothing to segment."
        )
    if dedup and xy == 0 and pixels.dtype == np.uint8:
        unique_keys, counts = distinct_colors(pixels, visible)
        rgb = keys_to_rgb8(unique_keys).astype(np.float32) / 255.0
        X = rgb_to_features(rgb, space)
        return PixelData(
            X, counts.astype(np.float64), rgb, visible, (H, W), space, 0.0, pixels, unique_keys
        )
    rgb = _to_unit_rgb(pixels).reshape(H * W, 3)
    if visible is not None:
        rgb = rgb[visible.ravel()]
    X = rgb_to_features(rgb, space)
    if xy:
        rows, cols = np.divmod(np.arange(H * W, dtype=np.int64), W)
        if visible is not None:
            rows, cols = rows[visible.ravel()], cols[visible.ravel()]
        scale = np.float32(xy / max(H, W))
        X = np.column_stack([X, cols.astype(np.float32) * scale, rows.astype(np.float32) * scale])
    return PixelData(
        np.ascontiguousarray(X, dtype=np.float32), None, rgb, visible, (H, W), space, float(xy)
    )
