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

Rows are grouped by their missingness pattern, and each pattern's algebra (one Cholesky
factor of Σ_koo per component) is done once for all its rows; images have a few patterns.
Complete rows never come here: they go through the E-step kernel unchanged. Rows with
nothing observed carry no information about the parameters: the E-step leaves them out
(they are counted by the data summary), and prediction gives them the prior.
"""

import numpy as np

from .chunks import ChunkSource
from .covariance import full_covariances
from .estep import Kernel, accumulate, loglik_and_entropy
from .stats import LOG_2PI, SuffStats


def missing_mask(x):
    """Boolean (n, D) mask of the NaN entries of a block, or None when it holds none."""
    if x.dtype.kind != "f":
        return None
    nan = np.isnan(x)
    return nan if nan.any() else None


def patterns(nan):
    """Yield ``(observed, rows)`` for every distinct missingness pattern of ``nan`` (n, D):
    the (D,) boolean mask of the observed features and the indices of the rows."""
    D = nan.shape[1]
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
    """The per-component algebra of one missingness pattern (observed o, missing m)."""

    def __init__(self, observed, means, cov):
        self.o = np.flatnonzero(observed)
        self.m = np.flatnonzero(~observed)
        o, m = self.o, self.m
        self.mu_o = means[:, o]
        self.mu_m = means[:, m]
        if o.size == 0:
            return
        S_oo = cov[:, o[:, None], o[None, :]]
        S_om = cov[:, o[:, None], m[None, :]]
        self.chol = np.linalg.cholesky(S_oo)  # (K, do, do), lower
        self.half_logdet = np.log(np.diagonal(self.chol, axis1=1, axis2=2)).sum(axis=1)
        # Bᵀ = Σ_oo⁻¹ Σ_om (K, do, dm): E[x_m | x_o] = μ_m + (x_o − μ_o) Bᵀ.
        self.Bt = np.linalg.solve(S_oo, S_om)
        self.cond_cov = cov[:, m[:, None], m[None, :]] - np.swapaxes(S_om, 1, 2) @ self.Bt

    def log_joint(self, xo, log_weights):
        """log π_k + log N(x_o | μ_ko, Σ_koo) (K, n), and the offsets x_o − μ_ko (K, n, do)."""
        K, n = log_weights.shape[0], xo.shape[0]
        if self.o.size == 0:
            return np.broadcast_to(log_weights[:, None], (K, n)).copy(), None
        diff = xo[None, :, :] - self.mu_o[:, None, :]
        z = np.linalg.solve(self.chol, np.swapaxes(diff, 1, 2))  # L⁻¹ (x − μ), (K, do, n)
        maha = np.einsum("kdn,kdn->kn", z, z)
        const = log_weights - 0.5 * self.o.size * LOG_2PI - self.half_logdet
        return const[:, None] - 0.5 * maha, diff

    def conditional_means(self, diff, n):
        """E[x_m | x_o, k] (K, n, dm)."""
        if diff is None:
            return np.broadcast_to(self.mu_m[:, None, :], (self.mu_m.shape[0], n, self.m.size))
        return self.mu_m[:, None, :] + diff @ self.Bt


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
    """

    def __init__(self, params, covariance_type):
        K, D = params.means.shape
        self.K, self.D = K, D
        self.means = np.asarray(params.means, dtype=np.float64)
        self.cov = full_covariances(covariance_type, params.covariances, K, D)
        self.log_weights = np.log(np.maximum(params.weights, np.finfo(np.float64).tiny))
        self._patterns = {}

    def _pattern(self, observed):
        key = observed.tobytes()
        p = self._patterns.get(key)
        if p is None:
            p = self._patterns[key] = _Pattern(observed, self.means, self.cov)
        return p

    def _groups(self, x, nan):
        x = np.asarray(x, dtype=np.float64)
        for observed, rows in patterns(nan):
            p = self._pattern(observed)
            yield p, rows, x[np.ix_(rows, p.o)]

    def log_joint(self, x, nan):
        """log π_k + log p(x_o | k) of every row (K, n): the marginal over observed values."""
        out = np.empty((self.K, x.shape[0]))
        for p, rows, xo in self._groups(x, nan):
            out[:, rows] = p.log_joint(xo, self.log_weights)[0]
        return out

    def impute(self, x, nan):
        """The rows (n, D) float64 with each NaN replaced by Σ_k p(k | x_o) E[x_m | x_o, k]."""
        out = np.array(x, dtype=np.float64)
        for p, rows, xo in self._groups(x, nan):
            if p.m.size == 0:
                continue
            L, diff = p.log_joint(xo, self.log_weights)
            _, R = _normalise(L)
            cm = p.conditional_means(diff, rows.size)
            out[np.ix_(rows, p.m)] = np.einsum("kn,knd->nd", R, cm)
        return out

    def expected_sums(self, x, w, nan, shift, fmap):
        """E-step sums of rows with missing values, in the layout of the kernel's raw sums.

        Returns ``(M, loglik, weight)``: M (K, F) holds Σ w r E[φ(x) | x_o] with φ the
        quadratic features about ``shift`` (see :mod:`gmm.stats`); rows with nothing
        observed are skipped (they add neither weight nor likelihood).
        """
        K, D = self.K, self.D
        M = np.zeros((K, fmap.F))
        loglik = weight = 0.0
        for p, rows, xo in self._groups(x, nan):
            if p.o.size == 0:
                continue
            n = rows.size
            L, diff = p.log_joint(xo, self.log_weights)
            ll, R = _normalise(L)
            wr = None if w is None else np.asarray(w, dtype=np.float64)[rows]
            if wr is not None:
                R *= wr
            loglik += float(ll.sum() if wr is None else ll @ wr)
            weight += float(n if wr is None else wr.sum())
            # Completed rows about the shift, per component: (K, n, D).
            y = np.empty((K, n, D))
            y[:, :, p.o] = xo - shift[p.o]
            y[:, :, p.m] = p.conditional_means(diff, n) - shift[p.m]
            Nk = R.sum(axis=1)
            M[:, 0] += Nk
            M[:, 1 : 1 + D] += np.einsum("kn,knd->kd", R, y)
            C = p.cond_cov
            if fmap.kind == "full":
                Q = np.swapaxes(y * R[:, :, None], 1, 2) @ y
                Q[:, p.m[:, None], p.m[None, :]] += Nk[:, None, None] * C
                M[:, 1 + D :] += Q[:, fmap.iu, fmap.ju]
            else:
                Q = np.einsum("kn,knd->kd", R, y * y)
                Q[:, p.m] += Nk[:, None] * np.diagonal(C, axis1=1, axis2=2)
                M[:, 1 + D :] += Q if fmap.kind == "diag" else Q.sum(axis=1, keepdims=True)
        return M, loglik, weight


def estep_missing(params, covariance_type, source, shift, dtype, rows):
    """:func:`gmm.estep.estep` for data holding NaN: complete rows through the kernel, the
    others through their marginals and conditional expectations, into the same sums."""
    kernel = Kernel.for_params(params, covariance_type, shift, dtype, rows)
    mixture = MarginalMixture(params, covariance_type)
    M = np.zeros((kernel.K, kernel.fmap.F))
    loglik = weight = 0.0
    for x, w in source.chunks(kernel.rows):
        nan = missing_mask(x)
        if nan is not None:
            partial = nan.any(axis=1)
            Mi, li, wi = mixture.expected_sums(
                x[partial],
                None if w is None else w[partial],
                nan[partial],
                kernel.shift,
                kernel.fmap,
            )
            M += Mi
            loglik += li
            weight += wi
            x, w = x[~partial], None if w is None else w[~partial]
        if x.shape[0]:
            Mc, lc, wc = accumulate(kernel, BlockSource(x, w))
            M += Mc
            loglik += lc
            weight += wc
    return SuffStats.from_raw(kernel.fmap, M, kernel.shift, params.means, loglik, weight)


class FilledSource(ChunkSource):
    """The rows with every NaN replaced by ``fill`` (the data's mean) and rows with nothing
    observed given weight 0: what k-means initialisation and the restart of a collapsed
    component see (both need points, and only need them roughly right)."""

    def __init__(self, source, fill):
        self.source = source
        self.fill = np.asarray(fill, dtype=np.float64)
        self.n_features = source.n_features
        self.n_rows = getattr(source, "n_rows", None)

    def chunks(self, max_rows):
        for x, w in self.source.chunks(max_rows):
            nan = missing_mask(x)
            if nan is None:
                yield x, w
                continue
            filled = np.where(nan, self.fill.astype(x.dtype), x)
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
        nan = missing_mask(x)
        yield start, x, w, nan, None if nan is None else nan.any(axis=1)
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
