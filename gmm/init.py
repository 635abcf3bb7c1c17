"""Initial parameters: k-means (k-means++ seeding, then Lloyd), k-means++ alone, random
responsibilities, or random rows of the data. The random generator is always passed in.

k-means runs on a weighted sample of the rows (all of them when there are few), which is
where the centres are found; one pass over all the data then assigns every row to its
nearest centre, and the mixture's first parameters are the weights, means and covariances
of those clusters (the usual start of EM, Bishop §9.2.2).
"""

import warnings

import numpy as np

from .chunks import weighted_sample
from .covariance import from_full_covariance, precision_cholesky
from .estep import hard_stats, soft_stats_random
from .exceptions import FewDistinctPointsWarning
from .mstep import Params, m_step

#: Rows of the k-means sample; clipped by :func:`sample_size`.
MAX_SAMPLE = 65536


def sample_size(K):
    return int(min(MAX_SAMPLE, max(20000, 100 * K)))


# -- k-means on an in-memory weighted sample ------------------------------------------


def _sqdist(X, x2, C):
    """Squared distances (len(C), len(X)) by the expansion |x|² - 2 x·c + |c|², clipped at 0."""
    d = x2[None, :] - 2.0 * (C @ X.T) + (C**2).sum(axis=1)[:, None]
    np.maximum(d, 0.0, out=d)
    return d


def kmeans_plusplus(X, w, K, rng):
    """Weighted greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

    Returns the centres (K, D) and the number of distinct centres found; when the data hold
    fewer than K distinct points the remaining centres repeat chosen ones.
    """
    n = X.shape[0]
    x2 = (X**2).sum(axis=1)
    centres = np.empty((K, X.shape[1]))
    first = rng.choice(n, p=w / w.sum())
    centres[0] = X[first]
    closest = _sqdist(X, x2, centres[:1])[0]
    potential = float(w @ closest)
    n_trials = 2 + int(np.log(K))
    for c in range(1, K):
        if potential <= 0.0:
            centres[c:] = centres[rng.integers(0, c, size=K - c)]
            return centres, c
        cum = np.cumsum(w * closest)
        cand = np.searchsorted(cum, rng.random(n_trials) * cum[-1], side="right")
        np.minimum(cand, n - 1, out=cand)
        dist = np.minimum(closest, _sqdist(X, x2, X[cand]))
        pots = dist @ w
        best = int(np.argmin(pots))
        centres[c] = X[cand[best]]
        closest = dist[best]
        potential = float(pots[best])
    return centres, K


def _assign(X, x2, C, block=8192):
    labels = np.empty(X.shape[0], dtype=np.intp)
    d2 = np.empty(X.shape[0])
    for a in range(0, X.shape[0], block):
        d = _sqdist(X[a : a + block], x2[a : a + block], C)
        labels[a : a + block] = np.argmin(d, axis=0)
        d2[a : a + block] = d[labels[a : a + block], np.arange(d.shape[1])]
    return labels, d2


def lloyd(X, w, centres, *, max_iter=100, tol=1e-4):
    """Weighted Lloyd iterations from ``centres``; an empty cluster moves to the farthest row.

    Stops when no label changes or the centres move less than ``tol`` times the data's mean
    variance (scikit-learn's criterion).
    """
    K, D = centres.shape
    x2 = (X**2).sum(axis=1)
    mean = (w @ X) / w.sum()
    tol_abs = tol * float((w @ (X - mean) ** 2).sum() / w.sum() / D)
    centres = centres.copy()
    labels = None
    for _ in range(max_iter):
        new_labels, d2 = _assign(X, x2, centres)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        N = np.bincount(labels, weights=w, minlength=K)
        S = np.stack([np.bincount(labels, weights=w * X[:, j], minlength=K) for j in range(D)], 1)
        new = centres.copy()
        full = N > 0
        new[full] = S[full] / N[full, None]
        empty = np.flatnonzero(~full)
        if empty.size:
            far = np.argsort(-(w * d2), kind="stable")[: empty.size]
            far = far[d2[far] > 0]
            new[empty[: far.size]] = X[far]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol_abs:
            break
    return centres


# -- initial parameters ---------------------------------------------------------------


def _warn_distinct(n_distinct, K):
    warnings.warn(
        f"the data hold only {n_distinct} distinct point(s) for {K} components; the extra "
        "components will have (almost) no weight. Use fewer components.",
        FewDistinctPointsWarning,
        stacklevel=4,
    )


def _from_stats(stats, ctx):
    params, collapsed = m_step(stats, ctx.covariance_type, ctx.reg_covar, ctx.prior, ctx.scale)
    if collapsed.any() and ctx.covariance_type not in ("tied", "tied_diag"):
        # An empty cluster would start EM as a spike: start it broad instead.
        fallback = from_full_covariance(ctx.covariance_type, ctx.scale.covariance, len(collapsed))
        params.covariances[collapsed] = fallback[collapsed]
        params.precisions_cholesky = precision_cholesky(ctx.covariance_type, params.covariances)
    return params


def initial_params(ctx, source, summary, rng):
    """First parameters for one EM run, by ``ctx.init`` (and the user's ``*_init`` arrays)."""
    K = ctx.n_components
    user = ctx.user_init
    if user.means is not None and user.weights is not None and user.precisions_cholesky is not None:
        # Everything given (or a warm start): no pass over the data is needed.
        return Params(
            user.weights.copy(),
            user.means.copy(),
            user.covariances.copy(),
            user.precisions_cholesky.copy(),
        )
    if user.means is not None:
        params = _from_stats(_hard(user.means, ctx, source), ctx)
    elif ctx.init == "random":
        key = rng.integers(0, 2**63, size=2, dtype=np.uint64)
        stats = soft_stats_random(
            K, ctx.covariance_type, source, ctx.shift, ctx.dtype, ctx.rows, key, ctx.feature_scale
        )
        params = _from_stats(stats, ctx)
    else:
        Xs, ws = weighted_sample(source, summary, sample_size(K), rng)
        if ctx.init == "random_from_data":
            params = _random_from_data(Xs, ws, ctx, rng)
        else:
            # Centred in float64 first: distances by |x|² - 2 x·c + |c|² lose every digit of
            # data far from 0 (a spread of 1e-3 at an offset of 1e8).
            Xc = Xs - ctx.shift
            centres, n_distinct = kmeans_plusplus(Xc, ws, K, rng)
            if n_distinct < K:
                _warn_distinct(n_distinct, K)
            if ctx.init == "kmeans":
                centres = lloyd(Xc, ws, centres)
            params = _from_stats(_hard(centres + ctx.shift, ctx, source), ctx)
    return _apply_user_init(params, user, ctx)


def _hard(centres, ctx, source):
    return hard_stats(
        centres, ctx.covariance_type, source, ctx.shift, ctx.dtype, ctx.rows, ctx.feature_scale
    )


def _random_from_data(Xs, ws, ctx, rng):
    K = ctx.n_components
    # Merge repeated rows (the sample is the data itself when it is small): K means are
    # drawn among distinct points, and fewer than K of those is what the warning is about.
    Xs, inverse = np.unique(Xs, axis=0, return_inverse=True)
    ws = np.bincount(inverse.ravel(), weights=ws, minlength=Xs.shape[0])
    n = Xs.shape[0]
    p = ws / ws.sum()
    if n >= K:
        idx = rng.choice(n, size=K, replace=False, p=p)
    else:
        _warn_distinct(n, K)
        idx = np.concatenate([rng.permutation(n), rng.choice(n, size=K - n, p=p)])
    covariances = from_full_covariance(ctx.covariance_type, ctx.scale.covariance, K)
    return Params(
        np.full(K, 1.0 / K),
        Xs[idx].copy(),
        covariances,
        precision_cholesky(ctx.covariance_type, covariances),
    )


def _apply_user_init(params, user, ctx):
    if user.weights is not None:
        params.weights = user.weights.copy()
    if user.means is not None:
        params.means = user.means.copy()
    if user.precisions_cholesky is not None:
        params.precisions_cholesky = user.precisions_cholesky.copy()
        params.covariances = user.covariances.copy()
    return params
