"""Window-PCA texture features (as in TBES: Mobahi, Rao, Yang, Sastry & Ma, "Segmentation
of natural images by texture and boundary compression", IJCV 2011).

Each pixel is described by the CIELAB values of the ``size`` × ``size`` window around it,
each window's own mean per channel taken out (the colour is coded by the colour features;
what is left is the pattern: edges, stripes, grain and their orientation). The windows are
reduced to their first ``dims`` principal directions, fitted per image on a regular grid of
windows. A pixel's feature d is then Σ_taps window[tap] · v_d[tap], which is computed tap by
tap on a strip of rows (a halo of ``size // 2`` rows above and below) so that the features of
a large image never exist at once.

On an image larger than the reference size the window's taps are ``scale`` pixels apart on
the image's ``scale`` × ``scale`` block means, so that a window covers the same part of the
scene at any resolution.
"""

import numpy as np
from scipy import ndimage

__all__ = [
    "WindowBasis",
    "fill_missing",
    "fit_window_basis",
    "reduced_image",
    "texture_map",
    "window_features",
    "window_scale",
]

#: Windows sampled (on a regular grid) to fit the principal directions.
FIT_WINDOWS = 5000


class WindowBasis:
    """Principal directions of an image's mean-removed windows.

    Attributes
    ----------
    size : int
        Window side (odd).
    scale : int
        Pixels between taps (1 at the reference size).
    mean : ndarray (size² · 3,)
        Mean window (mean-removed windows: close to zero).
    components : ndarray (size² · 3, dims)
        Principal directions, by decreasing variance, each of unit norm, signs fixed so
        that the largest entry of each is positive.
    variances : ndarray (dims,)
    """

    def __init__(self, size, scale, mean, components, variances):
        self.size, self.scale = size, scale
        self.mean, self.components, self.variances = mean, components, variances

    @property
    def halo(self):
        """Image rows above and below a strip that its features depend on."""
        return (self.size // 2) * self.scale + self.scale


def window_scale(n_pixels, reference):
    """Tap spacing for an image of ``n_pixels``: 1 up to about twice the reference size."""
    return max(1, round(float(np.sqrt(n_pixels / reference))))


def _check_size(size):
    if size < 3 or size % 2 == 0:
        raise ValueError(f"window size must be odd and at least 3; got {size}.")


def _prepared(lab, scale):
    """The image the taps read: CIELAB itself, or its scale × scale box means (centred at
    each pixel) on a larger image."""
    if scale <= 1:
        return lab
    return ndimage.uniform_filter(lab, size=(scale, scale, 1), mode="nearest")


def _windows(img, rows, cols, size, scale):
    """Mean-removed windows (n, size² · 3) float64 centred at pixels (rows, cols) of ``img``
    (h, w, 3), taps ``scale`` apart; every window lies inside ``img``."""
    span = (size - 1) * scale + 1
    r = (size // 2) * scale
    view = np.lib.stride_tricks.sliding_window_view(img, (span, span), axis=(0, 1))
    win = view[rows - r, cols - r][..., ::scale, ::scale].astype(np.float64)  # (n, 3, s, s)
    win -= win.mean(axis=(2, 3), keepdims=True)
    return win.transpose(0, 2, 3, 1).reshape(len(rows), -1)


def fit_window_basis(strip_lab, shape, *, size=7, dims=4, scale=1, n_windows=FIT_WINDOWS):
    """Fit the principal directions of the windows of an image.

    Parameters
    ----------
    strip_lab : callable ``strip_lab(a, b) -> (b - a, W, 3)``
        CIELAB of image rows [a, b).
    shape : (H, W)
    size, dims, scale : int
        Window side (odd), principal directions kept, tap spacing.
    n_windows : int
        About this many windows, on a regular grid, give the fit.

    Returns
    -------
    WindowBasis
    """
    _check_size(size)
    H, W = shape
    r = (size // 2) * scale
    halo = r + scale
    # Windows wholly inside the image (on an image smaller than a window: the edge one).
    ys = np.arange(r, H - r) if H > 2 * r else np.array([H // 2])
    xs = np.arange(r, W - r) if W > 2 * r else np.array([W // 2])
    grid = max(1, int(np.sqrt(len(ys) * len(xs) / max(n_windows, 1))))
    ys, xs = ys[grid // 2 :: grid], xs[grid // 2 :: grid]
    P = size * size * 3
    total = np.zeros(P)
    outer = np.zeros((P, P))
    count = 0
    per = max(1, 8192 // max(len(xs), 1))  # grid rows per block: ~8k windows
    for a0 in range(0, len(ys), per):
        rows = ys[a0 : a0 + per]
        a, b = int(rows[0]), int(rows[-1]) + 1
        lo, hi = max(0, a - halo), min(H, b + halo)
        img = _prepared(strip_lab(lo, hi), scale)
        if H <= 2 * r or W <= 2 * r:
            img = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
            lo -= r
            xs_ = xs + r
        else:
            xs_ = xs
        rr = np.repeat(rows - lo, len(xs))
        cc = np.tile(xs_, len(rows))
        win = _windows(img, rr, cc, size, scale)
        total += win.sum(axis=0)
        outer += win.T @ win
        count += len(win)
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:dims]
    comps = vectors[:, order]
    # Signs fixed so that the same image always gives the same features.
    big = np.argmax(np.abs(comps), axis=0)
    comps *= np.sign(comps[big, np.arange(comps.shape[1])])
    return WindowBasis(size, scale, mean, comps, np.maximum(values[order], 0.0))


def window_features(lab, basis, rows=None, step=1):
    """Features (n_rows, n_cols, dims) float32 of the pixels of ``lab`` (h, w, 3) in the
    rows ``rows`` (a slice of ``lab``'s rows, default all) and every ``step``-th column.

    ``lab`` must hold ``basis.halo`` rows of context above and below ``rows`` where the
    image has them (rows beyond the image edge are its edge row extended).
    """
    size, scale = basis.size, basis.scale
    img = _prepared(np.asarray(lab, dtype=np.float32), scale)
    h, w, _ = img.shape
    rows = slice(0, h) if rows is None else rows
    ry = np.arange(h)[rows][::step]
    cx = np.arange(0, w, step)
    r = size // 2
    offs = np.arange(-r, r + 1) * scale
    dims = basis.components.shape[1]
    # v[tap] (size, size, 3, dims); the window's own mean is taken out by removing the mean
    # of each channel's weights from the taps (Σ (x - x̄) v = Σ x (v - v̄)).
    v = basis.components.reshape(size, size, 3, dims).astype(np.float64)
    v = v - v.mean(axis=(0, 1), keepdims=True)
    v = v.astype(np.float32)
    shift = np.float32(basis.mean @ basis.components)
    out = np.zeros((len(ry), len(cx), dims), dtype=np.float32)
    # Columns edge-extended once, so that each tap is a strided slice (no gather).
    pad = r * scale
    wide = np.pad(img, ((0, 0), (pad, pad), (0, 0)), mode="edge")
    for i, dy in enumerate(offs):
        band = wide[np.clip(ry + dy, 0, h - 1)]
        for j, dx in enumerate(offs):
            x0 = pad + dx
            out += band[:, x0 : x0 + w : step] @ v[i, j]
    out -= shift
    return out


def reduced_image(strip_rgb, shape, scale):
    """The image's ``scale`` × ``scale`` block means (ceil(H/scale), ceil(W/scale), 3)
    float32, gathered strip by strip (the last blocks' missing pixels are the edge
    extended); the image itself when ``scale`` is 1."""
    H, W = shape
    if scale <= 1:
        return np.asarray(strip_rgb(0, H), dtype=np.float32)
    h, w = -(-H // scale), -(-W // scale)
    out = np.empty((h, w, 3), dtype=np.float32)
    rows = max(1, (1 << 20) // max(W, 1) // scale) * scale
    for a in range(0, H, rows):
        b = min(H, a + rows)
        x = np.asarray(strip_rgb(a, b), dtype=np.float32)
        hp = -(-(b - a) // scale) * scale
        # Channel planes, edge-extended to whole blocks: a block's taps are then strided
        # rows of w values (with the channels last, numpy would add runs of three).
        planes = np.empty((3, hp, w * scale), dtype=np.float32)
        planes[:, : b - a, :W] = x.transpose(2, 0, 1)
        planes[:, : b - a, W:] = planes[:, : b - a, W - 1 : W]
        planes[:, b - a :] = planes[:, b - a - 1 : b - a]
        out[a // scale : a // scale + hp // scale] = _block_means(planes, scale).transpose(1, 2, 0)
    return out


def _block_means(planes, f):
    """Means (C, h / f, w / f) of the f × f blocks of ``planes`` (C, h, w) float32: each
    block's values added one after the other in row-major order, then divided by f²
    (what ``reshape(C, h / f, f, w / f, f).mean(axis=(2, 4))`` computes, bit for bit, in
    a few strided passes instead of numpy's reduction over two inner axes)."""
    C, h, w = planes.shape
    blocks = planes.reshape(C, h // f, f, w // f, f)
    acc = blocks[:, :, 0, :, 0].copy()
    for i in range(f):
        for j in range(f):
            if i or j:
                acc += blocks[:, :, i, :, j]
    # As np.mean divides: by the count as an intp, in float64, cast back.
    np.true_divide(acc, np.intp(f * f), out=acc, casting="unsafe")
    return acc


def texture_map(lab, *, size=7, dims=4, energy=0.0):
    """Window-PCA texture features (h, w, dims) float32 of a CIELAB image (h, w, 3): the
    basis fitted on the image itself; with ``energy`` > 0 each response f is replaced by
    its local energy sqrt(G_energy * f²) (a Gaussian of ``energy`` pixels), which keeps the
    pattern's strength and orientation but not its phase, so that a striped region has
    nearly constant features."""
    lab = np.asarray(lab, dtype=np.float32)
    basis = fit_window_basis(lambda a, b: lab[a:b], lab.shape[:2], size=size, dims=dims)
    f = window_features(lab, basis)
    if energy > 0:
        f = np.sqrt(ndimage.gaussian_filter(f * f, (energy, energy, 0), mode="nearest"))
    return f


def fill_missing(img):
    """``img`` (h, w, C) with each non-finite value (a missing channel, an invisible pixel)
    replaced by the nearest known value of its channel, as the image edge is extended: a
    window that reaches past the known pixels sees their continuation, not an edge (and a
    NaN does not spread over every window that sees it). A channel with no known value is 0.
    """
    out = np.array(img, dtype=np.float32)
    for c in range(out.shape[2]):
        bad = ~np.isfinite(out[..., c])
        if not bad.any():
            continue
        if bad.all():
            out[..., c] = 0.0
            continue
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        out[..., c] = out[..., c][tuple(idx)]
    return out
