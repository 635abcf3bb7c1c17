"""Description lengths (bits) of image regions, from their sufficient statistics.

A region's pixels are coded as samples of one Gaussian over their features, up to a
distortion ε² per pixel (the lossy coding length of Yang, Wright, Ma & Sastry, "Unsupervised
segmentation of natural images via lossy data compression", CVIU 2008):

    L(n, μ, Σ) = (n + D)/2 · log2 det(I + D/ε² · Σ) + D/2 · log2(1 + ‖μ‖²/ε²)

where Σ is the region's (biased) covariance. The first term is the bits of the n pixels
coded in the Gaussian's principal directions up to ε, plus the bits of the D directions
themselves; the second codes the mean. A region is carried by (n, Σ x, Σ x xᵀ), so two
regions' union has the sum of their statistics and its length costs O(D³) whatever the
regions' sizes (D is 3–6 here).

The boundary between regions costs ``boundary_bits`` per pixel of shared border (a chain
code of the contour, as in Mobahi et al., "Segmentation of natural images by texture and
boundary compression", IJCV 2011). Merging two adjacent regions changes the description by

    ΔL = L(A ∪ B) − L(A) − L(B) − boundary_bits · border(A, B)

which is negative when one Gaussian codes both regions' pixels nearly as well as two do.
``border`` may be a weighted length (each pixel of border counted by a weight in [0, 1],
:func:`segment.mdl.edge_cost`): a contour along a strong image edge is cheaper to code.

``weight`` scales the pixel counts (and ``sqrt(weight)`` the border lengths) so that an image
is coded as if it had a reference size: the same scene at 12 MP and at 0.15 MP then gives
the same segments, instead of ever more regions as the pixels (but not the borders) grow.
"""

import numpy as np

__all__ = ["coding_length", "merge_gain", "partition_length", "union_length"]

_LOG2 = np.log(2.0)


def _covariances(n, s, q):
    """Biased covariances (m, D, D) of regions with counts n (m,), sums s (m, D) and sums
    of outer products q (m, D, D)."""
    mean = s / n[:, None]
    cov = q / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return mean, cov


def _logdet(a):
    """log det of symmetric positive definite matrices (m, D, D); the 3 × 3 case (colour)
    by its closed form, which is several times faster than a batched LU for small m."""
    if a.shape[-1] != 3:
        return np.linalg.slogdet(a)[1]
    a00, a01, a02 = a[:, 0, 0], a[:, 0, 1], a[:, 0, 2]
    a11, a12, a22 = a[:, 1, 1], a[:, 1, 2], a[:, 2, 2]
    det = (
        a00 * (a11 * a22 - a12 * a12)
        - a01 * (a01 * a22 - a12 * a02)
        + a02 * (a01 * a12 - a11 * a02)
    )
    return np.log(det)


def coding_length(n, s, q, eps, *, weight=1.0):
    """Bits to code regions of pixels up to distortion ``eps`` (see the module notes).

    Parameters
    ----------
    n : array-like (m,)
        Pixel counts (> 0).
    s : array-like (m, D)
        Sums of the pixels' features.
    q : array-like (m, D, D)
        Sums of the outer products x xᵀ of the features.
    eps : float
        Distortion allowed per feature value (> 0), in the features' units.
    weight : float, default 1
        Pixels count as ``weight`` each in the coding (resolution normalisation).

    Returns
    -------
    bits : ndarray (m,) float64
    """
    n = np.asarray(n, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    D = s.shape[-1]
    mean, cov = _covariances(n, s, q)
    a = np.eye(D) + (D / (eps * eps)) * cov
    logdet = _logdet(a)
    bits = 0.5 * (weight * n + D) * logdet / _LOG2
    bits += 0.5 * D * np.log2(1.0 + (mean * mean).sum(axis=1) / (eps * eps))
    return bits


def union_length(n, s, q, i, j, eps, *, weight=1.0):
    """Bits to code the union of regions ``i`` and ``j`` (arrays of pairs): what region
    ``i`` costs once ``j`` has joined it."""
    i = np.asarray(i)
    j = np.asarray(j)
    return coding_length(n[i] + n[j], s[i] + s[j], q[i] + q[j], eps, weight=weight)


def merge_gain(n, s, q, i, j, border, eps, boundary_bits, *, weight=1.0, own=None, joint=None):
    """ΔL (bits) of merging regions ``i`` with ``j`` (arrays of pairs), each pair sharing
    ``border`` pixels of boundary; negative when the merge shortens the description.

    ``own`` (m,), if given, holds each region's current coding length, and ``joint``
    (pairs,) the unions' (:func:`union_length`); both save recomputing.
    """
    i = np.asarray(i)
    j = np.asarray(j)
    if joint is None:
        joint = union_length(n, s, q, i, j, eps, weight=weight)
    if own is None:
        li = coding_length(n[i], s[i], q[i], eps, weight=weight)
        lj = coding_length(n[j], s[j], q[j], eps, weight=weight)
    else:
        li, lj = own[i], own[j]
    return joint - li - lj - boundary_bits * np.sqrt(weight) * np.asarray(border, np.float64)


def partition_length(n, s, q, total_border, eps, boundary_bits, *, weight=1.0):
    """Total description (bits) of a partition: every region's pixels plus its borders
    (``total_border`` = pixels of border between different regions, each pair once)."""
    return float(
        coding_length(n, s, q, eps, weight=weight).sum()
        + boundary_bits * np.sqrt(weight) * total_border
    )
