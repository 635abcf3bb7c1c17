"""Labels from a fitted mixture, in strips of image rows so that memory stays bounded
whatever the image size.

*Smoothing* (``sigma`` > 0): each pixel's log-responsibilities are averaged with its
neighbours' under a Gaussian of ``sigma`` pixels before the most likely component is taken.
Pixel-wise colour clustering gives speckled segments (a noisy pixel flips to a neighbouring
colour's component); pooling the evidence of a neighbourhood removes the speckle and keeps
edges where the evidence changes. The log-responsibilities are clipped at ``LOG_FLOOR``
first, so one pixel that is certain *against* a component cannot veto it for its whole
neighbourhood. Without smoothing each pixel takes its most likely component.
"""

import numpy as np
from scipy import ndimage

from .features import rows_per_strip, strips

#: Log-responsibilities are clipped below at this value before smoothing.
LOG_FLOOR = -10.0


def strip_height(shape, n_components, budget_mib, halo=0):
    """Image rows per strip so that the strip's arrays fit the budget: measured, about six
    (K + 4, rows, W) float32 arrays' worth (features, log-responsibilities, log-likelihoods,
    padded and block-mean copies, smoothing buffers)."""
    H, W = shape
    per_row = max(1, W) * (n_components + 4) * 4 * 6
    rows = int(budget_mib * 2**20 // per_row) - 2 * halo
    return int(min(H, max(8, rows)))


def log_responsibilities(model, X, loglik=None, *, rows_first=False):
    """log r (K, n) float32 of the rows ``X`` (n, D) under ``model``, block by block, or
    its transpose (n, K) with ``rows_first`` (the same values); the log-likelihood of each
    row goes into ``loglik`` (n,) when given."""
    K, n = model.n_components, X.shape[0]
    out = np.empty((n, K) if rows_first else (K, n), dtype=np.float32)
    for block, resp, log_prob in model.iter_blocks(X):
        if loglik is not None:
            loglik[block] = log_prob
        np.log(resp.T if rows_first else resp, out=out[block] if rows_first else out[:, block])
    return out


#: Above this sigma (pixels) the Gaussian is approximated by three box filters, whose cost
#: does not grow with the width (a true Gaussian costs 8 sigma + 1 taps per pixel).
BOX_SIGMA = 2.0


def _box_width(sigma):
    """Odd width w of a box whose three-fold repetition has variance sigma² (w² - 1 = 4σ²)."""
    return max(1, round(float(np.sqrt(4.0 * sigma * sigma + 1.0))) | 1)


def _smooth(field, sigma, axes):
    """Gaussian smoothing of ``field`` along ``axes`` (exact for small sigma, three box
    filters for large), with the image edges extended ('nearest')."""
    if sigma <= BOX_SIGMA:
        sig = [sigma if ax in axes else 0 for ax in range(field.ndim)]
        return ndimage.gaussian_filter(field, sigma=sig, mode="nearest")
    w = _box_width(sigma)
    out = field
    for ax in axes:
        for _ in range(3):
            out = ndimage.uniform_filter1d(out, w, axis=ax, mode="nearest")
    return out


def smoothing_halo(sigma):
    """Rows beyond a strip that its smoothed values depend on."""
    if sigma <= BOX_SIGMA:
        return int(np.ceil(4.0 * sigma))
    return 3 * (_box_width(sigma) // 2)


def smoothed_labels(
    model, data, sigma, *, budget_mib=64.0, out_dtype=np.uint8, fill=255, totals=None
):
    """Labels (H, W) from log-responsibilities smoothed by a Gaussian of ``sigma`` pixels.

    Invisible pixels neither vote nor get a label (they get ``fill``): the smoothing is a
    normalised convolution over the visible pixels only. ``totals`` (a dict), if given,
    receives the log-likelihood of all visible pixels, computed on the way. For a wide
    Gaussian (large images) the smoothing runs on f×f block means (f = sigma // 2) and is
    interpolated back
    bilinearly: the smoothed field varies slowly at that scale, and a pixel whose four
    surrounding blocks agree on the winner takes it directly (the winner of each corner wins
    any convex combination of them), so only pixels near a boundary are interpolated.
    """
    f = _block_factor(sigma, data.shape) if sigma > BOX_SIGMA else 1
    with data.strip_pass():
        if f <= 1:
            return _smoothed_full(model, data, sigma, budget_mib, out_dtype, fill, totals)
        return _smoothed_blocks(model, data, sigma, f, budget_mib, out_dtype, fill, totals)


def _block_factor(sigma, shape):
    """Side f of the blocks of the wide smoothing: sigma / 2, or up to sigma (a block mean's
    own spread, (f² - 1)/12 per axis, stays under sigma²) but no finer than diagonal / 1200,
    so that the low-resolution field is no larger than at the default smoothing of plain
    clustering (diagonal / 600) whatever sigma: its K planes are what the memory of a large
    image's labels is made of."""
    coarse = int(float(np.hypot(*shape)) / 1200.0)
    return max(1, int(sigma // 2), min(int(sigma), coarse))


def colour_table(model, data, *, rows_first=False):
    """Clipped log-responsibilities (K, C) float32 (or (C, K) with ``rows_first``) and
    log-likelihoods (C,) of an image's distinct colours, when its pixels' features are
    looked up in them (8-bit, colour features only), else None.

    The E-step then runs once per colour instead of once per pixel (photos have 5-30 times
    fewer colours than pixels), and each pixel's values are gathered: the same numbers, as
    the E-step treats every row on its own.
    """
    if data.pixels8 is None or data.color_X is None or data.xy:
        return None
    ll = np.empty(len(data.color_X), dtype=np.float64)
    logr = log_responsibilities(model, data.color_X, ll, rows_first=rows_first)
    np.maximum(logr, LOG_FLOOR, out=logr)
    return logr, ll


def _strip_logr(model, data, lo, hi, K, W, core, totals, table=None):
    """Clipped log-responsibilities (K, hi-lo, W) of image rows [lo, hi), and the visible
    mask; the log-likelihood of the visible pixels of the ``core`` rows [a, b) is added to
    ``totals`` (a dict with 'loglik' and 'pixels'), which the figures reuse. ``table``:
    :func:`colour_table` of the image, or None."""
    if table is None:
        X, visible = data.strip_features(lo, hi)
        ll = np.empty(X.shape[0], dtype=np.float64) if totals is not None else None
        logr = log_responsibilities(model, X, ll).reshape(K, hi - lo, W)
        np.maximum(logr, LOG_FLOOR, out=logr)
    else:
        rows = data.colour_rows(lo, hi).ravel().astype(np.intp)
        visible = None if data.visible is None else data.visible[lo:hi]
        logr = np.empty((K, rows.size), dtype=np.float32)
        for k in range(K):  # one 1-D gather per component: faster than a 2-D take
            np.take(table[0][k], rows, out=logr[k])
        logr = logr.reshape(K, hi - lo, W)
        ll = table[1][rows] if totals is not None else None
    if totals is not None:
        a, b = core
        _add_totals(
            totals,
            ll.reshape(hi - lo, W)[a - lo : b - lo],
            None if visible is None else visible[a - lo : b - lo],
        )
    return logr, visible


def _add_totals(totals, ll, visible):
    """Add the log-likelihoods ``ll`` (rows, W) of the visible pixels to ``totals``."""
    if visible is not None:
        ll = ll[visible]
    totals["loglik"] = totals.get("loglik", 0.0) + float(ll.sum())
    totals["pixels"] = totals.get("pixels", 0) + int(ll.size)


def _smoothed_full(model, data, sigma, budget_mib, out_dtype, fill, totals=None):
    H, W = data.shape
    K = model.n_components
    halo = smoothing_halo(sigma)
    height = strip_height((H, W), K, budget_mib, halo)
    labels = np.empty((H, W), dtype=out_dtype)
    table = colour_table(model, data)
    for a, b in strips(H, height):
        lo, hi = max(0, a - halo), min(H, b + halo)
        logr, visible = _strip_logr(model, data, lo, hi, K, W, (a, b), totals, table)
        if data.visible is not None:
            m = visible.astype(np.float32)
            logr *= m
            smooth = _smooth(logr, sigma, (1, 2)) / np.maximum(_smooth(m, sigma, (0, 1)), 1e-12)
        else:
            smooth = _smooth(logr, sigma, (1, 2))
        labels[a:b] = np.argmax(smooth[:, a - lo : a - lo + (b - a)], axis=0)
        if data.visible is not None:
            labels[a:b][~visible[a - lo : a - lo + (b - a)]] = fill
    return labels


def _block_mean(x, f):
    """Means of f×f blocks over the last two axes, each axis extended by its last value to a
    multiple of f (what ``np.pad(mode="edge")`` gives, without the padded copy), as sums of
    f strided slices per axis (numpy reduces fast along contiguous axes only)."""
    w = x.shape[-1]
    cols = x[..., 0::f].copy()
    for j in range(1, f):
        part = x[..., j::f]
        n = part.shape[-1]
        cols[..., :n] += part
        if n < cols.shape[-1]:
            cols[..., n:] += x[..., w - 1 : w]
    return _row_means(cols, f)


def _gathered_block_mean(table_t, rows, f, weight=None):
    """:func:`_block_mean` of ``table_t[rows]`` (times ``weight``) with the components first,
    (K, h', w'), for ``rows`` (h, w) indices into the rows of ``table_t`` (C, K), without
    making the full-resolution array: each column phase is gathered (a pixel's K values
    at once, one cache line) and added at once (the same float32 sums in the same order).
    """
    K = table_t.shape[1]
    h, w = rows.shape
    n_cols = -(-w // f)
    cols = np.empty((h, n_cols, K), dtype=np.float32)
    for j in range(f):
        index = np.ascontiguousarray(rows[:, j::f], dtype=np.intp)
        part = np.take(table_t, index, axis=0)  # (h, n, K)
        if weight is not None:
            part *= weight[:, j::f, None]
        n = part.shape[1]
        if j == 0:
            cols[...] = part
            continue
        cols[:, :n] += part
        if n < n_cols:
            last = np.take(table_t, rows[:, w - 1], axis=0)
            if weight is not None:
                last *= weight[:, w - 1 : w]
            cols[:, n:] += last[:, None, :]
    return _row_means(np.moveaxis(cols, 2, 0), f)


def _row_means(cols, f):
    """Second half of :func:`_block_mean`: sums of f strided row slices of the column sums,
    the last row extended, divided by f²."""
    h = cols.shape[-2]
    out = cols[..., 0::f, :].copy()
    for i in range(1, f):
        part = cols[..., i::f, :]
        n = part.shape[-2]
        out[..., :n, :] += part
        if n < out.shape[-2]:
            out[..., n:, :] += cols[..., h - 1 : h, :]
    out *= 1.0 / (f * f)
    return out


def _linear(n_full, offset, f, n_low):
    """Lower cell, upper cell and weight of the upper one for full-resolution positions
    ``offset + arange(n_full)`` on a grid of block centres ((i + 0.5) f - 0.5)."""
    pos = (np.arange(n_full) + offset + 0.5) / f - 0.5
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, n_low - 1)
    i1 = np.minimum(i0 + 1, n_low - 1)
    w = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    return i0, i1, w


def _smoothed_blocks(model, data, sigma, f, budget_mib, out_dtype, fill, totals=None):
    """Wide smoothing: the f×f block means of the log-responsibilities of the whole image
    (small: K (H/f) (W/f) values) are gathered strip by strip, smoothed at once, then read
    back by :func:`_interpolated_argmax`; every pixel's responsibilities are computed once."""
    H, W = data.shape
    K = model.n_components
    # A block mean has variance (f² - 1)/12 per axis: the low-resolution Gaussian adds the rest.
    sigma_low = float(np.sqrt(max(sigma**2 - (f * f - 1) / 12.0, 0.25))) / f
    Hp, Wp = -(-H // f) * f, -(-W // f) * f
    num = np.empty((K, Hp // f, Wp // f), dtype=np.float32)
    den = np.empty((Hp // f, Wp // f), dtype=np.float32) if data.visible is not None else None
    height = max(f, strip_height((H, W), K, budget_mib) // f * f)
    # Each colour's K values side by side: a pixel's are gathered at once.
    table_t, loglik = colour_table(model, data, rows_first=True) or (None, None)
    for a, b in strips(H, height):
        hp = -(-(b - a) // f) * f
        low_rows = slice(a // f, a // f + hp // f)
        if table_t is not None:
            # Straight from the colours' table to the block sums: no full-resolution array.
            visible = None if data.visible is None else data.visible[a:b]
            m = None if visible is None else visible.astype(np.float32)
            rows = data.colour_rows(a, b)
            if totals is not None:
                _add_totals(totals, loglik[rows], visible)
            num[:, low_rows] = _gathered_block_mean(table_t, rows, f, m)
        else:
            logr, visible = _strip_logr(model, data, a, b, K, W, (a, b), totals)
            m = None if visible is None else visible.astype(np.float32)
            if m is not None:
                logr *= m
            num[:, low_rows] = _block_mean(logr, f)
            del logr
        if den is not None:
            den[low_rows] = _block_mean(m, f)
    low = _smooth(num, sigma_low, (1, 2))
    if den is not None:
        low /= np.maximum(_smooth(den, sigma_low, (0, 1)), 1e-12)
    labels = np.empty((H, W), dtype=out_dtype)
    cols = _linear(W, 0, f, Wp // f)
    winners = _block_winners(low, out_dtype)  # once for all strips
    for a, b in strips(H, rows_per_strip(W, 1 << 20)):
        labels[a:b] = _interpolated_argmax(low, winners, _linear(b - a, a, f, Hp // f), cols)
    if data.visible is not None:
        labels[~data.visible] = fill
    return labels


def _block_winners(low, dtype):
    """The winner of every block (argmax over the components of ``low`` (K, h, w)) as
    ``dtype``, and whether it also wins the blocks right, below and below-right of it (the
    last row and column are their own neighbours, as in :func:`_linear`)."""
    win = np.argmax(low, axis=0).astype(dtype)
    ext = np.pad(win, ((0, 1), (0, 1)), mode="edge")
    agree = (ext[:-1, 1:] == win) & (ext[1:, :-1] == win) & (ext[1:, 1:] == win)
    return win, agree


def _interpolated_argmax(low, winners, rows, cols):
    """argmax over components of the bilinear interpolation of ``low`` (K, h, w) at the
    full-resolution grid given by ``rows`` / ``cols`` (see :func:`_linear`); ``winners``
    from :func:`_block_winners`. A pixel whose four surrounding blocks share a winner takes
    it (it wins any convex combination of them); only the others are interpolated."""
    win, agree = winners
    r0, r1, wr = rows
    c0, c1, wc = cols
    out = win.take(r0, axis=0).take(c0, axis=1)
    undecided = ~agree.take(r0, axis=0).take(c0, axis=1)
    yy, xx = np.nonzero(undecided)
    if yy.size:
        wy, wx = wr[yy], wc[xx]
        K, h, w = low.shape
        planes = low.reshape(K, h * w)  # a 1-D take per corner: cheaper than low[:, y, x]
        top, bottom, left, right = r0[yy] * w, r1[yy] * w, c0[xx], c1[xx]
        value = (
            np.take(planes, top + left, axis=1) * ((1 - wy) * (1 - wx))
            + np.take(planes, top + right, axis=1) * ((1 - wy) * wx)
            + np.take(planes, bottom + left, axis=1) * (wy * (1 - wx))
            + np.take(planes, bottom + right, axis=1) * (wy * wx)
        )
        out[yy, xx] = np.argmax(value, axis=0)
    return out


def pixel_labels(model, data, *, budget_mib=64.0, out_dtype=np.uint8, fill=255):
    """Most likely component (H, W) of every pixel, strip by strip (no smoothing)."""
    H, W = data.shape
    labels = np.empty((H, W), dtype=out_dtype)
    with data.strip_pass():
        for a, b in strips(H, strip_height((H, W), model.n_components, budget_mib)):
            X, visible = data.strip_features(a, b)
            labels[a:b].reshape(-1)[:] = model.predict(X)
            if visible is not None:
                labels[a:b][~visible] = fill
    return labels
