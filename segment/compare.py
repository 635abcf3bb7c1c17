"""``segment compare``: two label map files to the figures of
:func:`segment.metrics.compare_labels`.

A label map is any image: a grey (or palette-free) image's values are the labels (8- or
16-bit, e.g. ``NAME.labels.png``); in a colour image each distinct colour is one label.
Only the partition matters, so the label numbers need not match between the two maps.
"""

import numpy as np

from .errors import SegmentError
from .imageio.read import load_image
from .metrics import compare_labels, ignored_mask


def _as_labels(pixels):
    """(H, W, 3) pixels → (H, W) int64 labels and whether the image was grey."""
    grey = bool(
        np.array_equal(pixels[..., 0], pixels[..., 1])
        and np.array_equal(pixels[..., 0], pixels[..., 2])
    )
    if pixels.dtype.kind in "ui":
        if grey:
            return pixels[..., 0].astype(np.int64), True
        bits = 8 * pixels.dtype.itemsize  # one integer key per colour
        keys = pixels[..., 0].astype(np.int64) << (2 * bits)
        keys |= pixels[..., 1].astype(np.int64) << bits
        keys |= pixels[..., 2]
        return np.unique(keys, return_inverse=True)[1].reshape(keys.shape), False
    flat = np.ascontiguousarray(pixels).reshape(-1, 3)
    _, inverse = np.unique(flat, axis=0, return_inverse=True)
    return inverse.reshape(pixels.shape[:2]).astype(np.int64), grey


def load_label_map(path, *, max_pixels=None):
    """Read a label map: grey values as labels, or one label per distinct colour.

    Parameters
    ----------
    path : str or Path
    max_pixels : int, optional
        As for :func:`segment.imageio.load_image`.

    Returns
    -------
    labels : ndarray (H, W) int64
    pixels : ndarray (H, W, 3)
        The decoded pixels (to find an ignored colour).
    grey : bool
        Whether the labels are the grey values themselves.

    Raises
    ------
    SegmentError
        If the file cannot be read as an image.
    """
    image = load_image(path, max_pixels=max_pixels)
    labels, grey = _as_labels(image.pixels)
    return labels, image.pixels, grey


def compare_files(seg_path, truth_path, *, connected=False, ignore=None, max_pixels=None):
    """:func:`compare_labels` of two label-map images.

    Parameters
    ----------
    seg_path, truth_path : str or Path
        E.g. ``NAME.labels.png`` written by ``segment image``, and a ground truth.
    connected : bool
    ignore : int or (R, G, B), optional
        Truth label (grey value) or colour whose pixels are left out.
    max_pixels : int, optional

    Returns
    -------
    dict
        The figures of :func:`compare_labels`, with ``segmentation`` and ``truth`` paths.
    """
    seg, _, _ = load_label_map(seg_path, max_pixels=max_pixels)
    truth, pixels, grey = load_label_map(truth_path, max_pixels=max_pixels)
    if seg.shape != truth.shape:
        raise SegmentError(
            f"{seg_path} is {seg.shape[1]}×{seg.shape[0]} pixels but {truth_path} is "
            f"{truth.shape[1]}×{truth.shape[0]}; compare label maps of the same image."
        )
    mask = ignored_mask(pixels, truth, grey, ignore, truth_path)
    del pixels
    figures = compare_labels(seg, truth, connected=connected, ignore_mask=mask)
    return {"segmentation": str(seg_path), "truth": str(truth_path), **figures}
