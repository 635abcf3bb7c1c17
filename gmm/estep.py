"""The E-step over a chunk source, block by block, in reused buffers.

Nothing here allocates an array whose size grows with the number of rows except the outputs
a caller asks for (labels, per-row log-likelihoods, responsibilities). Per block the work is:
fill the quadratic features Φ (F, n), one matrix product for the log-densities (K, n), a
log-sum-exp in place, and one matrix product for the sufficient statistics.

The log-sum-exp is shifted by one constant per kernel, the highest peak of any component,
rather than by each row's maximum: no log-density exceeds it, so exp cannot overflow, and
the per-row maximum (a reduction and a pass over the block) is saved. Rows far below that
peak, where clipping would lose precision, are found from their sums and redone with their
own maximum; in photos they are under 0.1% of the rows.
"""

from typing import NamedTuple

import numpy as np

from .covariance import STATS_KIND, precisions_and_logdet
from .stats import LOG_2PI, FeatureMap, SuffStats

MIB = 2**20
#: Working set of one E-step block that keeps it in a core's L2 cache; measured on the
#: project's 2-core machine, blocks of ~1 MiB run fastest (see benchmarks/bench_em.py).
PREFERRED_BLOCK_BYTES = 1 * MIB


def rows_for_budget(chunk_mib, bytes_per_row, *, preferred_bytes=PREFERRED_BLOCK_BYTES):
    """Rows per block: cache-sized, and never over the working-memory budget.

    Parameters
    ----------
    chunk_mib : float
        Budget in MiB for the temporaries of one block.
    bytes_per_row : int
        Bytes of temporaries one row costs.
    """
    budget_rows = int(chunk_mib * MIB // bytes_per_row)
    preferred_rows = max(256, int(preferred_bytes // bytes_per_row))
    return max(1, min(budget_rows, preferred_rows))


def block_rows(n_components, fmap, dtype, chunk_mib):
    """Rows per E-step block for this problem size and working-memory budget."""
    itemsize = np.dtype(dtype).itemsize
    # Φ, the (K, n) block, the block of X (up to float64), 4 row vectors, scratch.
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
        The shift s of the features, float64. It is subtracted at full precision (in two
        parts for narrow data, see :meth:`logits`): rounded to float32, the mean of data
        with a large offset (X + 1e8) would be off by more than their spread.
    dtype : float32 or float64
    rows : int
        Maximum rows of a block.
    offset : float
        An upper bound of the log-densities (the logits are kept minus it, and clipped at
        0); the closer to the data's log-densities, the fewer rows take the slower path of
        :meth:`normalize`.
    scale : float
        A power of two the centred features are multiplied by, ``y = scale (x - s)``, so
        that data of any magnitude (X × 1e20, X × 1e-20) have features, squares and
        coefficients within float32's range. ``A`` is in terms of the scaled features;
        :meth:`unscale_sums` brings raw sums back to the data's units.
    """

    def __init__(self, A, fmap, shift, dtype, rows, offset=0.0, scale=1.0):
        self.dtype = np.dtype(dtype)
        self.fmap = fmap
        self.rows = rows
        self.coef = np.array(A, dtype=np.float64)
        self.offset = float(offset)
        A = self.coef.copy()
        A[:, 0] -= self.offset
        # In base 2: numpy's float32 exp2 is 1.7x faster than its exp (and as exact).
        self.A = np.ascontiguousarray(A * LOG2_E, dtype=self.dtype)
        # Coefficients below the smallest normal number (e.g. a near-zero precision between
        # uncorrelated features) would be subnormal operands: flush them, or every product
        # with them takes a slow microcode path (10-30x here).
        self.A[np.abs(self.A) < np.finfo(self.dtype).tiny] = 0.0
        self.K = A.shape[0]
        self.scale = float(scale)
        self.shift = np.array(shift, dtype=np.float64)
        # Narrow data (float32, small integers) subtract the shift as hi + lo in the dtype:
        # x - hi is exact near hi, so the centred values keep their digits; wide data
        # (float64, large integers) subtract it in float64 before the cast.
        hi = self.shift.astype(self.dtype)
        lo = (self.shift - hi).astype(self.dtype)
        self.shift_dt = hi  # the shift in the dtype (e.g. a finite stand-in for a value)
        self._shift_col = hi[:, None]
        self._lo_col = lo[:, None] if lo.any() else None
        self._shift64_col = self.shift[:, None]
        self._scale_dt = self.dtype.type(self.scale)
        self.phi = np.empty((fmap.F, rows), dtype=self.dtype)
        self.phi[0] = 1.0
        self.L = np.empty((self.K, rows), dtype=self.dtype)
        self.v = np.empty((4, rows), dtype=self.dtype)
        self.v[3] = 1.0
        self.scratch = np.empty((fmap.D, rows), dtype=self.dtype) if fmap.kind == "trace" else None
        # exp of -87..-104 (float32) gives subnormal numbers, which make exp and the next
        # matrix product 10-80x slower on x86: logits are clipped to [floor, 0] first (0:
        # the offset bounds them, up to rounding). A row whose sum of exponentials is at
        # least e^low loses nothing to the floor: what it adds is below e^(floor - low) of
        # the sum, under the rounding of the dtype. Other rows are redone with their own
        # maximum subtracted.
        single = self.dtype == np.float32
        self.floor = self.dtype.type((-60.0 if single else -600.0) * LOG2_E)
        self.low = self.dtype.type(np.exp(-40.0 if single else -560.0))
        self.zero = self.dtype.type(0.0)
        self.ones = np.ones(self.K, dtype=self.dtype)
        self.sums = np.empty((self.K, fmap.F), dtype=self.dtype)
        self._views = {}
        self._x = None

    def _block(self, n):
        """Views of the buffers for a block of ``n`` rows, built once per block size (the
        per-block cost of slicing and binding is a tenth of a small block's work)."""
        views = self._views.get(n)
        if views is None:
            if len(self._views) > 4:  # sizes other than ``rows`` are rare (last blocks)
                self._views.clear()
            phi = self.phi[:, :n]
            scratch = None if self.scratch is None else self.scratch[:, :n]
            ll, sm, scale, ones = self.v[:, :n]
            views = _Views(
                phi,
                phi[1 : 1 + self.fmap.D],
                self.fmap.quadratic_steps(phi, scratch),
                self.L[:, :n],
                ll,
                sm,
                scale,
                ones,
            )
            self._views[n] = views
        return views

    def spec(self):
        """The arguments that rebuild this kernel (e.g. on another process)."""
        return (self.coef, self.fmap, self.shift, self.dtype, self.rows, self.offset, self.scale)

    @classmethod
    def for_params(cls, params, covariance_type, shift, dtype, rows, scale=1.0):
        K, D = params.means.shape
        fmap = FeatureMap(STATS_KIND[covariance_type], D)
        P, logdet = precisions_and_logdet(covariance_type, params.precisions_cholesky, K, D)
        log_weights = np.log(np.maximum(params.weights, np.finfo(np.float64).tiny))
        # In the scaled features y = c (x - s): P / c² and c (μ - s); the log-determinant
        # stays that of the data's units, so A @ φ is still log π_k N(x | μ_k, Σ_k).
        m = scale * (params.means - np.asarray(shift, dtype=np.float64))
        A = fmap.coefficients(log_weights, logdet, P / scale**2, m)
        # Every log-density is at most the highest peak of a component (its density at its
        # mean): measured from there, no row's logits can overflow exp.
        peak = log_weights - 0.5 * D * LOG_2PI + np.broadcast_to(logdet, (K,))
        return cls(A, fmap, shift, dtype, rows, offset=float(np.max(peak)), scale=scale)

    @classmethod
    def for_centres(cls, centres, covariance_type, shift, dtype, rows, scale=1.0):
        """A kernel whose argmax is the nearest centre (hard, k-means assignment)."""
        fmap = FeatureMap(STATS_KIND[covariance_type], centres.shape[1])
        A = fmap.distance_coefficients(scale * (centres - np.asarray(shift, dtype=np.float64)))
        return cls(A, fmap, shift, dtype, rows, scale=scale)

    def unscale_sums(self, M):
        """Raw sums M (K, F) of the scaled features, in place, in the data's units."""
        if self.scale != 1.0:
            D = self.fmap.D
            M[:, 1 : 1 + D] /= self.scale
            M[:, 1 + D :] /= self.scale**2
        return M

    # -- one block -------------------------------------------------------------------

    def logits(self, x):
        """Logits (K, n) of the block ``x`` (n, D), in the kernel's buffer: the log-densities
        minus ``offset``, in base 2 (for :meth:`normalize`, or an argmax)."""
        b = self._block(x.shape[0])
        self._x = x
        if x.dtype.itemsize <= 2 or (x.dtype == self.dtype and x.dtype.kind == "f"):
            np.subtract(x.T, self._shift_col, out=b.y)
            if self._lo_col is not None:
                np.subtract(b.y, self._lo_col, out=b.y)
            if self.scale != 1.0:
                np.multiply(b.y, self._scale_dt, out=b.y)
        elif self.scale != 1.0:
            np.multiply(np.subtract(x.T, self._shift64_col, dtype=np.float64), self.scale, out=b.y)
        else:
            np.subtract(x.T, self._shift64_col, out=b.y)
        for step in b.quadratic:
            step()
        np.matmul(self.A, b.phi, out=b.L)
        return b.L, b.phi

    def normalize(self, L, w=None):
        """Turn the logits L of the last :meth:`logits` block into (weighted)
        responsibilities in place; return log p(x) per row.

        The returned vector is a view of an internal buffer, valid until the next block.
        """
        ll = self.responsibilities(L, w)
        ll += self.offset
        return ll

    def responsibilities(self, L, w=None):
        """:meth:`normalize` without the offset: returns log p(x) - ``offset`` per row."""
        b = self._block(L.shape[1])
        ll, sm, scale = b.ll, b.sm, b.scale
        # L is measured from the offset, not from each row's maximum: that saves a
        # reduction and a pass over L, at the price of redoing the (rare) far rows.
        _clip(L, self.floor, self.zero, out=L)
        np.exp2(L, out=L)
        np.matmul(self.ones, L, out=sm)  # the sum over components, as one BLAS call
        # "not >=" also catches NaN: a row so far out that its quadratic features overflow.
        far = not _min(sm) >= self.low
        np.log(sm, out=ll)
        if far:
            self._redo_far_rows(L, sm, ll)
        np.divide(1.0, sm, out=scale)
        if w is not None:
            scale *= w
        L *= scale
        return ll

    def total(self, ll, w=None):
        """Σ w ll over a block, by BLAS in the dtype: the values of :meth:`responsibilities`
        are a few units, and their sum is exact well within what the EM driver tolerates."""
        return float(np.dot(ll, self._block(ll.shape[0]).ones if w is None else w))

    def _redo_far_rows(self, L, sm, ll):
        """Exponentials, sums and log-sums of the rows whose sum is below ``low``,
        recomputed from their features with each row's own maximum subtracted."""
        far = np.flatnonzero(~(sm >= self.low))
        with np.errstate(over="ignore", invalid="ignore"):
            Lf = self.A @ self.phi[:, far]
            top = Lf.max(axis=0)
        bad = ~np.isfinite(top)
        if bad.any():
            Lf, top = Lf.astype(np.float64), top.astype(np.float64)
            Lf[:, bad], top[bad] = self._outlier_logits(far[bad])
        Lf -= np.where(np.isfinite(top), top, 0.0)  # -inf: logits are 0 / -inf already
        np.maximum(Lf, self.floor, out=Lf)
        np.exp2(Lf, out=Lf)
        L[:, far] = Lf
        sm[far] = self.ones @ Lf
        with np.errstate(over="ignore"):  # log-densities below float32's range are -inf
            ll[far] = np.log(sm[far]) + top * LN_2

    def _outlier_logits(self, rows):
        """Base-2 logits (K, n) minus ``offset`` and their maxima (n,) of rows whose features
        overflow the dtype (a point at 1e30 in float32), redone in float64 from the rows.
        Where even float64 overflows, the limit far along the row's direction u: the
        component of the largest quadratic term (the widest in that direction) takes all,
        and the log-density is -inf."""
        D = self.fmap.D
        y = (np.asarray(self._x[rows], dtype=np.float64) - self.shift) * self.scale
        with np.errstate(over="ignore", invalid="ignore"):
            Lf = (self.coef @ self.fmap.features(y) - self.offset) * LOG2_E
            top = Lf.max(axis=0)
        bad = ~np.isfinite(top)
        if bad.any():
            u = y[bad] / np.abs(y[bad]).max(axis=1, keepdims=True)
            quadratic = self.coef[:, 1 + D :] @ self.fmap.features(u)[1 + D :]
            winners = quadratic >= quadratic.max(axis=0)
            Lf[:, bad] = np.where(winners, 0.0, -np.inf)
            top[bad] = -np.inf
        return Lf, top


LOG2_E = 1.0 / np.log(2.0)
LN_2 = np.log(2.0)


class _Views(NamedTuple):
    phi: np.ndarray  # (F, n) quadratic features
    y: np.ndarray  # (D, n) their linear rows
    quadratic: list  # bound calls filling the quadratic rows
    L: np.ndarray  # (K, n) logits, then responsibilities
    ll: np.ndarray  # (n,) log p(x) - offset
    sm: np.ndarray  # (n,) sums of exponentials
    scale: np.ndarray  # (n,) weight / sum
    ones: np.ndarray  # (n,) ones


# The clip ufunc itself: ``np.clip`` adds a Python-level check costing a fifth of a small
# block's clip, and it is slower; fall back to it where numpy does not expose the ufunc.
_clip = getattr(getattr(np, "_core", None), "umath", np).__dict__.get("clip", np.clip)
_min = np.minimum.reduce


def block_weights(w, dtype):
    """A block's weights in the kernel's dtype (None: all ones)."""
    return None if w is None else np.asarray(w, dtype=dtype)


# -- passes over a source -------------------------------------------------------------


def accumulate(kernel, source):
    """One E-step: raw sums M (K, F) float64, Σ w log p(x), Σ w."""
    M = np.zeros((kernel.K, kernel.fmap.F))
    loglik = 0.0
    weight = 0.0
    for x, w in source.chunks(kernel.rows):
        if x.shape[0] == 0:
            continue
        w = block_weights(w, kernel.dtype)
        L, phi = kernel.logits(x)
        ll = kernel.responsibilities(L, w)
        block_weight = x.shape[0] if w is None else float(w.sum(dtype=np.float64))
        loglik += kernel.total(ll, w) + kernel.offset * block_weight
        weight += block_weight
        np.matmul(L, phi.T, out=kernel.sums)
        M += kernel.sums
    return M, loglik, weight


def estep(params, covariance_type, source, shift, dtype, rows, scale=1.0):
    """E-step over the whole source: :class:`SuffStats` centred on the current means."""
    kernel = Kernel.for_params(params, covariance_type, shift, dtype, rows, scale)
    # A source that computes elsewhere (e.g. on a Dask cluster) does the pass itself.
    run = getattr(source, "accumulate", None)
    M, loglik, weight = run(kernel) if run is not None else accumulate(kernel, source)
    M = kernel.unscale_sums(M)
    return SuffStats.from_raw(kernel.fmap, M, kernel.shift, params.means, loglik, weight)


def hard_stats(centres, covariance_type, source, shift, dtype, rows, scale=1.0):
    """Statistics of the hard assignment of every row to its nearest centre."""
    kernel = Kernel.for_centres(centres, covariance_type, shift, dtype, rows, scale)
    K = kernel.K
    M = np.zeros((K, kernel.fmap.F))
    weight = 0.0
    for x, w in source.chunks(kernel.rows):
        n = x.shape[0]
        if n == 0:
            continue
        w = block_weights(w, kernel.dtype)
        L, phi = kernel.logits(x)
        labels = np.argmax(L, axis=0)
        L[...] = 0.0
        L[labels, np.arange(n)] = 1.0 if w is None else w
        weight += n if w is None else float(w.sum(dtype=np.float64))
        M += L @ phi.T
    M = kernel.unscale_sums(M)
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


def soft_stats_random(K, covariance_type, source, shift, dtype, rows, key, scale=1.0):
    """Statistics of random responsibilities (``init='random'``), reproducible per row.

    Rows of positive weight are numbered in order and row i takes the i-th numbers of a
    counter-based stream, so the result depends neither on how the source is chunked nor
    on zero-weight rows (which are removed points).
    """
    D = source.n_features
    fmap = FeatureMap(STATS_KIND[covariance_type], D)
    kernel = Kernel(np.zeros((K, fmap.F)), fmap, shift, dtype, rows, scale=scale)
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
    M = kernel.unscale_sums(M)
    return SuffStats.from_raw(fmap, M, kernel.shift, centres, 0.0, weight)
