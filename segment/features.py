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


def color_keys(pixels8):
    """24-bit keys (H, W) uint32 of an (H, W, 3) uint8 image."""
    p = pixels8
    keys = p[..., 0].astype(np.uint32) << 16
    keys |= p[..., 1].astype(np.uint32) << 8
    keys |= p[..., 2]
    return keys


def keys_to_rgb8(keys):
    keys = np.asarray(keys, dtype=np.uint32)
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=-1).astype(np.uint8)


@dataclass
class PixelData:
    """An image's pixels made ready for the mixture, and the way back to pixels.

    Exactly one of two layouts:

    - ``keys`` (H, W) uint32 and ``unique_keys`` (M,): the rows of ``X`` are the distinct
      colours of the visible pixels, ``weight`` their pixel counts;
    - ``keys`` None: the rows of ``X`` are the visible pixels in row-major order, ``weight``
      None.

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
    keys: np.ndarray | None = None
    unique_keys: np.ndarray | None = None

    @property
    def n_pixels(self):
        return int(self.shape[0] * self.shape[1] if self.visible is None else self.visible.sum())

    @property
    def deduplicated(self):
        return self.keys is not None

    def scatter(self, row_values, fill):
        """Per-row values → an (H, W, ...) array over the image, ``fill`` where invisible."""
        row_values = np.asarray(row_values)
        if self.deduplicated:
            lut_dtype = row_values.dtype
            lut = np.empty((1 << 24, *row_values.shape[1:]), dtype=lut_dtype)
            lut[self.unique_keys] = row_values
            out = lut[self.keys]
            if self.visible is not None:
                out[~self.visible] = fill
            return out
        H, W = self.shape
        out = np.full((H, W, *row_values.shape[1:]), fill, dtype=row_values.dtype)
        if self.visible is None:
            out.reshape(H * W, *row_values.shape[1:])[:] = row_values
        else:
            out[self.visible] = row_values
        return out


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
        keys = color_keys(pixels)
        vis_keys = keys if visible is None else keys[visible]
        counts = np.bincount(vis_keys.ravel(), minlength=1 << 24)
        del vis_keys
        unique_keys = np.flatnonzero(counts).astype(np.uint32)
        weight = counts[unique_keys].astype(np.float64)
        del counts
        rgb = keys_to_rgb8(unique_keys).astype(np.float32) / 255.0
        X = rgb_to_features(rgb, space)
        return PixelData(X, weight, rgb, visible, (H, W), space, 0.0, keys, unique_keys)
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
