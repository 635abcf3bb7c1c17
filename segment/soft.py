"""Soft outputs: what the mixture knows beyond one label per pixel.

- ``soft``: each pixel coloured by the responsibility-weighted mix of the components'
  mean colours (a hard label would pick one of them);
- ``uncertainty``: the entropy of the responsibilities, H = -Σ r log r in [0, log K],
  written as grey 0–255 for 0–log K (black = certain, white = undecided between all);
- ``outliers``: the pixel's log-likelihood under the mixture, written as grey with white for
  the least likely pixels (the 1st percentile of the image and below) and black for the most
  likely (99th percentile and above): bright = poorly explained;
- ``overlay``: the boundaries of the final segments drawn on the photo;
- masks: one black-and-white image per component.

All are computed strip by strip (see :mod:`segment.labels`) with the fitted model's block API
(:meth:`gmm.GaussianMixture.iter_blocks`), so memory stays bounded by the outputs themselves.
"""

import numpy as np

from .features import rows_per_strip, strips

#: Colour of segment boundaries in the overlay (bright yellow reads on most photos).
BOUNDARY_COLOR = np.array([255, 230, 0], dtype=np.uint8)


def _loglik_range(model, data, rng_seed=0, sample=1 << 20):
    """1st and 99th percentiles of the per-pixel log-likelihood (weighted by pixel counts
    for distinct colours, on a uniform sample of at most ``sample`` rows otherwise)."""
    X, w = data.X, data.weight
    if w is None and len(X) > sample:
        idx = np.sort(np.random.default_rng(rng_seed).choice(len(X), sample, replace=False))
        X = X[idx]
    ll = model.score_samples(X)
    order = np.argsort(ll)
    cum = np.cumsum(np.ones(len(ll)) if w is None else w[order])
    cum /= cum[-1]
    lo = ll[order][min(len(ll) - 1, np.searchsorted(cum, 0.01))]
    hi = ll[order][min(len(ll) - 1, np.searchsorted(cum, 0.99))]
    return float(lo), float(max(hi, lo + 1e-9))


def soft_maps(seg):
    """The soft, uncertainty and outlier maps of a segmentation.

    Returns
    -------
    dict
        ``soft`` (H, W, 3) uint8, ``uncertainty`` (H, W) uint8, ``outliers`` (H, W) uint8,
        and ``entropy_max`` = log K, ``loglik_range`` = the (low, high) log-likelihoods that
        map to white and black in ``outliers``.
    """
    model, data = seg.model, seg.data
    H, W = data.shape
    K = model.n_components
    palette = seg.quantized_palette.astype(np.float32)
    lo, hi = _loglik_range(model, data)
    log_k = float(np.log(K)) if K > 1 else 1.0
    soft = np.zeros((H, W, 3), dtype=np.uint8)
    unc = np.zeros((H, W), dtype=np.uint8)
    out = np.zeros((H, W), dtype=np.uint8)
    with data.strip_pass():
        for a, b in strips(H, rows_per_strip(W, 1 << 18)):
            X, _ = data.strip_features(a, b)
            n = X.shape[0]
            mix = np.empty((n, 3), np.float32)
            ent = np.empty(n, np.float32)
            ll = np.empty(n, np.float32)
            for block, resp, log_prob in model.iter_blocks(X):
                ll[block] = log_prob
                mix[block] = resp.T @ palette
                with np.errstate(divide="ignore", invalid="ignore"):
                    ent[block] = -np.where(resp > 0, resp * np.log(resp), 0.0).sum(axis=0)
            soft[a:b] = np.clip(np.rint(mix), 0, 255).astype(np.uint8).reshape(b - a, W, 3)
            unc[a:b] = (
                np.clip(np.rint(ent / log_k * 255), 0, 255).astype(np.uint8).reshape(b - a, W)
            )
            scaled = (hi - ll.astype(np.float64)) / (hi - lo) * 255
            out[a:b] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8).reshape(b - a, W)
    return {
        "soft": soft,
        "uncertainty": unc,
        "outliers": out,
        "entropy_max": log_k,
        "loglik_range": (lo, hi),
    }


def boundaries(labels, visible=None, width=1):
    """Pixels (H, W) bool where the label differs from a 4-neighbour, thickened to ``width``."""
    edge = np.zeros(labels.shape, dtype=bool)
    diff_v = labels[1:] != labels[:-1]
    diff_h = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= diff_v
    edge[:-1] |= diff_v
    edge[:, 1:] |= diff_h
    edge[:, :-1] |= diff_h
    if width > 1:
        from scipy import ndimage

        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    if visible is not None:
        edge &= visible
    return edge


def overlay(data, labels):
    """The photo (H, W, 3) uint8 with the segment boundaries drawn over it."""
    H, W = data.shape
    img = np.empty((H, W, 3), dtype=np.uint8)
    for a, b in strips(H, rows_per_strip(W, 1 << 20)):
        img[a:b] = np.clip(np.rint(data.strip_rgb(a, b) * 255), 0, 255).astype(np.uint8)
    width = max(1, round(np.hypot(H, W) / 1500))
    img[boundaries(labels, data.visible, width)] = BOUNDARY_COLOR
    return img
