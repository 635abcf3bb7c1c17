"""Spatial post-processing of the labels, in strips of image rows so that memory stays
bounded whatever the image size.

- *Smoothing* (``sigma`` > 0): each pixel's log-responsibilities are averaged with its
  neighbours' under a Gaussian of ``sigma`` pixels before the most likely component is
  taken. Pixel-wise colour clustering gives speckled segments (a noisy pixel flips to a
  neighbouring colour's component); pooling the evidence of a neighbourhood removes the
  speckle and keeps edges where the evidence changes. The log-responsibilities are clipped
  at ``LOG_FLOOR`` first, so one pixel that is certain *against* a component cannot veto
  it for its whole neighbourhood.
- *Small regions* (``min_region`` > 0): connected regions of one label smaller than that
  many pixels are given the label that most of their border touches.
"""

import numpy as np
from scipy import ndimage

#: Log-responsibilities are clipped below at this value before smoothing.
LOG_FLOOR = -10.0


def strip_height(shape, n_components, budget_mib, halo=0):
    """Image rows per strip so that a few (K, rows, W) float32 arrays fit the budget."""
    H, W = shape
    per_row = max(1, W) * (n_components + 4) * 4 * 3
    rows = int(budget_mib * 2**20 // per_row) - 2 * halo
    return int(min(H, max(8, rows)))


def log_responsibilities(kernel, X):
    """log r (K, n) float32 of the rows ``X`` (n, D), block by block through ``kernel``."""
    out = np.empty((kernel.K, X.shape[0]), dtype=np.float32)
    for a in range(0, X.shape[0], kernel.rows):
        L, _ = kernel.logits(X[a : a + kernel.rows])
        kernel.normalize(L)
        np.log(L, out=out[:, a : a + kernel.rows])
    return out


def smoothed_labels(model, data, sigma, *, budget_mib=64.0, out_dtype=np.uint8, fill=255):
    """Labels (H, W) from log-responsibilities smoothed by a Gaussian of ``sigma`` pixels.

    Invisible pixels neither vote nor get a label (they get ``fill``): the smoothing is a
    normalised convolution over the visible pixels only.
    """
    H, W = data.shape
    K = model.n_components
    halo = int(np.ceil(4.0 * sigma))
    height = strip_height((H, W), K, budget_mib, halo)
    kernel = model.kernel()
    labels = np.empty((H, W), dtype=out_dtype)
    for a in range(0, H, height):
        b = min(H, a + height)
        lo, hi = max(0, a - halo), min(H, b + halo)
        X, visible = data.strip_features(lo, hi)
        logr = log_responsibilities(kernel, X).reshape(K, hi - lo, W)
        np.maximum(logr, LOG_FLOOR, out=logr)
        if data.visible is not None:
            m = visible.astype(np.float32)
            logr *= m
            num = ndimage.gaussian_filter(logr, sigma=(0, sigma, sigma), mode="nearest")
            den = ndimage.gaussian_filter(m, sigma=sigma, mode="nearest")
            smooth = num / np.maximum(den, 1e-12)
        else:
            smooth = ndimage.gaussian_filter(logr, sigma=(0, sigma, sigma), mode="nearest")
        core = smooth[:, a - lo : a - lo + (b - a)]
        labels[a:b] = np.argmax(core, axis=0)
        if data.visible is not None:
            labels[a:b][~visible[a - lo : a - lo + (b - a)]] = fill
    return labels


def pixel_labels(model, data, *, budget_mib=64.0, out_dtype=np.uint8, fill=255):
    """Most likely component (H, W) of every pixel, strip by strip (no smoothing)."""
    H, W = data.shape
    kernel = model.kernel()
    labels = np.empty((H, W), dtype=out_dtype)
    for a, b in data.strip_rows(strip_height((H, W), model.n_components, budget_mib)):
        X, visible = data.strip_features(a, b)
        lab = labels[a:b].reshape(-1)
        for s in range(0, X.shape[0], kernel.rows):
            L, _ = kernel.logits(X[s : s + kernel.rows])
            lab[s : s + kernel.rows] = np.argmax(L, axis=0)
        if visible is not None:
            labels[a:b][~visible] = fill
    return labels


def merge_small_regions(labels, min_region, *, n_labels, visible=None, connectivity=1):
    """Give connected regions smaller than ``min_region`` pixels the label most of their
    border touches, in place; repeated until no small region is left (or none can change).

    Parameters
    ----------
    labels : ndarray (H, W) of ints
        Labels in [0, n_labels); invisible pixels hold any value and are left alone.
    min_region : int
    visible : ndarray (H, W) bool or None
    connectivity : 1 (4-neighbours) or 2 (8-neighbours)

    Returns
    -------
    labels : the same array
    """
    if min_region <= 1:
        return labels
    structure = ndimage.generate_binary_structure(2, connectivity)
    for _ in range(8):
        regions, n_regions = _regions(labels, n_labels, visible, structure)
        sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)
        sizes[0] = np.iinfo(sizes.dtype).max  # 0 = invisible, never merged
        small = sizes < min_region
        if not small.any():
            break
        target = _border_majority(labels, regions, small, visible)
        changed = target >= 0
        if not changed.any():
            break
        region_label = np.full(n_regions + 1, -1, dtype=np.int64)
        region_label[changed.nonzero()[0]] = target[changed]
        new = region_label[regions]
        move = new >= 0
        labels[move] = new[move]
        del regions, new, move
    return labels


def _regions(labels, n_labels, visible, structure):
    """Connected regions of equal label: ids (H, W) int32 from 1; 0 for invisible pixels."""
    regions = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for k in range(n_labels):
        mask = labels == k
        if visible is not None:
            mask &= visible
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, structure=structure, output=np.int32)
        lab[mask] += offset
        regions[mask] = lab[mask]
        offset += n
    return regions, offset


def _border_majority(labels, regions, small, visible):
    """For each region id, the label that most of its border touches, if it is small and has
    a neighbour of another label; -1 otherwise. Neighbours in regions that are large enough
    count first, so that two small neighbours do not just swap labels."""
    src_parts, dst_parts, big_parts = [], [], []
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        ra, rb = regions[tuple(a)], regions[tuple(b)]
        la, lb = labels[tuple(a)], labels[tuple(b)]
        differ = (ra != rb) & (ra > 0) & (rb > 0)
        for src, dst, dst_region in ((ra, lb, rb), (rb, la, ra)):
            sel = differ & small[src]
            src_parts.append(src[sel].astype(np.int64))
            dst_parts.append(dst[sel].astype(np.int64))
            big_parts.append(~small[dst_region[sel]])
    target = np.full(len(small), -1, dtype=np.int64)
    src, dst, big = (np.concatenate(p) for p in (src_parts, dst_parts, big_parts))
    if src.size == 0:
        return target
    n_labels = int(dst.max()) + 1
    for keep in (~big, big):  # the second pass (big neighbours) overrides the first
        if not keep.any():
            continue
        keys, counts = np.unique(src[keep] * n_labels + dst[keep], return_counts=True)
        region, label = keys // n_labels, keys % n_labels
        order = np.lexsort((-counts, region))  # by region, most frequent label first
        region, label = region[order], label[order]
        first = np.ones(len(region), dtype=bool)
        first[1:] = region[1:] != region[:-1]
        target[region[first]] = label[first]
    return target


def labels_psnr(data, labels, palette):
    """PSNR (dB) of ``palette[labels]`` against the image's colours, over visible pixels."""
    H, W = data.shape
    pal = palette.astype(np.float32) / 255.0
    sq = 0.0
    n = 0
    rows = max(1, (1 << 20) // max(W, 1))
    for a in range(0, H, rows):
        b = min(H, a + rows)
        err = ((data.strip_rgb(a, b) - pal[np.minimum(labels[a:b], len(pal) - 1)]) ** 2).mean(
            axis=2
        )
        if data.visible is not None:
            err = err[data.visible[a:b]]
        sq += float(err.sum(dtype=np.float64))
        n += err.size
    mse = sq / max(n, 1)
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def merge_similar_neighbours(labels, colours, threshold, *, n_labels, visible=None):
    """Give components whose colours are close (< ``threshold``) and whose pixels touch one
    label, in place: the label of the group's most frequent component.

    With position features a large surface of one colour (a table, the sky) is covered by
    several components side by side, each explaining a part of it; a person sees one
    region. Adjacent components of near-identical colour are merged, closest pairs first,
    a pair only while the colours of the two groups stay within ``threshold`` of each
    other (complete linkage), so that a slow gradient does not chain everything.

    Parameters
    ----------
    labels : ndarray (H, W) of ints
    colours : ndarray (K, 3)
        Colour of each component in a perceptual space (CIELAB: ΔE units).
    threshold : float
    visible : ndarray (H, W) bool or None

    Returns
    -------
    labels, mapping : the relabelled array and the (K,) map old label -> new label
    """
    K = n_labels
    valid = labels < K
    if visible is not None:
        valid &= visible
    counts = np.bincount(labels[valid].ravel(), minlength=K)[:K]
    touch = np.zeros((K, K), dtype=np.int64)
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        sel = (a != b) & (a < K) & (b < K)
        if visible is not None:
            sel &= (
                (visible[1:] & visible[:-1])
                if a.shape[0] != labels.shape[0]
                else (visible[:, 1:] & visible[:, :-1])
            )
        np.add.at(touch, (a[sel].astype(np.intp), b[sel].astype(np.intp)), 1)
    touch = touch + touch.T
    dist = np.sqrt(((colours[:, None, :] - colours[None, :, :]) ** 2).sum(axis=2))
    group = np.arange(K)
    members = {k: [k] for k in range(K)}
    pairs = [
        (dist[i, j], i, j)
        for i in range(K)
        for j in range(i + 1, K)
        if touch[i, j] > 0 and dist[i, j] < threshold
    ]
    for _, i, j in sorted(pairs):
        gi, gj = group[i], group[j]
        if gi == gj:
            continue
        if max(dist[p, q] for p in members[gi] for q in members[gj]) >= threshold:
            continue
        members[gi] += members.pop(gj)
        group[members[gi]] = gi
    mapping = np.arange(K)
    for m in members.values():
        rep = max(m, key=lambda c: counts[c])
        mapping[m] = rep
    lut = np.arange(max(K, int(labels.max()) + 1), dtype=labels.dtype)
    lut[:K] = mapping
    labels[...] = lut[labels]
    return labels, mapping
