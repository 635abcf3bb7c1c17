"""The E-step over a chunk source, block by block, in reused buffers.

Nothing here allocates an array whose size grows with the number of rows except the outputs
a caller asks for (labels, per-row log-likelihoods, responsibilities). Per block the work is:
fill the quadratic features Φ (F, n), one matrix product for the log-densities (K, n), a
max-shifted log-sum-exp in place, and one matrix product for the sufficient statistics.
"""

import numpy as np

from .chunks import rows_for_budget
from .covariance import STATS_KIND, precisions_and_logdet
from .stats import FeatureMap, SuffStats


def block_rows(n_components, fmap, dtype, chunk_mib):
    """Rows per E-step block for this problem size and working-memory budget."""
    itemsize = np.dtype(dtype).itemsize
    # Φ, the (K, n) block, the block of X (up to float64), 3 row vectors, scratch.
    bytes_per_row = itemsize * (fmap.F + n_components + 4 + fmap.D) + 8 * fmap.D
    return rows_for_budget(chunk_mib, bytes_per_row)


class Kernel:
    """Block computations for one coefficient matrix A (K, F).

    Parameters
    ----------
    A : ndarray (K, F)
        Row k holds the coefficients of component k's log-density over the features.
    fmap : FeatureMap
    shift : ndarray (D,)
        The shift s of the features, float64; it is rounded to ``dtype`` once here so that
        the features and their statistics use exactly the same value.
    dtype : float32 or float64
    rows : int
        Maximum rows of a block.
    """

    def __init__(self, A, fmap, shift, dtype, rows):
        self.dtype = np.dtype(dtype)
        self.fmap = fmap
        self.rows = rows
        self.A = np.ascontiguousarray(A, dtype=self.dtype)
        # Coefficients below the smallest normal number (e.g. a near-zero precision between
        # uncorrelated features) would be subnormal operands: flush them, or every product
        # with them takes a slow microcode path (10-30x here).
        self.A[np.abs(self.A) < np.finfo(self.dtype).tiny] = 0.0
        self.K = A.shape[0]
        self.shift_dt = np.asarray(shift, dtype=self.dtype)
        self.shift = self.shift_dt.astype(np.float64)
        self.phi = np.empty((fmap.F, rows), dtype=self.dtype)
        self.phi[0] = 1.0
        self.L = np.empty((self.K, rows), dtype=self.dtype)
        self.v = np.empty((3, rows), dtype=self.dtype)
        self.floor = self.dtype.type(-60.0 if self.dtype == np.float32 else -600.0)
        self.ones = np.ones(self.K, dtype=self.dtype)
        self.scratch = np.empty((fmap.D, rows), dtype=self.dtype) if fmap.kind == "trace" else None

    @classmethod
    def for_params(cls, params, covariance_type, shift, dtype, rows):
        K, D = params.means.shape
        fmap = FeatureMap(STATS_KIND[covariance_type], D)
        P, logdet = precisions_and_logdet(covariance_type, params.precisions_cholesky, K, D)
        A = fmap.coefficients(
            np.log(np.maximum(params.weights, np.finfo(np.float64).tiny)),
            logdet,
            P,
            params.means - shift_as(shift, dtype),
        )
        return cls(A, fmap, shift, dtype, rows)

    @classmethod
    def for_centres(cls, centres, covariance_type, shift, dtype, rows):
        """A kernel whose argmax is the nearest centre (hard, k-means assignment)."""
        fmap = FeatureMap(STATS_KIND[covariance_type], centres.shape[1])
        A = fmap.distance_coefficients(centres - shift_as(shift, dtype))
        return cls(A, fmap, shift, dtype, rows)

    # -- one block -------------------------------------------------------------------

    def logits(self, x):
        """Log-densities (K, n) of the block ``x`` (n, D), in the kernel's buffer."""
        n = x.shape[0]
        phi = self.phi[:, :n]
        self.fmap.fill(phi, x, self.shift_dt, None if self.scratch is None else self.scratch[:, :n])
        L = self.L[:, :n]
        np.matmul(self.A, phi, out=L)
        return L, phi

    def normalize(self, L, w=None):
        """Turn logits L into (weighted) responsibilities in place; return log p(x) per row.

        The returned vector is a view of an internal buffer, valid until the next block.
        """
        n = L.shape[1]
        mx, sm, scale = self.v[0, :n], self.v[1, :n], self.v[2, :n]
        np.max(L, axis=0, out=mx)
        L -= mx
        # exp of -87..-104 (float32) gives subnormal numbers, which make exp and the next
        # matrix product 10-80x slower on x86; responsibilities below e^-60 change nothing.
        np.maximum(L, self.floor, out=L)
        np.exp(L, out=L)
        np.matmul(self.ones, L, out=sm)  # the sum over components, as one BLAS call
        np.divide(1.0, sm, out=scale)
        if w is not None:
            scale *= w
        L *= scale
        np.log(sm, out=sm)
        sm += mx
        return sm


def shift_as(shift, dtype):
    """The shift as the kernel will really use it: rounded to ``dtype``, back in float64."""
    return np.asarray(shift, dtype=dtype).astype(np.float64)


def _weights(w, dtype):
    return None if w is None else np.asarray(w, dtype=dtype)


def _dot(ll, w):
    return float(ll.sum(dtype=np.float64)) if w is None else float(np.dot(ll, w))


# -- passes over a source -------------------------------------------------------------


def accumulate(kernel, source):
    """One E-step: raw sums M (K, F) float64, Σ w log p(x), Σ w."""
    M = np.zeros((kernel.K, kernel.fmap.F))
    loglik = 0.0
    weight = 0.0
    for x, w in source.chunks(kernel.rows):
        if x.shape[0] == 0:
            continue
        w = _weights(w, kernel.dtype)
        L, phi = kernel.logits(x)
        ll = kernel.normalize(L, w)
        loglik += _dot(ll, w)
        weight += x.shape[0] if w is None else float(w.sum(dtype=np.float64))
        M += L @ phi.T
    return M, loglik, weight


def estep(params, covariance_type, source, shift, dtype, rows):
    """E-step over the whole source: :class:`SuffStats` centred on the current means."""
    kernel = Kernel.for_params(params, covariance_type, shift, dtype, rows)
    # A source that computes elsewhere (e.g. on a Dask cluster) does the pass itself.
    run = getattr(source, "accumulate", None)
    M, loglik, weight = run(kernel) if run is not None else accumulate(kernel, source)
    return SuffStats.from_raw(kernel.fmap, M, kernel.shift, params.means, loglik, weight)


def hard_stats(centres, covariance_type, source, shift, dtype, rows):
    """Statistics of the hard assignment of every row to its nearest centre."""
    kernel = Kernel.for_centres(centres, covariance_type, shift, dtype, rows)
    K = kernel.K
    M = np.zeros((K, kernel.fmap.F))
    weight = 0.0
    for x, w in source.chunks(kernel.rows):
        n = x.shape[0]
        if n == 0:
            continue
        w = _weights(w, kernel.dtype)
        L, phi = kernel.logits(x)
        labels = np.argmax(L, axis=0)
        L[...] = 0.0
        L[labels, np.arange(n)] = 1.0 if w is None else w
        weight += n if w is None else float(w.sum(dtype=np.float64))
        M += L @ phi.T
    return SuffStats.from_raw(kernel.fmap, M, kernel.shift, centres, 0.0, weight)


def _uniform_rows(key, start, n, K, block=4096):
    """Uniform numbers (n, K) of rows ``start .. start+n`` of a stream cut into blocks of
    ``block`` rows, each block its own Philox counter: any row's numbers can be drawn alone."""
    if n == 0:
        return np.empty((0, K))
    first, last = start // block, (start + n - 1) // block
    parts = [
        np.random.Generator(np.random.Philox(key=key, counter=[0, b, 0, 0])).random((block, K))
        for b in range(first, last + 1)
    ]
    return np.concatenate(parts)[start - first * block : start - first * block + n]


def soft_stats_random(K, covariance_type, source, shift, dtype, rows, key):
    """Statistics of random responsibilities (``init='random'``), reproducible per row.

    Rows of positive weight are numbered in order and row i takes the i-th numbers of a
    counter-based stream, so the result depends neither on how the source is chunked nor
    on zero-weight rows (which are removed points).
    """
    D = source.n_features
    fmap = FeatureMap(STATS_KIND[covariance_type], D)
    kernel = Kernel(np.zeros((K, fmap.F)), fmap, shift, dtype, rows)
    M = np.zeros((K, fmap.F))
    weight = 0.0
    start = 0
    for x, w in source.chunks(rows):
        n = x.shape[0]
        if n == 0:
            continue
        _, phi = kernel.logits(x)
        if w is None:
            R = _uniform_rows(key, start, n, K)
            start += n
            weight += n
        else:
            w = np.asarray(w, dtype=np.float64)
            keep = w > 0
            R = np.zeros((n, K))
            R[keep] = _uniform_rows(key, start, int(keep.sum()), K)
            start += int(keep.sum())
            weight += float(w.sum())
        R /= np.maximum(R.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        if w is not None:
            R *= w[:, None]
        M += R.T.astype(kernel.dtype) @ phi.T
    centres = np.broadcast_to(kernel.shift, (K, D)).copy()
    return SuffStats.from_raw(fmap, M, kernel.shift, centres, 0.0, weight)


def score_rows(kernel, source, out):
    """Write log p(x) of every row into ``out`` (N,)."""
    i = 0
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        L, _ = kernel.logits(x)
        out[i : i + n] = kernel.normalize(L)
        i += n
    return out


def predict_rows(kernel, source, out):
    """Write the index of the most likely component of every row into ``out`` (N,)."""
    i = 0
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        L, _ = kernel.logits(x)
        out[i : i + n] = np.argmax(L, axis=0)
        i += n
    return out


def proba_rows(kernel, source, out):
    """Write the responsibilities of every row into ``out`` (N, K)."""
    i = 0
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        L, _ = kernel.logits(x)
        kernel.normalize(L)
        out[i : i + n] = L.T
        i += n
    return out


def loglik_and_entropy(kernel, source):
    """Σ w log p(x), Σ w, and Σ w H(r) with H the entropy of the responsibilities."""
    loglik = weight = entropy = 0.0
    for x, w in source.chunks(kernel.rows):
        if x.shape[0] == 0:
            continue
        w = _weights(w, kernel.dtype)
        L, _ = kernel.logits(x)
        ll = kernel.normalize(L)
        loglik += _dot(ll, w)
        weight += x.shape[0] if w is None else float(w.sum(dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            rlogr = np.where(L > 0, L * np.log(L), 0.0).sum(axis=0)
        entropy -= _dot(rlogr, w)
    return loglik, weight, entropy


def worst_rows(kernel, source, count):
    """The ``count`` distinct rows (of positive weight) with the lowest log-density, worst
    first; fewer if the data hold fewer distinct rows.

    Distinct, because components reset together must restart at different points: with
    repeated rows (pixels of one colour) the worst rows are often copies of one point.
    """
    best_vals = np.empty(0)
    best_rows = np.empty((0, source.n_features))
    for x, w in source.chunks(kernel.rows):
        n = x.shape[0]
        if n == 0:
            continue
        L, _ = kernel.logits(x)
        ll = kernel.normalize(L).astype(np.float64)
        if w is not None:
            ll[np.asarray(w) <= 0] = np.inf
        order = np.argsort(ll, kind="stable")
        order = order[np.isfinite(ll[order])]
        vals = np.concatenate([best_vals, ll[order]])
        rows = np.concatenate([best_rows, np.asarray(x[order], dtype=np.float64)])
        best_vals, best_rows = _first_distinct(vals, rows, count)
    return best_rows


def _first_distinct(vals, rows, count):
    """The ``count`` lowest values whose rows are all different, in increasing order."""
    order = np.argsort(vals, kind="stable")
    seen = set()
    keep = []
    for i in order:
        key = rows[i].tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
            if len(keep) == count:
                break
    keep = np.asarray(keep, dtype=np.intp)
    return vals[keep], rows[keep]
