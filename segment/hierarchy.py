"""Greedy merging of adjacent regions by description length, and the hierarchy it forms.

The input is an over-segmentation: connected regions (H, W) int32 numbered 1..n (0 = outside
the image's visible pixels) and the features (H, W, D) of the pixels. Each region is carried
by its sufficient statistics (pixel count, feature sum, sum of outer products), the regions
by their adjacency graph with shared border lengths. The pair whose merge shortens the
description the most (:func:`segment.coding.merge_gain`) is merged first, and so on while
some merge shortens it (the default cut), or until ``n_regions`` regions are left (a cut of
the same greedy hierarchy). Each merge costs O(degree · D³): a heap of every region's
cheapest merge with lazy invalidation (versions), a union-find of the merges, statistics
summed. No per-pixel array is made but the labels.
"""

import heapq
from dataclasses import dataclass

import numpy as np

from .coding import coding_length, merge_gain, union_length
from .speckle import merge_speckle

__all__ = ["MergeResult", "merge_regions", "region_borders", "region_statistics", "relabel"]


def _row_blocks(H, W, pixels=1 << 20):
    step = max(1, pixels // max(W, 1))
    return [(a, min(H, a + step)) for a in range(0, H, step)]


# =========================================================================================
# Statistics and the adjacency graph
# =========================================================================================


def region_statistics(features, regions, n_regions, *, step=1):
    """Sufficient statistics of every region.

    Parameters
    ----------
    features : ndarray (H, W, D), or callable ``features(a, b, step) -> (rows, cols, D)``
        The pixels' features; a callable gives those of rows ``a:b:step`` and columns
        ``::step`` on demand, so that the features of a large image never exist at once.
    regions : ndarray (H, W) of ints
        Region ids 1..n_regions; 0 = pixels left out.
    n_regions : int
    step : int, default 1
        Estimate the sums from the pixels on a grid of this step (every pixel with 1) and
        scale them to each region's exact pixel count. A Gaussian's statistics need far
        fewer pixels than a large photo has. Pixels with a non-finite feature (a missing
        channel) are left out of the sums the same way.

    Returns
    -------
    n : ndarray (n_regions + 1,) float64
        Pixel counts, exact (entry 0: the pixels left out).
    s : ndarray (n_regions + 1, D) float64
        Feature sums.
    q : ndarray (n_regions + 1, D, D) float64
        Sums of the outer products of the features.
    sampled : ndarray (n_regions + 1,) float64
        Pixels of each region that gave the sums (a region with none has zero sums).
    """
    H, W = regions.shape
    m = n_regions + 1
    n = np.zeros(m)
    seen = np.zeros(m)
    s = q = None
    rows = max(step, ((1 << 20) // max(W, 1)) // step * step)
    for a in range(0, H, rows):
        b = min(H, a + rows)
        n += np.bincount(regions[a:b].ravel(), minlength=m)
        f = features(a, b, step) if callable(features) else features[a:b:step, ::step]
        D = f.shape[-1]
        if s is None:
            s = np.zeros((m, D))
            q = np.zeros((m, D, D))
        # bincount wants intp bins and contiguous float64 weights: converted once here
        # rather than by each of its D (D + 3) / 2 calls (the same sums, in the same order).
        r = regions[a:b:step, ::step].ravel().astype(np.intp)
        cols = np.empty((D, r.size))
        cols.reshape(D, *f.shape[:2])[...] = np.moveaxis(np.asarray(f), -1, 0)
        sums = [np.bincount(r, weights=c, minlength=m) for c in cols]
        # A non-finite value makes its region's sum non-finite (inf and nan absorb every
        # later term): only then are the strip's finite pixels picked out.
        if not all(np.isfinite(x).all() for x in sums):
            finite = np.isfinite(cols).all(axis=0)
            if not finite.all():  # pixels with a missing value count but do not vote
                r, cols = r[finite], cols[:, finite]
                sums = [np.bincount(r, weights=c, minlength=m) for c in cols]
        seen += np.bincount(r, minlength=m)
        for d in range(D):
            s[:, d] += sums[d]
        _add_products(q, r, cols, m)
    for d in range(s.shape[1]):
        for e in range(d):
            q[:, d, e] = q[:, e, d]
    partial = (seen != n) & (seen > 0)
    if partial.any():
        scale = n[partial] / seen[partial]
        s[partial] *= scale[:, None]
        q[partial] *= scale[:, None, None]
    return n, s, q, seen


def _add_products(q, r, cols, m):
    """Add the upper-triangle outer-product sums (m, D, D) of the features ``cols`` (D, n)
    float64 of regions ``r`` (n,) intp to ``q``: float64 additions pixel after pixel in
    raster order (np.bincount), on which the order of the greedy merges depends."""
    D = len(cols)
    prod = np.empty(cols.shape[1])
    for d in range(D):
        for e in range(d, D):
            np.multiply(cols[d], cols[e], out=prod)
            q[:, d, e] += np.bincount(r, weights=prod, minlength=m)


def region_borders(regions, n_regions, *, pixel_cost=None):
    """Adjacent region pairs (4-neighbours) and their shared border lengths in pixel edges.

    Parameters
    ----------
    regions : ndarray (H, W) of ints
        Region ids 1..n_regions; 0 = pixels left out.
    n_regions : int
    pixel_cost : callable ``pixel_cost(a, b) -> (b - a, W)`` float, optional
        A weight per pixel of rows [a, b); a pixel edge then counts as the smaller weight of
        its two pixels instead of 1 (a border along a strong image edge counts less).

    Returns
    -------
    a, b : ndarray (E,) int64
        Region ids, a < b, both > 0.
    length : ndarray (E,) int64, or float64 with ``pixel_cost``
    """
    H, W = regions.shape
    keys, counts = [], []
    for lo, hi in _row_blocks(H, W):
        block = regions[lo:hi]
        below = regions[lo + 1 : min(H, hi + 1)]
        if pixel_cost is not None:
            cost = pixel_cost(lo, min(H, hi + 1))
            pairs = (
                (cost[: hi - lo, 1:], cost[: hi - lo, :-1]),
                (cost[: below.shape[0]], cost[1:]),
            )
        for side, (u, v) in enumerate(
            ((block[:, 1:], block[:, :-1]), (block[: below.shape[0]], below))
        ):
            sel = (u != v) & (u > 0) & (v > 0)
            if sel.any():
                x, y = u[sel].astype(np.int64), v[sel].astype(np.int64)
                k, inverse = np.unique(
                    np.minimum(x, y) * (n_regions + 1) + np.maximum(x, y), return_inverse=True
                )
                if pixel_cost is None:
                    c = np.bincount(inverse.ravel(), minlength=len(k))
                else:
                    cu, cv = pairs[side]
                    w = np.minimum(cu[sel], cv[sel]).astype(np.float64)
                    c = np.bincount(inverse.ravel(), weights=w, minlength=len(k))
                keys.append(k)
                counts.append(c)
    if not keys:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), e.copy() if pixel_cost is None else np.zeros(0)
    k, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    length = np.bincount(inverse.ravel(), weights=np.concatenate(counts))
    if pixel_cost is None:
        length = length.astype(np.int64)
    a, b = np.divmod(k, n_regions + 1)
    return a, b, length


# =========================================================================================
# Greedy merging
# =========================================================================================


@dataclass
class MergeResult:
    """Outcome of :func:`merge_regions`.

    Attributes
    ----------
    mapping : ndarray (n_regions + 1,) int64
        Final label 0..n_final-1 of every initial region (entry 0, the pixels left out: -1).
    n_final : int
    merges : ndarray (m, 2) int64
        Regions merged, in order (the second joins the first).
    gains : ndarray (m,) float64
        ΔL (bits) of each merge.
    pre : int
        How many of the first merges removed speckle (under ``pre_size``).
    greedy : int
        How many merges followed, best first (the rest clean up small regions).
    """

    mapping: np.ndarray
    n_final: int
    merges: np.ndarray
    gains: np.ndarray
    pre: int
    greedy: int


class _Graph:
    """Regions' statistics, adjacency and coding lengths while they merge.

    The heap holds one entry per region: its cheapest merge (gain, partner). An entry is
    stale when the region has changed or its best merge was recomputed since (versions);
    a region whose best partner merged away is recomputed at once, so a current entry
    always names a live partner. The heap stays O(regions) however many neighbours a
    large region collects.
    """

    def __init__(self, n, s, q, edges, eps, boundary_bits, weight):
        self.n, self.s, self.q = n.copy(), s.copy(), q.copy()
        self.eps, self.bb, self.weight = eps, boundary_bits, weight
        m = len(n)
        self.alive = n > 0
        self.alive[0] = False
        self.version = np.zeros(m, dtype=np.int64)
        self.own = np.zeros(m)
        live = np.flatnonzero(self.alive)
        if len(live):
            self.own[live] = coding_length(n[live], s[live], q[live], eps, weight=weight)
        self.nb = [dict() for _ in range(m)]
        a, b, length = edges
        for x, y, c in zip(a.tolist(), b.tolist(), length.tolist(), strict=True):
            self.nb[x][y] = c
            self.nb[y][x] = c
        self.best_gain = np.full(m, np.inf)
        self.best_with = np.full(m, -1, dtype=np.int64)
        self.best_joint = np.zeros(m)  # the union's coding length of the best merge
        self.dirty = np.zeros(m, dtype=bool)
        self.heap = []
        self.count = int(self.alive.sum())
        self.merges, self.gains = [], []

    def start_heap(self):
        """Every live region's cheapest merge, computed for all pairs at once."""
        pairs = [(x, y, c) for x in np.flatnonzero(self.alive).tolist()
                 for y, c in self.nb[x].items() if x < y]  # fmt: skip
        if not pairs:
            return
        a, b, length = (np.array(v) for v in zip(*pairs, strict=True))
        joint = union_length(self.n, self.s, self.q, a, b, self.eps, weight=self.weight)
        gains = merge_gain(
            self.n, self.s, self.q, a, b, length, self.eps, self.bb,
            weight=self.weight, own=self.own, joint=joint,
        )  # fmt: skip
        # The pairs sorted by gain (ties by ids): the first hit of a region is its best.
        order = np.lexsort((b, a, gains))
        for ends, other in ((a, b), (b, a)):
            first = np.unique(ends[order], return_index=True)[1]
            idx = order[first]
            r = ends[idx]
            better = gains[idx] < self.best_gain[r]
            self.best_gain[r[better]] = gains[idx][better]
            self.best_with[r[better]] = other[idx][better]
            self.best_joint[r[better]] = joint[idx][better]
        self.heap = [
            (float(self.best_gain[r]), int(r), int(self.version[r]))
            for r in np.flatnonzero(self.best_with >= 0)
        ]
        heapq.heapify(self.heap)

    def gains_with(self, i, others):
        """ΔL of merging ``i`` with each of ``others`` (sorted ids), and the unions' lengths."""
        others = np.fromiter(others, dtype=np.int64, count=len(others))
        nbi = self.nb[i]
        border = np.fromiter((nbi[k] for k in others.tolist()), dtype=np.float64, count=len(others))
        idx = np.full(len(others), i)
        joint = union_length(self.n, self.s, self.q, idx, others, self.eps, weight=self.weight)
        g = merge_gain(
            self.n, self.s, self.q, idx, others, border, self.eps, self.bb,
            weight=self.weight, own=self.own, joint=joint,
        )  # fmt: skip
        return others, g, joint

    def _set_best(self, r, gain, partner, joint=np.nan):
        self.dirty[r] = False
        self.best_gain[r] = gain
        self.best_with[r] = partner
        self.best_joint[r] = joint
        self.version[r] += 1
        if partner >= 0:
            heapq.heappush(self.heap, (gain, r, int(self.version[r])))

    def _best_of(self, r):
        """``r``'s cheapest merge, recomputed (the first neighbour by id among equals)."""
        if not self.nb[r]:
            self._set_best(r, np.inf, -1)
            return None
        others, g, joint = self.gains_with(r, sorted(self.nb[r]))
        best = int(np.argmin(g))
        self._set_best(r, float(g[best]), int(others[best]), float(joint[best]))
        return others, g, joint

    def merge(self, i, j, gain):
        """j joins i (or i joins j: the region with more neighbours survives), i's current
        cheapest merge."""
        # The union's length, computed with the gain from the same (current) statistics:
        # n[i] + n[j] there is n[j] + n[i] here, the same bits.
        own = self.best_joint[i]
        if len(self.nb[j]) > len(self.nb[i]):
            i, j = j, i
        self.n[i] += self.n[j]
        self.s[i] += self.s[j]
        self.q[i] += self.q[j]
        self.own[i] = own
        self.alive[j] = False
        ni = self.nb[i]
        ni.pop(j, None)
        for k, c in self.nb[j].items():
            if k == i:
                continue
            ni[k] = ni.get(k, 0) + c
            nk = self.nb[k]
            nk.pop(j, None)
            nk[i] = ni[k]
        self.nb[j] = {}
        self.version[j] += 1
        self.count -= 1
        self.merges.append((i, j))
        self.gains.append(gain)
        found = self._best_of(i)
        if found is None:
            return i
        for k, gk, jk in zip(*(a.tolist() for a in found), strict=True):
            partner = self.best_with[k]
            if gk < self.best_gain[k] or (gk == self.best_gain[k] and not self.dirty[k]):
                self._set_best(k, gk, i, jk)
            elif partner == i or partner == j:
                # k's cheapest merge got dearer: its old gain is a lower bound of the new
                # best (no other pair of k changed). Queue k at that bound; it is
                # recomputed when it comes up, before any merge dearer than the bound.
                self.dirty[k] = True
                self.best_with[k] = -2
                self.version[k] += 1
                heapq.heappush(self.heap, (float(self.best_gain[k]), k, int(self.version[k])))
        return i

    def greedy(self, n_target):
        """Merge best-first while a merge shortens the description (``n_target`` None) or
        until ``n_target`` regions are left."""
        heap = self.heap
        while heap and (n_target is None or self.count > n_target):
            gain, r, v = heap[0]
            if n_target is None and gain >= 0:
                break
            heapq.heappop(heap)
            if not self.alive[r] or v != self.version[r]:
                continue
            if self.dirty[r]:
                self._best_of(r)
                continue
            self.merge(r, int(self.best_with[r]), gain)

    def cleanup(self, min_size):
        """Regions under ``min_size`` pixels join the neighbour that costs the fewest bits,
        smallest first (:func:`segment.speckle.merge_speckle`)."""
        merge_speckle(self, min_size)


def merge_regions(
    n, s, q, edges, *, eps, boundary_bits, weight=1.0, n_regions=None, min_size=0, pre_size=0
):
    """Merge adjacent regions greedily by description length.

    Parameters
    ----------
    n, s, q : ndarrays
        Region statistics from :func:`region_statistics` (entry 0 is left out).
    edges : (a, b, length)
        From :func:`region_borders`.
    eps : float
        Coding distortion (:func:`segment.coding.coding_length`).
    boundary_bits : float
        Bits per pixel of border.
    weight : float
        Pixel weight (resolution normalisation).
    n_regions : int, optional
        Merge until this many regions are left (a cut of the hierarchy); by default merge
        while the description gets shorter, then clean up regions under ``min_size``.
    min_size : float
        Smallest region (pixels) of the default cut.
    pre_size : float
        Regions under this many pixels first join their cheapest neighbour, smallest first
        (speckle of the over-segmentation; much cheaper than best-first merging).

    Returns
    -------
    MergeResult
    """
    if n_regions is not None and n_regions < 1:
        raise ValueError(f"n_regions must be at least 1; got {n_regions}.")
    g = _Graph(n, s, q, edges, eps, boundary_bits, weight)
    if pre_size > 0:
        g.cleanup(pre_size)
    pre = len(g.merges)
    g.start_heap()
    g.greedy(n_regions)
    greedy = len(g.merges) - pre
    if n_regions is None and min_size > 0:
        g.cleanup(min_size)
    m = len(n)
    parent = np.arange(m, dtype=np.int64)
    for i, j in g.merges:  # j joined i: i is always a root when it absorbs j
        parent[j] = i
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    roots = np.flatnonzero(g.alive)
    final = np.full(m, -1, dtype=np.int64)
    final[roots] = np.arange(len(roots))
    mapping = final[parent]
    mapping[0] = -1
    mapping[n <= 0] = -1
    return MergeResult(
        mapping=mapping,
        n_final=len(roots),
        merges=np.array(g.merges, dtype=np.int64).reshape(-1, 2),
        gains=np.array(g.gains, dtype=np.float64),
        pre=pre,
        greedy=greedy,
    )


def relabel(regions, mapping, *, out_dtype=np.int32, fill=-1, out=None):
    """Final labels (H, W) = ``mapping[regions]``, block by block of rows; pixels of region
    0 get ``fill``."""
    H, W = regions.shape
    lut = mapping.astype(out_dtype, copy=True)
    lut[0] = fill
    if out is None:
        out = np.empty((H, W), dtype=out_dtype)
    for a, b in _row_blocks(H, W):
        out[a:b] = lut[regions[a:b]]
    return out
