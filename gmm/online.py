"""Online (stepwise) EM: one M-step per chunk, from running sufficient statistics.

Stepwise EM (Cappé & Moulines 2009, "On-line expectation-maximization algorithm for latent
data models", JRSS B 71; Liang & Klein 2009, "Online EM for unsupervised models") keeps a
running average s̄ of the sufficient statistics per unit of weight. Chunk t (from 0) has
statistics s_t under the current parameters, and

    s̄ ← (1 - η_t) s̄ + η_t s_t / w_t,     η_t = (t + 2)^(-α),  0.5 < α ≤ 1,

after which the parameters are the M-step of s̄ (scaled by the weight seen so far, so a
prior counts as much as in a batch fit of that many rows). The step sizes satisfy
Σ η = ∞, Σ η² < ∞, the Robbins–Monro conditions under which the running statistics converge
to a stationary point of the likelihood; α near 0.5 forgets the early, poor parameters
fastest, α = 1 averages all chunks equally.

The statistics are kept *raw*, about a fixed shift (the mean of the first chunk), because
the centres c_k of :class:`gmm.stats.SuffStats` move after every chunk: each chunk's centred
sums are converted to raw ones, averaged, and re-centred on the current means just before
the M-step, all in float64. The first s̄ is the statistics the initial parameters imply
(π_k, π_k μ_k, π_k (Σ_k + μ_k μ_kᵀ)), so a warm start continues from a fitted model.
"""

from dataclasses import dataclass, replace

import numpy as np

from ._checks import check_random_state
from .chunks import ChunkSource, DataSummary, summarize
from .covariance import STATS_KIND, full_covariances
from .em import FitContext, notifier
from .estep import Kernel, block_rows, estep
from .init import initial_params
from .missing import FilledSource, estep_missing
from .mstep import Params, data_scale, m_step, reset_components
from .prior import resolve_prior
from .row_outputs import worst_rows
from .sources import as_source
from .stats import FeatureMap, SuffStats


@dataclass
class OnlineState:
    """Everything stepwise EM carries from one chunk to the next."""

    ctx: FitContext
    params: Params
    summary: DataSummary  # of every row seen so far
    n: np.ndarray  # (K,) running Σ r per unit weight
    s: np.ndarray  # (K, D) running Σ r (x - shift)
    q: np.ndarray  # running Σ r (x - shift)(x - shift)ᵀ in the statistics kind's layout
    rng: np.random.Generator
    resets_left: np.ndarray
    t: int = 0
    n_resets: int = 0


def check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise ValueError(f"online_alpha must be a number in (0.5, 1]; got {alpha!r}.")
    if not 0.5 < float(alpha) <= 1.0:
        raise ValueError(
            f"online_alpha must be in (0.5, 1] (the step sizes (t + 2)^-alpha must sum to "
            f"infinity and their squares must not); got {alpha}."
        )
    return float(alpha)


def step_size(t, alpha):
    """η_t = (t + 2)^(-α) for the t-th chunk, from 0."""
    return (t + 2.0) ** (-alpha)


# -- statistics about a fixed shift ----------------------------------------------------


def _raw(kind, stats, shift):
    """Sums of ``stats`` (centred on its centres) as sums about ``shift``, per unit weight."""
    d = stats.centres - shift
    n, sk, qk = stats.nk, stats.sk, stats.qk
    s = sk + n[:, None] * d
    if kind == "full":
        sd = sk[:, :, None] * d[:, None, :]
        q = qk + sd + sd.transpose(0, 2, 1) + n[:, None, None] * (d[:, :, None] * d[:, None, :])
    elif kind == "diag":
        q = qk + 2.0 * sk * d + n[:, None] * d**2
    else:
        q = qk + 2.0 * (sk * d).sum(axis=1) + n * (d**2).sum(axis=1)
    return n / stats.weight, s / stats.weight, q / stats.weight


def _implied(kind, covariance_type, params, shift, reg_covar):
    """The raw statistics per unit weight under which ``params`` are the M-step's answer."""
    K, D = params.means.shape
    pi = params.weights
    m = params.means - shift
    C = full_covariances(covariance_type, params.covariances, K, D) - reg_covar * np.eye(D)
    if kind == "full":
        q = pi[:, None, None] * (C + m[:, :, None] * m[:, None, :])
    elif kind == "diag":
        q = pi[:, None] * (np.diagonal(C, axis1=1, axis2=2) + m**2)
    else:
        q = pi * (np.trace(C, axis1=1, axis2=2) + (m**2).sum(axis=1))
    return pi.copy(), pi[:, None] * m, q


def _centred(kind, n, s, q, shift, centres, weight):
    """:class:`SuffStats` of the running sums, scaled to ``weight`` and centred on
    ``centres`` (the re-centring of :meth:`SuffStats.from_raw`)."""
    d = centres - shift
    sk = s - n[:, None] * d
    if kind == "full":
        sd = s[:, :, None] * d[:, None, :]
        qk = q - sd - sd.transpose(0, 2, 1) + n[:, None, None] * (d[:, :, None] * d[:, None, :])
    elif kind == "diag":
        qk = q - 2.0 * s * d + n[:, None] * d**2
    else:
        qk = q - 2.0 * (s * d).sum(axis=1) + n * (d**2).sum(axis=1)
    return SuffStats(weight * n, weight * sk, weight * qk, centres.copy(), 0.0, weight)


def merge_summaries(a, b):
    """The :class:`DataSummary` of two disjoint sets of rows (Chan, Golub & LeVeque 1979)."""
    W = a.total_weight + b.total_weight
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.total_weight / W)
    M2 = (
        a.covariance * a.total_weight
        + b.covariance * b.total_weight
        + np.outer(delta, delta) * (a.total_weight * b.total_weight / W)
    )
    return DataSummary(a.n_rows + b.n_rows, a.n_positive + b.n_positive, W, mean, M2 / W)


# -- the steps -------------------------------------------------------------------------


def start(est, source, summary, dtype, rng, *, continue_fitted):
    """The state before the first chunk: options resolved against that chunk, first
    parameters from it (or the estimator's fitted ones), their implied statistics."""
    K, D = est.n_components, summary.n_features
    ctype, reg = est.covariance_type, float(est.reg_covar)
    est._check_fallback_covariance(summary)
    prior = resolve_prior(est.prior, ctype, K, summary.mean, summary.covariance)
    fmap = FeatureMap(STATS_KIND[ctype], D)
    shift = est.weights_ @ est.means_ if continue_fitted else summary.mean
    ctx = FitContext(
        n_components=K,
        covariance_type=ctype,
        tol=float(est.tol),
        max_iter=1,
        reg_covar=reg,
        prior=prior,
        init=est.init,
        user_init=est._warm_init(D) if continue_fitted else est._check_user_init(D),
        dtype=dtype,
        rows=block_rows(K, fmap, dtype, est.chunk_mib),
        shift=np.array(shift, dtype=np.float64),
        scale=data_scale(summary, reg, K, dtype=dtype, shift=shift),
    )
    # With missing values, initialisation sees the mean-filled rows (as in batch EM).
    points = FilledSource(source, summary.mean) if summary.has_missing else source
    params = initial_params(ctx, points, summary, rng)
    n, s, q = _implied(fmap.kind, ctype, params, ctx.shift, reg)
    return OnlineState(ctx, params, None, n, s, q, rng, np.full(K, ctx.max_resets), t=0, n_resets=0)


def step(state, source, summary, alpha):
    """One stepwise-EM update from one chunk; returns its mean log-likelihood under the
    parameters it was scored with (before the update)."""
    ctx = state.ctx
    kind = STATS_KIND[ctx.covariance_type]
    e_step = estep_missing if summary.has_missing else estep
    stats = e_step(state.params, ctx.covariance_type, source, ctx.shift, ctx.dtype, ctx.rows)
    if stats.weight <= 0.0:
        return None
    state.summary = summary if state.summary is None else merge_summaries(state.summary, summary)
    eta = step_size(state.t, alpha)
    n, s, q = _raw(kind, stats, ctx.shift)
    state.n = (1.0 - eta) * state.n + eta * n
    state.s = (1.0 - eta) * state.s + eta * s
    state.q = (1.0 - eta) * state.q + eta * q
    state.t += 1
    scale = data_scale(
        state.summary, ctx.reg_covar, ctx.n_components, dtype=ctx.dtype, shift=ctx.shift
    )
    state.ctx = ctx = replace(ctx, scale=scale)
    W = state.summary.total_weight
    running = _centred(kind, state.n, state.s, state.q, ctx.shift, state.params.means, W)
    params, collapsed = m_step(running, ctx.covariance_type, ctx.reg_covar, ctx.prior, scale)
    to_reset = np.flatnonzero(collapsed & (state.resets_left > 0))
    if to_reset.size:
        points = FilledSource(source, summary.mean) if summary.has_missing else source
        params = _reset(params, to_reset, collapsed, points, ctx)
        state.resets_left[to_reset] -= 1
        state.n_resets += int(to_reset.size)
        n, s, q = _implied(kind, ctx.covariance_type, params, ctx.shift, ctx.reg_covar)
        # The restarted components begin again from their new parameters.
        state.n[to_reset], state.s[to_reset] = n[to_reset], s[to_reset]
        state.q[to_reset] = q[to_reset]
    state.params = params
    return stats.loglik / stats.weight


def _reset(params, components, collapsed, source, ctx):
    """Restart collapsed components at the rows of this chunk the others explain worst."""
    healthy = ~collapsed
    if not healthy.any():
        return params
    sub = params.subset(healthy, ctx.covariance_type)
    kernel = Kernel.for_params(sub, ctx.covariance_type, ctx.shift, ctx.dtype, ctx.rows)
    rows = worst_rows(kernel, source, len(components))
    if rows.shape[0] == 0:
        return params
    rows = rows[np.arange(len(components)) % rows.shape[0]]
    return reset_components(params, components, rows, ctx.covariance_type, ctx.scale)


def one_pass(X, sample_weight, batch_rows):
    """The blocks of one pass over ``X``: an array, a chunk source, or a one-shot iterator
    of ``(X_chunk, w_chunk)`` pairs (a stream is read once, so it need not restart)."""
    stream = hasattr(X, "__next__") and not isinstance(X, ChunkSource | np.ndarray)
    if stream:
        if sample_weight is not None:
            raise ValueError("give the weights of a stream inside its (X, w) pairs.")
        for item in X:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(
                    "every item of the stream must be an (X_chunk, w_chunk) pair; use "
                    "(X_chunk, None) for unweighted rows."
                )
            yield from as_source(np.asarray(item[0]), item[1]).chunks(batch_rows)
        return
    yield from as_source(X, sample_weight).chunks(batch_rows)


def chunk_source(X, w, allow_nan=False):
    """A validated one-block source and its summary (raises for bad shapes, infinity, and
    NaN unless ``allow_nan``: then NaN marks missing values, see :mod:`gmm.missing`)."""
    source = as_source(X, w)
    return source, summarize(source, allow_nan=allow_nan)


def partial_fit(est, X, sample_weight, dtype, *, continue_fitted):
    """One stepwise update of the estimator ``est`` from the chunk ``X`` (see
    :meth:`gmm.GaussianMixture.partial_fit`); sets its fitted attributes."""
    alpha = check_alpha(est.online_alpha)
    allow_nan = getattr(est, "missing", "marginalize") == "marginalize"
    source, summary = chunk_source(X, sample_weight, allow_nan)
    state = getattr(est, "_online", None)
    if state is None:
        D = summary.n_features
        if continue_fitted and est.means_.shape != (est.n_components, D):
            raise ValueError(f"X has {D} features but the fitted model has {est.means_.shape[1]}.")
        rng = check_random_state(est.random_state)
        state = start(est, source, summary, dtype, rng, continue_fitted=continue_fitted)
        est.history_ = np.array([])
        est.reset_iterations_ = []
        est.n_unobserved_ = 0
    elif summary.n_features != state.params.means.shape[1]:
        raise ValueError(
            f"X has {summary.n_features} features but the earlier chunks had "
            f"{state.params.means.shape[1]}."
        )
    resets = state.n_resets
    scored = state.params
    value = step(state, source, summary, alpha)
    est._online = state
    est._set_params(state.params)
    if value is not None:
        est.history_ = np.append(est.history_, value)
        if est.callback is not None:
            notifier(est.callback)(state.t, value, scored)
    if state.n_resets > resets:
        est.reset_iterations_.append(state.t)
    h = est.history_
    est.converged_ = bool(len(h) >= 2 and abs(h[-1] - h[-2]) < est.tol)
    est.n_iter_ = state.t
    est.lower_bound_ = float(h[-1]) if len(h) else -np.inf
    est.n_resets_ = state.n_resets
    est.prior_ = state.ctx.prior
    est.n_features_in_ = summary.n_features
    est.n_unobserved_ = getattr(est, "n_unobserved_", 0) + summary.n_unobserved
    return est
