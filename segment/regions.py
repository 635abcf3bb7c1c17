"""Connected regions of a label image: merging small regions into their neighbours, and
neighbouring segments of similar colour into one.

*Small regions* (``min_region`` > 0): connected regions of one label smaller than that many
pixels are given the label that most of their border touches. *Similar neighbours*
(``merge`` > 0): adjacent segments whose mean colours differ by less than a CIELAB ΔE are
merged. Both work in strips of rows.
"""

import functools
import heapq

import numpy as np
from scipy import ndimage

from .features import rows_per_strip, strips


def merge_small_regions(labels, min_region, *, n_labels, visible=None, connectivity=1):
    """Merge connected regions smaller than ``min_region`` pixels into their neighbours,
    in place: smallest first, each into the neighbour it shares the longest border with,
    until no region is smaller (or a small region has no neighbour left).

    The image is labelled into connected regions once; the merging then runs on the
    region adjacency graph (region sizes and border lengths), and the pixels are relabelled
    once at the end.

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
    regions, n = _regions(labels, n_labels, visible, structure)
    # Everything indexed by region id goes strip by strip: numpy turns an int32 index
    # array into a full-size int64 copy.
    sizes = np.zeros(n + 1, dtype=np.int64)
    label_of = np.zeros(n + 1, dtype=np.int64)
    for rows in _row_blocks(regions.shape):
        sizes += np.bincount(regions[rows].ravel(), minlength=n + 1)
        label_of[regions[rows].ravel()] = labels[rows].ravel()
    if not (sizes[1:] < min_region).any():
        return labels
    target = _merge_graph(sizes, label_of, _borders(regions, n), min_region)
    move = target != label_of
    move[0] = False
    if move.any():
        for rows in _row_blocks(regions.shape):
            r = regions[rows]
            pix = move[r]
            labels[rows][pix] = target[r[pix]]
    return labels


def _row_blocks(shape, pixels=1 << 20):
    """Slices of image rows holding about ``pixels`` pixels each."""
    H, W = shape
    return [slice(a, b) for a, b in strips(H, rows_per_strip(W, pixels))]


def _borders(regions, n):
    """Border lengths between regions: dict region -> {neighbour: pixels of border},
    counted block by block of rows (vertical pairs cross into the next block)."""
    H = regions.shape[0]
    keys = []
    for rows in _row_blocks(regions.shape):
        below = slice(rows.start + 1, min(H, rows.stop + 1))
        top = regions[rows.start : below.stop - 1]
        for a, b in ((regions[rows][:, 1:], regions[rows][:, :-1]), (top, regions[below])):
            sel = a != b
            sel &= a > 0
            sel &= b > 0
            if sel.any():
                lo = np.minimum(a[sel], b[sel]).astype(np.int64)
                hi = np.maximum(a[sel], b[sel]).astype(np.int64)
                keys.append(np.unique(lo * (n + 1) + hi, return_counts=True))
    adjacency = {}
    if not keys:
        return adjacency
    uniq = np.concatenate([k for k, _ in keys])
    counts = np.concatenate([c for _, c in keys])
    order = np.argsort(uniq, kind="stable")
    uniq, counts = uniq[order], counts[order]
    first = np.ones(len(uniq), dtype=bool)
    first[1:] = uniq[1:] != uniq[:-1]
    totals = np.add.reduceat(counts, np.flatnonzero(first))
    for key, c in zip(uniq[first].tolist(), totals.tolist(), strict=True):
        i, j = divmod(key, n + 1)
        adjacency.setdefault(i, {})[j] = c
        adjacency.setdefault(j, {})[i] = c
    return adjacency


def _root(parent, i):
    """Root of ``i`` in the union-find forest ``parent`` (a list or an array), halving the
    path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _merge_graph(sizes, label_of, adjacency, min_region):
    """Label of every region after merging the small ones on the adjacency graph."""
    parent = list(range(len(sizes)))
    root = functools.partial(_root, parent)
    sizes = sizes.tolist()
    labels = label_of.tolist()
    heap = [(sizes[i], i) for i in range(1, len(sizes)) if sizes[i] < min_region]
    heapq.heapify(heap)
    while heap:
        size, i = heapq.heappop(heap)
        if root(i) != i or size != sizes[i] or size >= min_region:
            continue  # merged already, or grown since it was queued
        neighbours = adjacency.get(i, {})
        if not neighbours:
            continue
        j = max(neighbours, key=lambda r: (neighbours[r], sizes[r], -r))
        # i joins j: j keeps its label; borders of i become borders of j.
        parent[i] = j
        sizes[j] += sizes[i]
        nj = adjacency.setdefault(j, {})
        nj.pop(i, None)
        for r, c in neighbours.items():
            if r == j:
                continue
            nj[r] = nj.get(r, 0) + c
            nr = adjacency[r]
            nr.pop(i, None)
            nr[j] = nr.get(j, 0) + c
        adjacency.pop(i, None)
        if sizes[j] < min_region:
            heapq.heappush(heap, (sizes[j], j))
    return np.array([labels[root(i)] for i in range(len(sizes))], dtype=np.int64)


def _strip_regions(strip, n_labels, visible, structure, offset, out):
    """Connected regions of equal label in one strip, into ``out`` as ``offset`` + 1.. (0
    where invisible or the label is outside [0, n_labels)); returns their number.

    The ids are those of labelling each label's mask in turn (label 0's regions first, each
    label's in the raster order of their first pixel), from one labelling of all labels at
    once: both number regions by their first pixel, so a stable sort by label gives the
    same order, and one pass costs a fraction of n_labels passes.
    """
    from skimage.measure import label as label_regions

    keys = strip.astype(np.int32) + 1
    outside = strip >= n_labels
    if visible is not None:
        outside |= ~visible
    keys[outside] = 0
    ids, n = label_regions(
        keys, background=0, return_num=True, connectivity=2 if structure[0, 0] else 1
    )
    if not n:
        out[...] = 0
        return 0
    label_of = np.zeros(n + 1, dtype=np.int32)
    label_of[ids] = keys
    order = np.argsort(label_of[1:], kind="stable")
    renumber = np.zeros(n + 1, dtype=np.int32)
    renumber[1 + order] = np.arange(offset + 1, offset + n + 1, dtype=np.int32)
    np.take(renumber, ids, out=out)
    return n


def _regions(labels, n_labels, visible, structure, rows=None):
    """Connected regions of equal label: ids (H, W) int32 from 1; 0 for invisible pixels.

    Labelled strip by strip of ``rows`` image rows (default: about a million pixels, so
    that the only full-size array is the result), then the
    regions that continue across a strip boundary are joined (union-find on the pairs of
    ids that touch there) and renumbered 1..n.
    """
    H, W = labels.shape
    if rows is None:
        rows = rows_per_strip(W, 1 << 20, minimum=16)
    regions = np.zeros((H, W), dtype=np.int32)
    offset = 0
    for a, b in strips(H, rows):
        seen = None if visible is None else visible[a:b]
        offset += _strip_regions(labels[a:b], n_labels, seen, structure, offset, regions[a:b])
    if H <= rows:
        return regions, offset
    parent = np.arange(offset + 1, dtype=np.int64)
    root = functools.partial(_root, parent)
    shifts = [(slice(None), slice(None))]
    if structure[0, 0] or structure[0, 2]:  # 8-connectivity: diagonal neighbours too
        shifts += [(slice(0, -1), slice(1, None)), (slice(1, None), slice(0, -1))]
    for b in range(rows, H, rows):
        up, down = regions[b - 1], regions[b]
        lu, ld = labels[b - 1], labels[b]
        for su, sd in shifts:
            u, d = up[su], down[sd]
            same = (u > 0) & (d > 0) & (lu[su] == ld[sd])
            for i, j in set(zip(u[same].tolist(), d[same].tolist(), strict=True)):
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    while True:  # pointer jumping until every id points at its root
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    _, renumber = np.unique(parent, return_inverse=True)
    renumber = renumber.astype(np.int32)  # root 0 (invisible) stays 0: it is the smallest
    for a, b in strips(H, rows):
        regions[a:b] = renumber[regions[a:b]]
    return regions, int(renumber.max())


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


def connected_regions(labels, n_labels, *, visible=None, connectivity=1):
    """Connected regions of equal label, in strips of rows: ids (H, W) int32 numbered 1..n
    (0 for invisible pixels, and for labels outside [0, n_labels)), and n."""
    structure = ndimage.generate_binary_structure(2, connectivity)
    return _regions(labels, n_labels, visible, structure)
