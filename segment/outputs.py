"""Output images, quality figures and the model file, all written atomically."""

import io as _io
import json
import math

import numpy as np
from PIL import Image as PILImage

from .io import atomic_write


def transparent_label(n_labels):
    """Label written for invisible (fully transparent) pixels in NAME.labels.png."""
    return 255 if n_labels <= 255 else 65535


def label_dtype(n_labels):
    return np.uint8 if n_labels <= 255 else np.uint16


def png_bytes(image, **params):
    buf = _io.BytesIO()
    image.save(buf, format="PNG", **params)
    return buf.getvalue()


def write_bytes(path, data, *, overwrite):
    with atomic_write(path, overwrite=overwrite) as f:
        f.write(data)
    return len(data)


def palette_image(indices, palette, visible=None):
    """A PIL image showing ``palette[indices]``; invisible pixels transparent.

    Uses a palette (mode P) PNG when the colours and a transparent entry fit in 256; an RGBA
    image otherwise.

    Parameters
    ----------
    indices : ndarray (H, W) of ints in [0, len(palette))
    palette : ndarray (P, 3) uint8
    visible : ndarray (H, W) bool or None
    """
    P = len(palette)
    need = P + (visible is not None)
    if need <= 256:
        idx = indices.astype(np.uint8, copy=False)
        if visible is not None:
            idx = np.where(visible, idx, np.uint8(P))
        im = PILImage.frombytes(
            "P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes()
        )
        flat = np.zeros((256, 3), dtype=np.uint8)
        flat[:P] = palette
        im.putpalette(flat.ravel().tolist())
        return im, {"transparency": P} if visible is not None else {}
    rgb = palette[indices]
    if visible is None:
        return PILImage.fromarray(rgb), {}
    alpha = np.where(visible, 255, 0).astype(np.uint8)
    return PILImage.fromarray(np.dstack([rgb, alpha])), {}


def write_palette_png(path, indices, palette, visible=None, *, overwrite=False):
    im, params = palette_image(indices, palette, visible)
    return write_bytes(
        path, png_bytes(im, optimize=False, compress_level=6, **params), overwrite=overwrite
    )


def write_labels_png(path, labels, n_labels, visible=None, *, overwrite=False):
    """The label map as 8-bit (K <= 255) or 16-bit grey PNG; invisible pixels get
    :func:`transparent_label`."""
    lab = labels.astype(label_dtype(n_labels), copy=False)
    if visible is not None:
        lab = np.where(visible, lab, transparent_label(n_labels)).astype(lab.dtype)
    return write_bytes(path, png_bytes(PILImage.fromarray(lab)), overwrite=overwrite)


def jsonable(obj):
    """``obj`` with non-finite floats replaced by None (JSON has no inf or NaN; an infinite
    PSNR means a lossless result)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path, data, *, overwrite=False):
    text = json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n"
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def psnr(rgb, approx, weight=None):
    """Peak signal-to-noise ratio in dB of ``approx`` against ``rgb`` (both (n, 3) in [0, 1]).

    ``weight`` (n,) counts each row that many times (distinct colours with pixel counts).
    """
    err = ((np.asarray(rgb, np.float64) - np.asarray(approx, np.float64)) ** 2).mean(axis=1)
    mse = float(np.average(err, weights=weight))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def write_image_png(path, pixels, visible=None, *, overwrite=False):
    """An (H, W) grey or (H, W, 3) RGB uint8 image; invisible pixels fully transparent."""
    if visible is not None:
        alpha = np.where(visible, 255, 0).astype(np.uint8)
        pixels = np.dstack([pixels, alpha])
    return write_bytes(path, png_bytes(PILImage.fromarray(pixels)), overwrite=overwrite)


def write_mask_png(path, mask, *, overwrite=False):
    """A 1-bit PNG: white where ``mask`` (H, W) bool is True."""
    im = PILImage.fromarray(mask.astype(np.uint8) * 255).convert("1")
    return write_bytes(path, png_bytes(im), overwrite=overwrite)
