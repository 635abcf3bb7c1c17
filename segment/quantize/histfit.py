"""A palette fitted to a colour histogram: weighted k-means++ seeds, then weighted Lloyd
iterations whose nearest-colour step is :func:`segment.quantize.histogram.nearest_colour`.

The rows are distinct colours (or cells of them, see :func:`segment.quantize.histogram.binned`)
weighted by their pixel counts, so the squared error minimised is exactly that of the
nearest-colour mapping of all the pixels (up to the binning). A Lloyd iteration costs one
nearest-colour pass over the rows, about as much for 256 colours as for 16 (each row is
compared with the few colours that can be nearest to its cell), and the seeding costs
O(rows × K) cheap vector operations.
"""

import heapq

import numpy as np

from ..colorkeys import color_keys, keys_to_rgb
from .histogram import nearest_colour

#: Speed (1 = slowest, best; 10 = fastest) → (bits dropped per channel, Lloyd iterations for
#: k > 32, Lloyd iterations for k <= 32, polishing iterations for k <= 16 (fewer up to 32) on
#: cells 4× finer). Many colours lose little to few iterations (3 instead of 5 at speed 4:
#: 0.016 dB at k = 64, 0.013 dB at k = 256 on the sample photos); few colours are fitted on
#: coarse cells, whose iterations are cheap, then polished (+0.07 dB at k = 16; 2-level cells
#: do as well as the exact colours, with 117 k rows instead of 563 k on a 12 MP photo).
SPEEDS = {
    1: (0, 40, 40, 0),
    2: (1, 20, 40, 15),
    3: (1, 10, 40, 10),
    4: (2, 3, 20, 15),
    5: (2, 3, 16, 8),
    6: (2, 2, 12, 0),
    7: (3, 2, 8, 0),
    8: (3, 1, 4, 0),
    9: (3, 0, 0, 0),
    10: (4, 0, 0, 0),
}


def seed_centres(rows, weight, k, rng):
    """Weighted k-means++ (Arthur & Vassilvitskii 2007): each new centre is a row drawn with
    probability proportional to its weight times its squared distance to the nearest centre
    so far.

    Parameters
    ----------
    rows : ndarray (m, 3) float
    weight : ndarray (m,) float
    k : int
        At most m.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray (k, 3) float64
    """
    x = np.asarray(rows, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    centres = np.empty((k, 3))
    first = rng.choice(len(x), p=w / w.sum())
    centres[0] = x[first]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        p = w * d2
        total = p.sum()
        if total <= 0:  # fewer distinct rows than k: the rest duplicates, removed later
            centres[j:] = centres[0]
            break
        i = int(np.searchsorted(np.cumsum(p), rng.random() * total, side="right"))
        centres[j] = x[min(i, len(x) - 1)]
        np.minimum(d2, ((x - centres[j]) ** 2).sum(axis=1), out=d2)
    return centres


def split_centres(rows, weight, k):
    """Initial centres by variance splits (after Wu 1991): the cluster with the largest
    weighted squared error is cut in two across its principal axis, at the cut that
    leaves the least squared error along that axis, until there are ``k`` clusters.

    Returns
    -------
    ndarray (k', 3) float64
        The clusters' weighted means, k' <= k (fewer when clusters cannot be cut).
    """
    x = np.asarray(rows, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    # A heap of (-sse, order, ids, mean); the order makes ties deterministic.
    ids = np.arange(len(x))
    sse, mean = _cluster(x, w, ids)
    heap, done, n = [(-sse, 0, ids, mean)], [], 1
    while heap and len(heap) + len(done) < k:
        neg, _, ids, mean = heapq.heappop(heap)
        if neg >= 0 or len(ids) < 2:
            done.append(mean)
            continue
        left, right = _cut(x[ids], w[ids])
        for part in (ids[left], ids[right]):
            sse, mean = _cluster(x, w, part)
            heapq.heappush(heap, (-sse, n, part, mean))
            n += 1
    return np.array(done + [h[3] for h in sorted(heap, key=lambda h: h[1])])


def _cluster(x, w, ids):
    xs, ws = x[ids], w[ids]
    mean = ws @ xs / ws.sum()
    return float(ws @ ((xs - mean) ** 2).sum(axis=1)), mean


def _cut(xs, ws):
    """Masks of the two halves of the best cut of a cluster across its principal axis."""
    mean = ws @ xs / ws.sum()
    d = xs - mean
    cov = (d * ws[:, None]).T @ d
    axis = np.linalg.eigh(cov)[1][:, -1]
    t = d @ axis
    order = np.argsort(t, kind="stable")
    tw, tt = ws[order], t[order]
    # Along the axis, SSE of a cut after position i = total - W_l m_l^2 - W_r m_r^2.
    cw = np.cumsum(tw)[:-1]
    cs = np.cumsum(tw * tt)[:-1]
    total_w, total_s = cw[-1] + tw[-1], cs[-1] + tw[-1] * tt[-1]
    gain = cs**2 / cw + (total_s - cs) ** 2 / (total_w - cw)
    # Only between distinct projections, so that equal colours stay together.
    gain[tt[1:] <= tt[:-1]] = -np.inf
    at = int(np.argmax(gain)) + 1 if np.isfinite(gain).any() else len(tt) // 2
    left = np.zeros(len(xs), bool)
    left[order[:at]] = True
    return left, ~left


def lloyd(rows, weight, centres, *, max_iter=16, tol=1e-4):
    """Weighted Lloyd iterations; the squared error never increases.

    A colour no row is nearest to moves to the row with the largest weighted error. Stops
    after ``max_iter`` iterations or when the squared error falls by less than ``tol`` of
    itself.

    Returns
    -------
    centres : ndarray (k, 3) float64
    sse : float
        Weighted squared error of the returned centres (0–255 units).
    """
    x = np.asarray(rows, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    c = np.array(centres, dtype=np.float64)
    k = len(c)
    idx = nearest_colour(x, c)
    sse = float(w @ ((x - c[idx]) ** 2).sum(axis=1))
    for _ in range(max_iter):
        mass = np.bincount(idx, weights=w, minlength=k)
        new = np.empty_like(c)
        for axis in range(3):
            new[:, axis] = np.bincount(idx, weights=w * x[:, axis], minlength=k)
        empty = mass == 0
        new[~empty] /= mass[~empty, None]
        if empty.any():
            err = w * ((x - c[idx]) ** 2).sum(axis=1)
            worst = np.argsort(err)[::-1][: int(empty.sum())]
            new[empty] = x[worst]
        new_idx = nearest_colour(x, new)
        new_sse = float(w @ ((x - new[new_idx]) ** 2).sum(axis=1))
        if new_sse > sse:  # cannot happen in exact arithmetic; keep the better one
            break
        done = sse - new_sse <= tol * sse
        c, idx, sse = new, new_idx, new_sse
        if done:
            break
    return c, sse


def fit_histogram_palette(rows, weight, k, *, seed=0, max_iter=16):
    """A palette of at most ``k`` colours for weighted rows (0–255 units).

    Returns
    -------
    ndarray (P, 3) uint8
        Distinct colours, P <= k, ordered dark to light.
    """
    x = np.asarray(rows, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if len(x) <= k:
        return order_palette(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    rng = np.random.default_rng(seed)
    centres = seed_centres(x, w, k, rng)
    centres, _ = lloyd(x, w, centres, max_iter=max_iter)
    return order_palette(np.clip(np.rint(centres), 0, 255).astype(np.uint8))


def order_palette(palette):
    """Distinct colours of a uint8 palette, ordered dark to light (luma, then value)."""
    # Sorted distinct keys without np.unique, which imports numpy.ma (start-up time).
    keys = np.sort(color_keys(np.asarray(palette, dtype=np.uint8).reshape(-1, 3)))
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    pal = keys_to_rgb(keys, np.uint8)
    luma = pal.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    return pal[np.lexsort((pal[:, 2], pal[:, 1], pal[:, 0], luma))]
