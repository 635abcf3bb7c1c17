"""EM with values missing at random: rows holding NaN.

A row x with observed coordinates o and missing ones m is scored by its marginal over the
observed coordinates, N(x_o | μ_ko, Σ_koo), which is the same Gaussian with the other rows
and columns dropped. The M-step needs, per component, the expected sufficient statistics of
the complete row given what was observed (Ghahramani & Jordan 1994):

    E[x_m | x_o, k]     = μ_km + Σ_kmo Σ_koo⁻¹ (x_o − μ_ko)
    Cov[x_m | x_o, k]   = Σ_kmm − Σ_kmo Σ_koo⁻¹ Σ_kom

so that E[x xᵀ | x_o, k] = x̂ x̂ᵀ plus that conditional covariance in the (m, m) block, with
x̂ the row completed by its conditional mean. Adding these expectations, weighted by the
responsibilities, into the same raw sums as complete rows gives the exact EM for every
covariance structure (for the diagonal ones the off-diagonal blocks vanish and the
conditional mean is μ_km).

Rows are grouped by their missingness pattern, and each pattern's algebra (a Cholesky
factor of Σ_koo and the regression B_k = Σ_kmo Σ_koo⁻¹ per component) is done once for all
its rows; images have a few patterns. Per row there are only two matrix products over the
quadratic features of the observed values (see :class:`_Pattern`).
Complete rows never come here: they go through the E-step kernel unchanged. Rows with
nothing observed carry no information about the parameters: the E-step leaves them out
(they are counted by the data summary), and prediction gives them the prior.
"""

import numpy as np

from .chunks import ChunkSource
from .covariance import full_covariances
from .estep import Kernel, accumulate
from .row_outputs import loglik_and_entropy
from .stats import FeatureMap, SuffStats


def incomplete_rows(x):
    """Boolean (n,) mask of the rows of a block holding a NaN, or None when none does.

    By one BLAS product: a row's sum is NaN when it holds a NaN (the data hold no infinity;
    should an overflow make a complete row's sum NaN, the row merely takes the slower path).
    """
    if x.dtype.kind != "f" or x.shape[0] == 0:
        return None
    rows = np.isnan(x @ np.ones(x.shape[1], dtype=x.dtype))
    return rows if rows.any() else None


def missing_mask(x):
    """Boolean (n, D) mask of the NaN entries of a block, or None when it holds none."""
    if incomplete_rows(x) is None:
        return None
    return np.isnan(x)


def patterns(nan):
    """Yield ``(observed, rows)`` for every distinct missingness pattern of ``nan`` (n, D):
    the (D,) boolean mask of the observed features and the indices of the rows."""
    n, D = nan.shape
    if n == 0:
        return
    if D <= 62:
        keys = nan.astype(np.int64) @ (np.int64(1) << np.arange(D, dtype=np.int64))
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(nan, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(first)))[:-1]
    for j, rows in enumerate(np.split(order, bounds)):
        yield ~nan[first[j]], rows


class BlockSource(ChunkSource):
    """One block of rows seen as a chunk source (to run a per-source function on it)."""

    def __init__(self, x, w=None):
        self.x, self.w = x, w
        self.n_features = x.shape[1]
        self.n_rows = x.shape[0]

    def chunks(self, max_rows):
        for a in range(0, self.n_rows, max_rows):
            yield self.x[a : a + max_rows], None if self.w is None else self.w[a : a + max_rows]


class _Pattern:
    """The per-component algebra of one missingness pattern (observed o, missing m).

    Everything per row is done on the quadratic features φ(u) = [1, u, u_i u_j (i <= j)] of
    the observed offsets u = x_o − s (s the E-step's shift), as in the kernel: one product
    gives the log-densities, one more the moments Σ r φ(u) from which the expected
    statistics of the completed rows follow exactly, because x̂_m = B_k u + c_k is affine in
    u (B_k = Σ_kmo Σ_koo⁻¹, c_k = μ_km − s_m − B_k (μ_ko − s_o)).
    """

    def __init__(self, observed, means, cov, log_weights, shift):
        o = self.o = np.flatnonzero(observed)
        m = self.m = np.flatnonzero(~observed)
        K = means.shape[0]
        self.fmap = FeatureMap("full", o.size)
        mo = means[:, o] - shift[o]
        mm = means[:, m] - shift[m]
        if o.size == 0:
            self.A = log_weights[:, None].copy()
            self.B = np.zeros((K, m.size, 0))
            self.c = mm
            self.cond_cov = cov[:, m[:, None], m[None, :]]
            return
        S_oo = cov[:, o[:, None], o[None, :]]
        S_om = cov[:, o[:, None], m[None, :]]
        chol = np.linalg.cholesky(S_oo)  # (K, do, do), lower
        eye = np.broadcast_to(np.eye(o.size), S_oo.shape)
        chol_inv = np.linalg.solve(chol, eye)
        P = np.swapaxes(chol_inv, 1, 2) @ chol_inv  # Σ_oo⁻¹
        logdet = -np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        self.A = self.fmap.coefficients(log_weights, logdet, P, mo)
        self.B = np.swapaxes(S_om, 1, 2) @ P  # (K, dm, do)
        self.c = mm - np.einsum("kmo,ko->km", self.B, mo)
        self.cond_cov = cov[:, m[:, None], m[None, :]] - self.B @ S_om

    def features(self, u):
        """φ(u) (n, F) of the observed offsets u (n, do)."""
        iu, ju = self.fmap.iu, self.fmap.ju
        return np.column_stack([np.ones(u.shape[0]), u, u[:, iu] * u[:, ju]])

    def completed_means(self, u):
        """x̂_m − s_m = B_k u + c_k of every row and component (K, n, dm)."""
        return np.einsum("kmo,no->knm", self.B, u) + self.c[:, None, :]

    def expected_moments(self, Mo):
        """From the moments Mo = Σ r φ(u) (K, F) of the observed offsets, the sums over
        the completed rows: N (K,), Σ r ŷ (K, D) and Σ r E[ŷ ŷᵀ] (K, D, D)."""
        do, dm = self.o.size, self.m.size
        D = do + dm
        K = Mo.shape[0]
        N = Mo[:, 0]
        so = Mo[:, 1 : 1 + do]
        Qoo = np.empty((K, do, do))
        Qoo[:, self.fmap.iu, self.fmap.ju] = Mo[:, 1 + do :]
        Qoo[:, self.fmap.ju, self.fmap.iu] = Mo[:, 1 + do :]
        B, c = self.B, self.c
        sm = np.einsum("kmo,ko->km", B, so) + N[:, None] * c
        # Σ r u ŷ_mᵀ = Q_oo Bᵀ + s_o cᵀ
        Qom = Qoo @ np.swapaxes(B, 1, 2) + so[:, :, None] * c[:, None, :]
        Bs = np.einsum("kmo,ko->km", B, so)
        Qmm = (
            B @ Qoo @ np.swapaxes(B, 1, 2)
            + Bs[:, :, None] * c[:, None, :]
            + c[:, :, None] * Bs[:, None, :]
            + N[:, None, None] * (c[:, :, None] * c[:, None, :] + self.cond_cov)
        )
        S = np.empty((K, D))
        S[:, self.o], S[:, self.m] = so, sm
        Q = np.empty((K, D, D))
        o, m = self.o, self.m
        Q[:, o[:, None], o[None, :]] = Qoo
        Q[:, o[:, None], m[None, :]] = Qom
        Q[:, m[:, None], o[None, :]] = np.swapaxes(Qom, 1, 2)
        Q[:, m[:, None], m[None, :]] = Qmm
        return N, S, Q


def _normalise(L):
    """Log-sum-exp over components (n,) and the responsibilities (K, n), row maximum shifted."""
    top = L.max(axis=0)
    R = np.exp(L - top)
    total = R.sum(axis=0)
    R /= total
    return np.log(total) + top, R


class MarginalMixture:
    """A mixture's marginals and conditionals for rows with missing values.

    Parameters
    ----------
    params : Params
        Weights, means and covariances (any covariance type, given as ``covariance_type``).
    covariance_type : str
    shift : ndarray (D,), optional
        Where the quadratic features are centred (the E-step's shift; default the
        mixture's mean): the closer to the data, the less cancellation in them.
    """

    def __init__(self, params, covariance_type, shift=None):
        K, D = params.means.shape
        self.K, self.D = K, D
        self.means = np.asarray(params.means, dtype=np.float64)
        self.cov = full_covariances(covariance_type, params.covariances, K, D)
        weights = np.asarray(params.weights, dtype=np.float64)
        self.log_weights = np.log(np.maximum(weights, np.finfo(np.float64).tiny))
        self.shift = (
            weights @ self.means / weights.sum()
            if shift is None
            else np.asarray(shift, dtype=np.float64)
        )
        self._patterns = {}

    def _pattern(self, observed):
        key = observed.tobytes()
        p = self._patterns.get(key)
        if p is None:
            p = _Pattern(observed, self.means, self.cov, self.log_weights, self.shift)
            self._patterns[key] = p
        return p

    def _groups(self, x, nan):
        """Per pattern: the pattern, its rows, the features φ(x_o − s) (n, F)."""
        for observed, rows in patterns(nan):
            p = self._pattern(observed)
            u = np.asarray(x[np.ix_(rows, p.o)], dtype=np.float64) - self.shift[p.o]
            yield p, rows, u, p.features(u)

    def log_joint(self, x, nan):
        """log π_k + log p(x_o | k) of every row (K, n): the marginal over observed values."""
        out = np.empty((self.K, x.shape[0]))
        for p, rows, _, phi in self._groups(x, nan):
            out[:, rows] = p.A @ phi.T
        return out

    def impute(self, x, nan):
        """The rows (n, D) float64 with each NaN replaced by Σ_k p(k | x_o) E[x_m | x_o, k]."""
        out = np.array(x, dtype=np.float64)
        for p, rows, u, phi in self._groups(x, nan):
            if p.m.size == 0:
                continue
            _, R = _normalise(p.A @ phi.T)
            cm = np.einsum("kn,knm->nm", R, p.completed_means(u))
            out[np.ix_(rows, p.m)] = cm + self.shift[p.m]
        return out

    def expected_sums(self, x, w, nan, fmap):
        """E-step sums of rows with missing values, in the layout of the kernel's raw sums.

        Returns ``(M, loglik, weight)``: M (K, F) holds Σ w r E[φ(x) | x_o] with φ the
        quadratic features about this mixture's ``shift`` (see :mod:`gmm.stats`); rows with
        nothing observed are skipped (they add neither weight nor likelihood).
        """
        K, D = self.K, self.D
        N = np.zeros(K)
        S = np.zeros((K, D))
        Q = np.zeros((K, D, D))
        loglik = weight = 0.0
        for p, rows, _, phi in self._groups(x, nan):
            if p.o.size == 0:
                continue
            ll, R = _normalise(p.A @ phi.T)
            wr = None if w is None else np.asarray(w, dtype=np.float64)[rows]
            if wr is not None:
                R *= wr
            loglik += float(ll.sum() if wr is None else ll @ wr)
            weight += float(rows.size if wr is None else wr.sum())
            Np, Sp, Qp = p.expected_moments(R @ phi)
            N += Np
            S += Sp
            Q += Qp
        M = np.empty((K, fmap.F))
        M[:, 0], M[:, 1 : 1 + D] = N, S
        if fmap.kind == "full":
            M[:, 1 + D :] = Q[:, fmap.iu, fmap.ju]
        elif fmap.kind == "diag":
            M[:, 1 + D :] = np.diagonal(Q, axis1=1, axis2=2)
        else:
            M[:, 1 + D] = np.trace(Q, axis1=1, axis2=2)
        return M, loglik, weight


#: Incomplete rows are gathered across blocks up to this many, so that each pattern's work
#: is a few large array operations rather than many small ones.
PENDING_ROWS = 1 << 16


def estep_missing(params, covariance_type, source, shift, dtype, rows):
    """:func:`gmm.estep.estep` for data holding NaN: complete rows through the kernel, the
    others through their marginals and conditional expectations, into the same sums."""
    kernel = Kernel.for_params(params, covariance_type, shift, dtype, rows)
    mixture = MarginalMixture(params, covariance_type, kernel.shift)
    K = params.means.shape[0]
    M = np.zeros((K, kernel.fmap.F))
    totals = np.zeros(2)  # Σ w log p, Σ w
    pending = []

    def flush():
        x = np.concatenate([p[0] for p in pending])
        w = None if pending[0][1] is None else np.concatenate([p[1] for p in pending])
        Mi, li, wi = mixture.expected_sums(x, w, np.isnan(x), kernel.fmap)
        M[...] += Mi
        totals[...] += (li, wi)
        pending.clear()

    n_pending = 0
    for x, w in source.chunks(kernel.rows):
        partial = incomplete_rows(x)
        if partial is not None:
            pending.append(_take(x, w, partial))
            n_pending += pending[-1][0].shape[0]
            if n_pending >= PENDING_ROWS:
                flush()
                n_pending = 0
            x, w = _take(x, w, ~partial)
        if x.shape[0]:
            Mc, lc, wc = accumulate(kernel, BlockSource(x, w))
            M += Mc
            totals += (lc, wc)
    if pending:
        flush()
    return SuffStats.from_raw(kernel.fmap, M, kernel.shift, params.means, *totals)


def _take(x, w, rows):
    """The rows of ``x`` and ``w`` where the mask ``rows`` is set (faster than x[rows])."""
    idx = np.flatnonzero(rows)
    return x.take(idx, axis=0), None if w is None else np.asarray(w).take(idx)


class FilledSource(ChunkSource):
    """The rows with every NaN replaced by ``fill`` (the data's mean) and rows with nothing
    observed given weight 0: what k-means initialisation and the restart of a collapsed
    component see (both need points, and only need them roughly right). With ``fill`` None
    the NaN stay: only the rows with nothing observed are weighed out (for sampling)."""

    def __init__(self, source, fill):
        self.source = source
        self.fill = None if fill is None else np.asarray(fill, dtype=np.float64)
        self.n_features = source.n_features
        self.n_rows = getattr(source, "n_rows", None)

    def chunks(self, max_rows):
        for x, w in self.source.chunks(max_rows):
            nan = missing_mask(x)
            if nan is None:
                yield x, w
                continue
            filled = x if self.fill is None else np.where(nan, self.fill.astype(x.dtype), x)
            empty = nan.all(axis=1)
            if empty.any():
                w = np.ones(x.shape[0]) if w is None else np.array(w, dtype=np.float64)
                w[empty] = 0.0
            yield filled, w


# -- rows of a fitted model ------------------------------------------------------------


def _split(kernel, source):
    """Yield ``(start, x, w, nan, partial)`` per block: ``nan`` None for complete blocks."""
    start = 0
    for x, w in source.chunks(kernel.rows):
        partial = incomplete_rows(x)
        yield start, x, w, None if partial is None else np.isnan(x), partial
        start += x.shape[0]


def rows_with_missing(fn, mixture, what):
    """Wrap a per-row function of :mod:`gmm.estep` (``fn(kernel, source, out)``) so that rows
    holding NaN get the same output from their marginal: ``what`` is "predict" (argmax),
    "proba" (responsibilities) or "score" (log p(x_o)). Complete blocks are passed to
    ``fn`` as they are, so their output is exactly ``fn``'s."""

    def run(kernel, source, out):
        for start, x, w, nan, partial in _split(kernel, source):
            block = out[start : start + x.shape[0]]
            if nan is None:
                fn(kernel, BlockSource(x, w), block)
                continue
            if not partial.all():
                complete = x[~partial]
                block[~partial] = fn(
                    kernel, BlockSource(complete), np.empty_like(block[: complete.shape[0]])
                )
            L = mixture.log_joint(x[partial], nan[partial])
            if what == "predict":
                block[partial] = np.argmax(L, axis=0)
            else:
                ll, R = _normalise(L)
                block[partial] = R.T if what == "proba" else ll
        return out

    return run


def iter_blocks_missing(kernel, mixture, source):
    """:func:`gmm.estep.iter_blocks` for rows holding NaN: the kernel scores the block with
    finite stand-ins for the missing values (a NaN would spoil the block's far-row test),
    then the incomplete rows' responsibilities and log p(x_o) are overwritten from their
    marginals. Complete blocks are exactly the kernel's."""
    start = 0
    stand_in = kernel.shift_dt
    for x, _ in source.chunks(kernel.rows):
        n = x.shape[0]
        partial = incomplete_rows(x)
        if partial is None:
            L, _ = kernel.logits(x)
            ll = kernel.normalize(L)
        else:
            nan = np.isnan(x)
            L, _ = kernel.logits(np.where(nan, stand_in.astype(x.dtype), x))
            ll = kernel.normalize(L)
            idx = np.flatnonzero(partial)
            lp, R = _normalise(mixture.log_joint(x[idx], nan[idx]))
            # As the kernel's, no responsibility is exactly 0 (callers take logarithms).
            L[:, idx] = np.maximum(R, np.finfo(L.dtype).tiny)
            ll[idx] = lp
        yield slice(start, start + n), L, ll
        start += n


def impute_rows(mixture):
    """A per-row function writing :meth:`MarginalMixture.impute` of every row into ``out``."""

    def run(kernel, source, out):
        for start, x, _, nan, partial in _split(kernel, source):
            block = out[start : start + x.shape[0]]
            block[...] = x
            if nan is not None:
                block[partial] = mixture.impute(x[partial], nan[partial])
        return out

    return run


def loglik_and_entropy_missing(kernel, mixture, source):
    """:func:`gmm.estep.loglik_and_entropy` for data holding NaN (rows with nothing
    observed add nothing, not even weight)."""
    loglik = weight = entropy = 0.0
    for _, x, w, nan, partial in _split(kernel, source):
        if nan is not None:
            observed = partial & ~nan.all(axis=1)
            ll, R = _normalise(mixture.log_joint(x[observed], nan[observed]))
            wo = np.ones(ll.shape[0]) if w is None else np.asarray(w, dtype=np.float64)[observed]
            with np.errstate(divide="ignore", invalid="ignore"):
                rlogr = np.where(R > 0, R * np.log(R), 0.0).sum(axis=0)
            loglik += float(ll @ wo)
            weight += float(wo.sum())
            entropy -= float(rlogr @ wo)
            x, w = x[~partial], None if w is None else w[~partial]
        if x.shape[0]:
            lc, wc, ec = loglik_and_entropy(kernel, BlockSource(x, w))
            loglik += lc
            weight += wc
            entropy += ec
    return loglik, weight, entropy
