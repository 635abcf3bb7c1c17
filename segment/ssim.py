"""SSIM over the visible pixels only.

scikit-image's ``structural_similarity`` takes the local means, variances and covariance of
every 7×7 window, whatever the pixels hold: next to a transparent area the colours stored
under it (often black, or anything an editor left there) enter the figure of the visible
pixels around it, and two images that look the same get different SSIM. Here each window's
statistics are those of its visible pixels only (sums of the visible pixels divided by their
count, the sample covariance over that count); with every pixel visible this is
scikit-image's map exactly (same constants, uniform window, sample covariance).
"""

import numpy as np

__all__ = ["masked_ssim_map"]

K1, K2 = 0.01, 0.03


def masked_ssim_map(x, y, visible, *, win=7, data_range=1.0):
    """Per-pixel, per-channel SSIM of ``x`` against ``y`` with windows of visible pixels.

    Parameters
    ----------
    x, y : ndarray (H, W, C) float
    visible : ndarray (H, W) bool
    win : int
        Side of the uniform window (odd).
    data_range : float

    Returns
    -------
    S : ndarray (H, W, C) float64
        The SSIM map; meaningful where ``defined``.
    defined : ndarray (H, W) bool
        Visible pixels whose window holds at least two visible pixels (a sample variance
        needs two).
    """
    from scipy.ndimage import uniform_filter

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    v = np.asarray(visible, np.float64)
    n_win = float(win**2)

    def mean(a):  # the window mean of a 2-D array, as scikit-image filters it
        return uniform_filter(a, size=win)

    share = mean(v)  # visible share of each window
    count = np.rint(share * n_win)
    defined = visible & (count >= 2)
    safe = np.where(defined, share, 1.0)
    cov_norm = np.where(defined, count, 2.0) / (np.where(defined, count, 2.0) - 1.0)
    C1, C2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    S = np.empty(x.shape, np.float64)
    for c in range(x.shape[2]):
        xc, yc = x[..., c] * v, y[..., c] * v
        ux, uy = mean(xc) / safe, mean(yc) / safe
        uxx = mean(xc * x[..., c]) / safe
        uyy = mean(yc * y[..., c]) / safe
        uxy = mean(xc * y[..., c]) / safe
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        A1, A2 = 2 * ux * uy + C1, 2 * vxy + C2
        B1, B2 = ux**2 + uy**2 + C1, vx + vy + C2
        S[..., c] = (A1 * A2) / (B1 * B2)
    return S, defined
