"""Agreement of a segmentation with a ground truth: variation of information and adapted
Rand error (scikit-image's metrics), for users who have hand-made label maps.

A label map is any image: a grey (or palette-free) image's values are the labels (8- or
16-bit, e.g. ``NAME.labels.png``); in a colour image each distinct colour is one label.
Only the partition matters, so the label numbers need not match between the two maps.

With ``connected`` each label map is first relabelled by connected components, so that two
separate regions with the same label count as two segments (region-based benchmarks such as
BSDS count segments that way; a mixture's label is a colour class, not a region).
"""

import numpy as np

from .errors import SegmentError
from .io import load_image

__all__ = ["compare_files", "compare_labels", "load_label_map"]


# =========================================================================================
# Label maps
# =========================================================================================


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
        As for :func:`segment.io.load_image`.

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


def _ignored_mask(pixels, labels, grey, ignore, where):
    """Where the truth holds the ignored label (an int for grey maps) or colour (R, G, B)."""
    if ignore is None:
        return None
    if isinstance(ignore, tuple | list):
        colour = np.asarray(ignore)
        if colour.shape != (3,):
            raise SegmentError(f"the ignored colour must be three numbers R,G,B; got {ignore!r}.")
        return (pixels == colour.astype(pixels.dtype)).all(axis=2)
    if not grey:
        raise SegmentError(
            f"{where} is a colour image: give the ignored label as a colour R,G,B "
            f"(e.g. --ignore 0,0,0), not {ignore!r}."
        )
    return labels == int(ignore)


# =========================================================================================
# Metrics
# =========================================================================================


def _check_map(name, a):
    a = np.asarray(a)
    if a.ndim != 2:
        raise SegmentError(f"{name} must be a 2-D label map; got an array of shape {a.shape}.")
    if a.dtype.kind not in "biu":
        raise SegmentError(f"{name} must hold integer labels; got dtype {a.dtype}.")
    return a


def _connected(labels, connectivity):
    from skimage.measure import label

    # +1 so that no label is skimage's background (0).
    return label(labels.astype(np.int64) + 1, background=0, connectivity=connectivity)


def _rand_precision_recall(t, s):
    """Adapted Rand precision and recall with the meanings of scikit-image's documentation.

    Precision: of the pixel pairs the segmentation puts together, the fraction the truth
    puts together too (lowered by false merges); recall: of the pairs the truth puts
    together, the fraction the segmentation keeps together (lowered by false splits).
    scikit-image 0.26 returns the two the other way round (its issue #6485), so they are
    computed here from the contingency table.
    """
    n = np.unique(t * (int(s.max()) + 1) + s, return_counts=True)[1].astype(np.float64)
    together = float(n @ n) - len(t)
    seg_pairs = float(np.bincount(s).astype(np.float64) @ np.bincount(s)) - len(t)
    truth_pairs = float(np.bincount(t).astype(np.float64) @ np.bincount(t)) - len(t)
    precision = together / seg_pairs if seg_pairs > 0 else 1.0
    recall = together / truth_pairs if truth_pairs > 0 else 1.0
    return precision, recall


def compare_labels(
    seg, truth, *, connected=False, ignore_label=None, ignore_mask=None, connectivity=1
):
    """Variation of information and adapted Rand error of ``seg`` against ``truth``.

    Parameters
    ----------
    seg, truth : array-like (H, W) of int
        Label maps of the same image.
    connected : bool, default False
        Relabel each map by connected components first.
    ignore_label : int, optional
        Leave out the pixels where ``truth`` has this label (e.g. unlabelled pixels).
    ignore_mask : ndarray (H, W) bool, optional
        Leave out these pixels too.
    connectivity : {1, 2}, default 1
        For ``connected``: 1 joins pixels sharing an edge (4-neighbours), 2 also diagonal
        neighbours.

    Returns
    -------
    dict
        ``variation_of_information`` (bits) = ``false_splits`` (H(seg | truth),
        over-segmentation) + ``false_merges`` (H(truth | seg), under-segmentation);
        ``adapted_rand_error`` (1 - the F-score of the two below), ``rand_precision`` (of
        the pixel pairs ``seg`` puts together, the fraction ``truth`` does too),
        ``rand_recall`` (of the pairs ``truth`` puts together, the fraction ``seg`` does
        too); ``segments`` and
        ``truth_segments`` (numbers of labels, of regions with ``connected``, among the
        pixels compared); ``pixels`` compared; ``ignored_pixels``; ``connected``.

    Raises
    ------
    SegmentError
        If the maps differ in size, are not 2-D integer arrays, or no pixel is left.
    """
    from skimage.metrics import adapted_rand_error, variation_of_information

    seg = _check_map("the segmentation", seg)
    truth = _check_map("the truth", truth)
    if seg.shape != truth.shape:
        raise SegmentError(
            f"the segmentation is {seg.shape[1]}×{seg.shape[0]} pixels but the truth is "
            f"{truth.shape[1]}×{truth.shape[0]}; compare label maps of the same image."
        )
    if connectivity not in (1, 2):
        raise SegmentError(f"connectivity must be 1 or 2; got {connectivity!r}.")
    keep = np.ones(seg.shape, dtype=bool)
    if ignore_label is not None:
        keep &= truth != ignore_label
    if ignore_mask is not None:
        mask = np.asarray(ignore_mask, dtype=bool)
        if mask.shape != seg.shape:
            raise SegmentError(f"ignore_mask must have shape {seg.shape}; got {mask.shape}.")
        keep &= ~mask
    n = int(keep.sum())
    if n == 0:
        raise SegmentError("every pixel is ignored; there is nothing to compare.")
    if connected:
        seg, truth = _connected(seg, connectivity), _connected(truth, connectivity)
    # Consecutive labels 0..n-1 of the pixels kept (the contingency table is indexed by them).
    s = np.unique(seg[keep], return_inverse=True)[1].ravel()
    t = np.unique(truth[keep], return_inverse=True)[1].ravel()
    splits, merges = variation_of_information(t, s)
    are, _, _ = adapted_rand_error(t, s, ignore_labels=())
    precision, recall = _rand_precision_recall(t, s)
    return {
        "variation_of_information": float(splits + merges),
        "false_splits": float(splits),
        "false_merges": float(merges),
        "adapted_rand_error": float(are),
        "rand_precision": float(precision),
        "rand_recall": float(recall),
        "segments": int(s.max()) + 1,
        "truth_segments": int(t.max()) + 1,
        "pixels": n,
        "ignored_pixels": int(keep.size - n),
        "connected": bool(connected),
    }


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
    mask = _ignored_mask(pixels, truth, grey, ignore, truth_path)
    del pixels
    figures = compare_labels(seg, truth, connected=connected, ignore_mask=mask)
    return {"segmentation": str(seg_path), "truth": str(truth_path), **figures}
