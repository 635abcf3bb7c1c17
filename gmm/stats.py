"""Sufficient statistics of a block of rows, and how they add up.

The E-step turns each row into *quadratic features* of its offset from a fixed shift s
(the weighted data mean), ``φ(x) = [1, y, y_i y_j (i <= j)]`` with ``y = x - s`` (only the
squares for the diagonal structures, only ``|y|²`` for spherical). Two products then do all
the per-row work of one block:

- ``A @ Φ`` gives the log-density of every component at every row (the quadratic form of
  all components at once, with the coefficients of each component in a row of A);
- ``R @ Φᵀ`` (R the weighted responsibilities) gives, per component, the sums
  ``Σ w r [1, y, y yᵀ]`` from which the M-step needs everything.

Those raw sums are added up over blocks in float64 and then re-centred on each component's
previous mean c_k (:meth:`SuffStats.from_raw`), so that the M-step works with centred
scatter matrices: the raw form E[x xᵀ] - μ μᵀ subtracts two nearly equal numbers, loses
precision in float32 and can give negative variances; the small K×D×D sums are kept in
float64 even when X is float32.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


class FeatureMap:
    """Quadratic features of one statistics kind (``full``, ``diag`` or ``trace``) in D dims."""

    def __init__(self, kind, n_features):
        D = n_features
        self.kind = kind
        self.D = D
        if kind == "full":
            self.iu, self.ju = np.triu_indices(D)
            self.n_quad = len(self.iu)
        elif kind == "diag":
            self.n_quad = D
        elif kind == "trace":
            self.n_quad = 1
        else:
            raise ValueError(f"unknown statistics kind {kind!r}")
        self.F = 1 + D + self.n_quad

    def quadratic_steps(self, phi, scratch):
        """The calls that fill the quadratic rows of ``phi`` (F, n) from its linear rows
        ``y = x - s`` (row 0 holds ones), bound to these buffers (a kernel builds them once
        and reuses them every block). ``scratch`` is a (D, n) buffer for the ``trace`` kind."""
        D = self.D
        y = phi[1 : 1 + D]
        if self.kind == "full":
            steps, row = [], 1 + D
            for i in range(D):
                steps.append(partial(np.multiply, y[i], y[i:], out=phi[row : row + D - i]))
                row += D - i
            return steps
        if self.kind == "diag":
            return [partial(np.square, y, out=phi[1 + D :])]
        return [
            partial(np.square, y, out=scratch),
            partial(np.sum, scratch, axis=0, out=phi[1 + D]),
        ]

    def features(self, y):
        """The features φ (F, n) of centred rows ``y`` (n, D), in float64 (for the few rows
        that a kernel redoes outside its buffers)."""
        phi = np.empty((self.F, y.shape[0]))
        phi[0] = 1.0
        phi[1 : 1 + self.D] = y.T
        scratch = np.empty((self.D, y.shape[0])) if self.kind == "trace" else None
        for step in self.quadratic_steps(phi, scratch):
            step()
        return phi

    def coefficients(self, log_weights, logdet, P, m):
        """Coefficient matrix A (K, F) with ``A @ φ(x)`` = log π_k + log N(x | μ_k, Σ_k).

        ``P`` are the precisions in this kind's layout ((K, D, D), (K, D) or (K,)), ``logdet``
        Σ log diag of their Cholesky factors, ``m`` = μ - s (K, D).
        """
        D = self.D
        K = m.shape[0]
        A = np.empty((K, self.F))
        if self.kind == "full":
            Pm = np.einsum("kij,kj->ki", P, m)
            A[:, 1 + D :] = -P[:, self.iu, self.ju] * np.where(self.iu == self.ju, 0.5, 1.0)
        elif self.kind == "diag":
            Pm = P * m
            A[:, 1 + D :] = -0.5 * P
        else:
            Pm = P[:, None] * m
            A[:, 1 + D] = -0.5 * P
        A[:, 0] = log_weights - 0.5 * D * LOG_2PI + logdet - 0.5 * (m * Pm).sum(axis=1)
        A[:, 1 : 1 + D] = Pm
        return A

    def distance_coefficients(self, centres_shifted):
        """A such that argmax_k of ``A @ φ(x)`` is the nearest centre in Euclidean distance."""
        K, D = centres_shifted.shape
        A = np.zeros((K, self.F))
        A[:, 0] = -0.5 * (centres_shifted**2).sum(axis=1)
        A[:, 1 : 1 + D] = centres_shifted
        return A

    def unpack(self, M):
        """Split raw sums M (K, F) into N (K,), Σ w r y (K, D) and Σ w r y yᵀ (kind layout)."""
        D = self.D
        N = M[:, 0].copy()
        S = M[:, 1 : 1 + D].copy()
        if self.kind == "full":
            Q = np.empty((M.shape[0], D, D))
            Q[:, self.iu, self.ju] = M[:, 1 + D :]
            Q[:, self.ju, self.iu] = M[:, 1 + D :]
        elif self.kind == "diag":
            Q = M[:, 1 + D :].copy()
        else:
            Q = M[:, 1 + D].copy()
        return N, S, Q


@dataclass
class SuffStats:
    """Weighted sufficient statistics of the data under the responsibilities of one E-step.

    Attributes
    ----------
    nk : ndarray (K,)
        Σ w r_k.
    sk : ndarray (K, D)
        Σ w r_k (x - c_k), centred on ``centres``.
    qk : ndarray
        Σ w r_k (x - c_k)(x - c_k)ᵀ: (K, D, D), its diagonal (K, D) or its trace (K,).
    centres : ndarray (K, D)
        The centres c_k (the means of the parameters the E-step used).
    loglik : float
        Σ w log p(x) under those parameters.
    weight : float
        Σ w.
    """

    nk: np.ndarray
    sk: np.ndarray
    qk: np.ndarray
    centres: np.ndarray
    loglik: float
    weight: float

    @classmethod
    def from_raw(cls, fmap, M, shift, centres, loglik, weight):
        """Re-centre raw sums about ``shift`` on ``centres`` (all in float64)."""
        N, S, Q = fmap.unpack(M)
        d = centres - shift
        sk = S - N[:, None] * d
        if fmap.kind == "full":
            Sd = S[:, :, None] * d[:, None, :]
            qk = Q - Sd - Sd.transpose(0, 2, 1) + N[:, None, None] * (d[:, :, None] * d[:, None, :])
        elif fmap.kind == "diag":
            qk = Q - 2.0 * S * d + N[:, None] * d**2
        else:
            qk = Q - 2.0 * (S * d).sum(axis=1) + N * (d**2).sum(axis=1)
        return cls(N, sk, qk, np.array(centres, dtype=np.float64), float(loglik), float(weight))
