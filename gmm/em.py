"""The EM driver: passes over the chunk source until the objective stops improving.

Each iteration is one E-step pass (sufficient statistics and the log-likelihood of the
current parameters) and one M-step. The objective is the mean log-likelihood per unit of
weight, plus log p(θ) / Σw with a prior (then it is the log-posterior, up to a constant).
EM never decreases it (Bishop §9.4); where rounding or the covariance regularisation makes
a step go down, the driver keeps the better parameters and stops, so the history it returns
is non-decreasing between resets. A collapsed component is restarted at a poorly explained
row (see :func:`_reset`), which may lower the objective once; those iterations are listed
in ``reset_iterations``.
"""

import functools
import inspect
import warnings
from dataclasses import dataclass, field

import numpy as np

from .covariance import from_full_covariance, log_prior, precision_cholesky
from .estep import Kernel, estep
from .exceptions import ConvergenceWarning
from .init import initial_params
from .missing import FilledSource, estep_missing
from .mstep import Params, m_step, reset_components
from .row_outputs import worst_rows


@dataclass(frozen=True)
class UserInit:
    weights: np.ndarray | None = None
    means: np.ndarray | None = None
    precisions_cholesky: np.ndarray | None = None
    covariances: np.ndarray | None = None


@dataclass(frozen=True)
class FitContext:
    """Everything a fit needs besides the data: options resolved against the data."""

    n_components: int
    covariance_type: str
    tol: float
    max_iter: int
    reg_covar: float
    prior: object
    init: str
    user_init: UserInit
    dtype: np.dtype
    rows: int
    shift: np.ndarray
    scale: object
    max_resets: int = 3
    missing: bool = False  # the data hold NaN (values missing at random), see gmm.missing
    #: Power of two the E-step multiplies centred rows by (see gmm.estep.Kernel).
    feature_scale: float = 1.0


@dataclass
class EMResult:
    params: object
    converged: bool
    n_iter: int
    history: list = field(default_factory=list)
    n_resets: int = 0
    reset_iterations: list = field(default_factory=list)
    stop: str = "max_iter"  # why EM stopped: "converged", "decrease" or "max_iter"

    @property
    def lower_bound(self):
        return self.history[-1] if self.history else -np.inf


#: Relative rounding of the mean log-likelihood summed over rows in each working precision.
ROUNDING = {"float32": 1e-6, "float64": 1e-12}


def objective(stats, params, ctx):
    value = stats.loglik
    if ctx.prior is not None:
        value += log_prior(ctx.covariance_type, params.means, params.precisions_cholesky, ctx.prior)
    return value / stats.weight


def notifier(callback):
    """``callback`` as a function of (iteration, objective, params): the parameters are
    passed only to a callback with a keyword parameter ``params`` (as SciPy's ``minimize``
    passes ``intermediate_result``), so ``callback(iteration, objective)`` keeps working."""
    if callback is None:
        return None
    try:
        takes_params = "params" in inspect.signature(callback).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_params = False
    if takes_params:
        return lambda i, value, params: callback(i, value, params=params.copy())
    return lambda i, value, params: callback(i, value)


def run_em(source, params, ctx, callback=None, reset_source=None):
    """EM from ``params`` until convergence or ``ctx.max_iter`` iterations.

    ``reset_source`` (default ``source``) holds the rows a collapsed component may restart
    at; with missing values it is the mean-filled data.
    """
    # The missing-value E-step works in the data's units (no feature scale).
    e_step = estep_missing if ctx.missing else functools.partial(estep, scale=ctx.feature_scale)
    reset_source = source if reset_source is None else reset_source
    notify = notifier(callback)
    result = EMResult(params, False, 0)
    resets_left = np.full(ctx.n_components, ctx.max_resets)
    previous = None
    just_reset = False
    for iteration in range(1, ctx.max_iter + 1):
        stats = e_step(params, ctx.covariance_type, source, ctx.shift, ctx.dtype, ctx.rows)
        value = objective(stats, params, ctx)
        if previous is not None and not just_reset and value < previous[0]:
            # Only rounding or the reg_covar term can do this: keep the better parameters.
            result.params = previous[1]
            drop = previous[0] - value
            # A drop within the rounding of the objective is convergence whatever tol is.
            noise = ROUNDING[np.dtype(ctx.dtype).name] * (1.0 + abs(value))
            result.converged = drop < max(ctx.tol, noise)
            result.stop = "converged" if result.converged else "decrease"
            if not result.converged:
                warnings.warn(
                    f"the objective decreased by {previous[0] - value:.3g} at iteration "
                    f"{iteration}; EM stopped with the best parameters. This happens when "
                    "reg_covar dominates the spread of the data or with near-singular "
                    "components in float32: scale the data, lower reg_covar, or use "
                    "dtype=float64.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            break
        result.history.append(value)
        result.n_iter = iteration
        new_params, collapsed = m_step(
            stats, ctx.covariance_type, ctx.reg_covar, ctx.prior, ctx.scale
        )
        to_reset = np.flatnonzero(collapsed & (resets_left > 0))
        if to_reset.size:
            new_params = _reset(new_params, to_reset, collapsed, reset_source, ctx)
            resets_left[to_reset] -= 1
            result.n_resets += int(to_reset.size)
            result.reset_iterations.append(iteration)
        converged = (
            previous is not None
            and not just_reset
            and not to_reset.size
            and abs(value - previous[0]) < ctx.tol
        )
        previous = (value, params)
        params = new_params
        result.params = params
        just_reset = bool(to_reset.size)
        if notify is not None:
            notify(iteration, value, previous[1])
        if converged:
            result.converged = True
            result.stop = "converged"
            break
    return result


def _reset(params, components, collapsed, source, ctx):
    """Restart ``components`` at the rows the healthy components explain worst."""
    healthy = ~collapsed
    if healthy.any():
        sub = params.subset(healthy, ctx.covariance_type)
        kernel = Kernel.for_params(
            sub, ctx.covariance_type, ctx.shift, ctx.dtype, ctx.rows, ctx.feature_scale
        )
    else:
        kernel = _data_kernel(ctx)
    rows = worst_rows(kernel, source, len(components))
    if rows.shape[0] == 0:
        return params
    # Fewer distinct candidates than components: reuse the worst ones.
    rows = rows[np.arange(len(components)) % rows.shape[0]]
    return reset_components(params, components, rows, ctx.covariance_type, ctx.scale)


def _data_kernel(ctx):
    """One Gaussian with the data's mean and covariance: what explains rows when no
    component is healthy."""
    cov = from_full_covariance(ctx.covariance_type, ctx.scale.covariance, 1)
    p = Params(
        np.ones(1), ctx.shift[None, :].copy(), cov, precision_cholesky(ctx.covariance_type, cov)
    )
    return Kernel.for_params(
        p, ctx.covariance_type, ctx.shift, ctx.dtype, ctx.rows, ctx.feature_scale
    )


def fit_mixture(source, summary, ctx, n_init, rng, callback=None):
    """``n_init`` runs of initialisation + EM; the run with the best final objective wins."""
    best = None
    # Initialisation needs points: with missing values it sees the mean-filled rows.
    filled = FilledSource(source, ctx.shift) if ctx.missing else source
    for _ in range(n_init):
        params = initial_params(ctx, filled, summary, rng)
        result = run_em(source, params, ctx, callback, reset_source=filled)
        if best is None or result.lower_bound > best.lower_bound:
            best = result
    return best
