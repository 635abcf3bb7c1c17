"""Quality figures, each computed in one place: PSNR of colours and of label images, the
figures of a quantised image (PSNR, SSIM, CIEDE2000 ΔE, strip by strip), and the agreement
of a segmentation with a ground truth (variation of information and adapted Rand error,
scikit-image's metrics; with ``connected`` each label map is first relabelled by connected
components, as region benchmarks such as BSDS count segments)."""

import numpy as np

from .color import rgb_to_lab
from .colorkeys import color_keys, keys_to_rgb
from .errors import SegmentError
from .features import rows_per_strip, strips
from .quantize.mapping import BLOCK_ROWS, PaletteImage, unit_scale
from .ssim import masked_ssim_map


def psnr(rgb, approx, weight=None):
    """Peak signal-to-noise ratio in dB of ``approx`` against ``rgb`` (both (n, 3) in [0, 1]).

    ``weight`` (n,) counts each row that many times (distinct colours with pixel counts).
    Missing values (NaN in ``rgb``) are left out.
    """
    sq = (np.asarray(rgb, np.float64) - np.asarray(approx, np.float64)) ** 2
    if np.isnan(sq).any():
        return _psnr_observed(sq, weight)
    err = sq.mean(axis=1)
    return psnr_of_mse(float(np.average(err, weights=weight)))


def psnr_of_mse(mse):
    """PSNR in dB of a mean squared error of values in [0, 1]; infinite for a lossless result
    (the one formula behind every PSNR of the project)."""
    return float("inf") if mse <= 0 else float(10.0 * np.log10(1.0 / mse))


def _psnr_observed(sq, weight=None):
    """PSNR of squared errors (n, 3) over their finite values only."""
    seen = ~np.isnan(sq)
    w = np.ones(sq.shape[0]) if weight is None else np.asarray(weight, np.float64)
    n = float(w @ seen.sum(axis=1))
    if n == 0:
        return float("nan")
    return psnr_of_mse(float(w @ np.where(seen, sq, 0.0).sum(axis=1)) / n)


#: Pixels per strip of the image-wise figures (SSIM, figures of dithered images).
STRIP_PIXELS = 1 << 19


#: SSIM window (scikit-image's default) and the rows a strip borrows from its neighbours.
SSIM_WIN = 7


def as_unit_float(a):
    a = np.asarray(a)
    scale = unit_scale(a.dtype)
    return a.astype(np.float64) / scale if scale != 1.0 else a.astype(np.float64)


def _delta_e(rgb01, approx01):
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(rgb_to_lab(rgb01), rgb_to_lab(approx01), channel_axis=-1)


def row_figures(rgb, weight, approx):
    """PSNR (dB) and mean CIEDE2000 ΔE of ``approx`` against ``rgb``, rows weighted.

    Parameters
    ----------
    rgb, approx : ndarray (n, 3)
        Colours in [0, 1]; ``approx`` may also be uint8.
    weight : ndarray (n,) or None
        Pixel counts of the rows.

    Returns
    -------
    dict
        ``psnr_db``, ``delta_e``.
    """
    sse = de = 0.0
    total = 0.0
    for a in range(0, len(rgb), BLOCK_ROWS):
        x = as_unit_float(rgb[a : a + BLOCK_ROWS])
        y = as_unit_float(approx[a : a + BLOCK_ROWS])
        w = np.ones(len(x)) if weight is None else np.asarray(weight[a : a + BLOCK_ROWS], float)
        sse += float(w @ ((x - y) ** 2).sum(axis=1))
        de += float(w @ _delta_e(x, y))
        total += float(w.sum())
    return {"psnr_db": psnr_of_mse(sse / (3.0 * total)), "delta_e": de / total}


def _pair_rows(original8, palette_image, visible, bounds):
    """Distinct (colour, palette index) pairs of an 8-bit image and its palette image, with
    their pixel counts: the figures of the pairs weighted by the counts are those of all
    pixels, for far fewer colour conversions."""
    parts, counts = [], []
    for a, b in bounds:
        keys = color_keys(original8[a:b]).astype(np.int64) << 16
        keys |= palette_image.indices[a:b]
        if visible is not None:
            keys = keys[visible[a:b]]
        u, c = np.unique(keys, return_counts=True)
        parts.append(u)
        counts.append(c)
    keys, inverse = np.unique(np.concatenate(parts), return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=np.concatenate(counts).astype(np.float64))
    colours = keys_to_rgb((keys >> 16).astype(np.uint32), np.float64) / 255.0
    return colours, weight, palette_image.palette[keys & 0xFFFF]


def image_figures(original, result, visible=None, *, ssim=True, strip_rows=None):
    """PSNR (dB), SSIM and mean CIEDE2000 ΔE of ``result`` against ``original``.

    Computed strip by strip over the visible pixels. SSIM is scikit-image's
    ``structural_similarity(original, result, channel_axis=-1, data_range=1)``, with the
    mean of its per-pixel map taken over the visible pixels at least 3 pixels from the
    border (where scikit-image takes its mean); with transparency, each window's statistics
    are those of its visible pixels (:func:`segment.ssim.masked_ssim_map`), so what hidden
    pixels hold does not count; strips borrow 3 rows from their neighbours,
    so each strip's map is exactly that of the whole image. For an 8-bit ``original`` and a
    :class:`PaletteImage` ``result``, PSNR and ΔE are computed once per distinct pair of
    original colour and palette colour, weighted by its pixel count (the same figures).

    Parameters
    ----------
    original, result : ndarray (H, W, 3) or :class:`PaletteImage`
        uint8, uint16, or float in [0, 1].
    visible : ndarray (H, W) bool, optional
    ssim : bool, default True
        Compute SSIM (None when the image is smaller than 7×7 pixels, SSIM's window).
    strip_rows : int, optional
        Rows per strip; by default about half a million pixels per strip.

    Returns
    -------
    dict
        ``psnr_db``, ``ssim``, ``delta_e``.
    """
    from skimage.metrics import structural_similarity

    H, W = original.shape[:2]
    if tuple(result.shape) != tuple(original.shape):
        raise SegmentError(f"result shape {result.shape} differs from original {original.shape}.")
    if visible is not None and not visible.any():
        raise SegmentError("no pixel is visible; there is nothing to compare.")
    bounds = strips(H, strip_rows or rows_per_strip(W, STRIP_PIXELS, minimum=8), min_last=4)
    pad = (SSIM_WIN - 1) // 2
    do_ssim = ssim and min(H, W) >= SSIM_WIN
    by_pairs = isinstance(result, PaletteImage) and np.asarray(original).dtype == np.uint8
    sse = de = s_sum = 0.0
    n = s_n = 0
    for a, b in bounds if do_ssim or not by_pairs else ():
        a0, b0 = (max(0, a - pad), min(H, b + pad)) if do_ssim else (a, b)
        o, r = as_unit_float(original[a0:b0]), as_unit_float(result[a0:b0])
        core = slice(a - a0, b - a0)
        v = np.ones((b - a, W), bool) if visible is None else visible[a:b]
        if not by_pairs:
            oc, rc = o[core][v], r[core][v]
            sse += float(((oc - rc) ** 2).sum())
            de += float(_delta_e(oc, rc).sum()) if len(oc) else 0.0
            n += int(v.sum())
        if do_ssim:
            if visible is None:
                _, S = structural_similarity(o, r, channel_axis=-1, data_range=1.0, full=True)
                defined = True
            else:  # windows of visible pixels only: what is under transparency is no image
                S, defined = masked_ssim_map(o, r, visible[a0:b0], win=SSIM_WIN)
                defined = defined[core]
            rows = np.arange(a, b)
            inner = v & defined & ((rows >= pad) & (rows < H - pad))[:, None]
            inner[:, :pad] = False
            inner[:, W - pad :] = False
            s_sum += float(S[core][inner].sum())
            s_n += 3 * int(inner.sum())
    if by_pairs:
        colour = row_figures(*_pair_rows(original, result, visible, bounds))
    else:
        colour = {"psnr_db": psnr_of_mse(sse / (3.0 * n)), "delta_e": de / n}
    return {**colour, "ssim": s_sum / s_n if do_ssim and s_n else None}


def labels_psnr(data, labels, palette):
    """PSNR (dB) of ``palette[labels]`` against the image's colours, over visible pixels."""
    H, W = data.shape
    pal = palette.astype(np.float32) / 255.0
    sq = 0.0
    n = 0
    for a, b in strips(H, rows_per_strip(W, 1 << 20)):
        diff = data.strip_rgb(a, b)
        diff -= pal[np.minimum(labels[a:b], len(pal) - 1)]
        np.square(diff, out=diff)
        # The mean over the channels written out: the same float32 sums in the same order
        # as .mean(axis=2), whose reduction over a length-3 axis costs five times more.
        err = (diff[..., 0] + diff[..., 1] + diff[..., 2]) / np.float32(3)
        if data.visible is not None:
            err = err[data.visible[a:b]]
        if np.isnan(err).any():  # pixels missing a channel: their observed ones count
            full = (data.strip_rgb(a, b) - pal[np.minimum(labels[a:b], len(pal) - 1)]) ** 2
            if data.visible is not None:
                full = full[data.visible[a:b]]
            seen = ~np.isnan(full)
            sq += float(np.where(seen, full, 0.0).sum(dtype=np.float64)) / 3.0
            n += float(seen.sum()) / 3.0
            continue
        sq += float(err.sum(dtype=np.float64))
        n += err.size
    return psnr_of_mse(sq / max(n, 1))


def ignored_mask(pixels, labels, grey, ignore, where):
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
    # A fraction of no pairs is undefined (None, with the reason), never a made-up 0 or 1.
    undefined = {}
    if seg_pairs == 0:
        undefined["rand_precision"] = "the segmentation puts no two pixels in one segment"
    if truth_pairs == 0:
        undefined["rand_recall"] = "the truth puts no two pixels in one segment"
    if seg_pairs + truth_pairs == 0:
        undefined["adapted_rand_error"] = "neither map puts two pixels in one segment"
    precision = together / seg_pairs if seg_pairs > 0 else None
    recall = together / truth_pairs if truth_pairs > 0 else None
    # 1 - the F-score = 1 - 2 together / (seg_pairs + truth_pairs): scikit-image's error,
    # without its division by zero.
    total = seg_pairs + truth_pairs
    are = 1.0 - 2.0 * together / total if total > 0 else None
    return precision, recall, are, undefined


def _rand_index_and_covering(t, s):
    """Rand index (fraction of pixel pairs on which the two partitions agree) and the
    segmentation covering of the truth by ``s`` (Arbelaez et al. 2011: each truth region
    weighted by its size takes its best intersection-over-union with a segment), both
    from the contingency table of the consecutive labels ``t`` and ``s``."""
    n_pix = len(t)
    ns = int(s.max()) + 1
    joint, counts = np.unique(t * ns + s, return_counts=True)
    ti, si = np.divmod(joint, ns)
    counts = counts.astype(np.float64)
    a = np.bincount(t).astype(np.float64)
    b = np.bincount(s).astype(np.float64)
    pairs = n_pix * (n_pix - 1) / 2.0
    together_both = float((counts * (counts - 1)).sum()) / 2.0
    together_t = float((a * (a - 1)).sum()) / 2.0
    together_s = float((b * (b - 1)).sum()) / 2.0
    rand = 1.0 if pairs == 0 else (pairs - together_t - together_s + 2 * together_both) / pairs
    iou = counts / (a[ti] + b[si] - counts)
    best = np.zeros(len(a))
    np.maximum.at(best, ti, iou)
    covering = float((a * best).sum() / n_pix)
    return float(rand), covering


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
        too): each None when it is undefined (a map that puts no two pixels together, e.g.
        1×1 maps), with the reason in ``undefined`` (metric name → why); ``rand_index``
        (fraction of pixel pairs on which the two agree; its mean over several truths is
        the probabilistic Rand index, PRI; None for a single pixel), ``covering`` (the
        segmentation covering of the truth: each truth region, weighted by its size,
        takes its best intersection-over-union with a segment); ``segments`` and
        ``truth_segments`` (numbers of labels, of regions with ``connected``, among the
        pixels compared); ``pixels`` compared; ``ignored_pixels``; ``connected``.

    Raises
    ------
    SegmentError
        If the maps differ in size, are not 2-D integer arrays, or no pixel is left.
    """
    from skimage.metrics import variation_of_information

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
    precision, recall, are, undefined = _rand_precision_recall(t, s)
    rand, covering = _rand_index_and_covering(t, s)
    if len(t) < 2:
        rand = None
        undefined["rand_index"] = "a single pixel has no pairs"
    return {
        "variation_of_information": float(splits + merges),
        "false_splits": float(splits),
        "false_merges": float(merges),
        "adapted_rand_error": are,
        "rand_precision": precision,
        "rand_recall": recall,
        "rand_index": rand,
        "covering": covering,
        "undefined": undefined,
        "segments": int(s.max()) + 1,
        "truth_segments": int(t.max()) + 1,
        "pixels": n,
        "ignored_pixels": int(keep.size - n),
        "connected": bool(connected),
    }
