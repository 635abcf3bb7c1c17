"""Growing a fitted mixture by splitting components: the warm start of
:func:`gmm.select_model` from K to a larger K (:func:`grow_mixture`, :func:`split_parameters`).

Splitting a component
---------------------
One E-step pass gives each component's responsibility-weighted scatter
``Q_k = Σ w r_k (x - μ_k)(x - μ_k)ᵀ``. The component with the largest leading eigenvalue of
``Q_k`` (the most weighted spread along one direction: the cluster a bisecting k-means would
cut first) is replaced by two halves with half its weight each, means ``μ ± a √λ v`` and
covariance ``Q_k / N_k − a² λ v vᵀ`` (plus ``reg_covar``), where ``λ, v`` are the leading
eigenpair of ``Q_k / N_k`` and ``a = √(2/π)``: these are the mean and the variance along
``v`` of each half of a Gaussian cut through its mean. Tied structures keep their shared
covariance; diagonal and spherical ones keep the diagonal or the mean variance of it.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ._checks import check_random_state
from .chunks import summarize, weighted_sample
from .covariance import full_covariances, precision_cholesky
from .estep import block_rows, estep
from .exceptions import ConvergenceWarning
from .missing import FilledSource, estep_missing
from .model import GaussianMixture
from .mstep import Params
from .sources import as_source
from .stats import FeatureMap

#: Options of :class:`GaussianMixture` that :func:`select_model` passes on to every fit.
FIT_OPTIONS = ("tol", "reg_covar", "max_iter", "n_init", "init", "prior", "chunk_mib", "dtype")

#: Mean and variance along the cut axis of each half of a Gaussian cut through its mean,
#: in units of the standard deviation and of the variance.
_HALF_OFFSET = np.sqrt(2.0 / np.pi)


def check_fit_options(options):
    """The options passed on to every fit, checked against FIT_OPTIONS."""
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise ValueError(
            f"select_model does not take {', '.join(unknown)}; the options passed on to each "
            f"fit are {', '.join(FIT_OPTIONS)}."
        )
    return dict(options)


def _component_scatter(model, source):
    """N_k (K,) and the responsibility-weighted scatter Q_k (K, D, D) about each mean,
    from one E-step pass with the model's densities written as full covariances."""
    K, D = model.means_.shape
    full = full_covariances(model.covariance_type, model.covariances_, K, D)
    params = Params(model.weights_, model.means_, full, precision_cholesky("full", full))
    dtype = np.dtype(model.dtype)
    rows = block_rows(K, FeatureMap("full", D), dtype, model.chunk_mib)
    # Rows may hold NaN (missing values); a source that reduces elsewhere (Dask) keeps its
    # own pass, which takes complete rows only.
    distributed = getattr(source, "accumulate", None) is not None
    e_step = estep if distributed else estep_missing
    stats = e_step(params, "full", source, model.weights_ @ model.means_, dtype, rows)
    if not np.isfinite(stats.qk).all():
        raise ValueError(
            "the data hold NaN, which a distributed (Dask) pass cannot marginalise; fill them "
            "or pass the data as a local array or chunk source."
        )
    return stats.nk, 0.5 * (stats.qk + stats.qk.transpose(0, 2, 1))


def _leading(S):
    lam, vec = np.linalg.eigh(S)
    return max(float(lam[-1]), 0.0), vec[:, -1]


@dataclass
class _Components:
    """Per-component lists that splitting edits: weights, means, covariances (full
    matrices), and the data's scatter under the responsibilities (total ``n``, normalised
    ``scatter``, weighted leading eigenvalue ``spread``)."""

    weights: list
    means: list
    covs: list
    n: list
    scatter: list
    spread: list

    def copy(self):
        return _Components(
            *(
                list(getattr(self, f))
                for f in ("weights", "means", "covs", "n", "scatter", "spread")
            )
        )

    def split(self, j, reg):
        """Replace component j by its two halves along its leading axis."""
        lam, v = _leading(self.scatter[j])
        step = _HALF_OFFSET * np.sqrt(lam) * v
        half = self.scatter[j] - (_HALF_OFFSET**2) * lam * np.outer(v, v)
        half = 0.5 * (half + half.T)
        m, w, n = self.means[j], 0.5 * self.weights[j], 0.5 * self.n[j]
        self.weights[j : j + 1] = [w, w]
        self.means[j : j + 1] = [m - step, m + step]
        self.covs[j : j + 1] = [half + reg, half + reg]
        self.n[j : j + 1] = [n, n]
        self.scatter[j : j + 1] = [half, half]
        self.spread[j : j + 1] = [n * _leading(half)[0]] * 2

    def init(self, ctype, reg):
        """``weights_init``, ``means_init``, ``precisions_init`` for ``ctype``."""
        weights = np.array(self.weights)
        covs = np.array(self.covs)
        if ctype in ("tied", "tied_diag"):
            # The M-step's shared covariance of the split components: the pooled scatter.
            n = np.array(self.n)
            pooled = np.einsum("k,kij->ij", n, np.array(self.scatter)) / max(n.sum(), 1e-300)
            pooled = pooled + reg
            P = np.linalg.inv(pooled) if ctype == "tied" else 1.0 / np.diag(pooled)
        elif ctype == "full":
            P = np.linalg.inv(covs)
        else:
            var = np.diagonal(covs, axis1=1, axis2=2)
            P = 1.0 / (var if ctype == "diag" else var.mean(axis=1))
        if ctype in ("full", "tied"):
            P = 0.5 * (P + np.swapaxes(P, -1, -2))
        return {
            "weights_init": weights / weights.sum(),
            "means_init": np.array(self.means),
            "precisions_init": P,
        }


def _components(model, X, sample_weight):
    K, D = model.means_.shape
    nk, Q = _component_scatter(model, as_source(X, sample_weight))
    scatter = [Q[k] / nk[k] if nk[k] > 0 else np.zeros((D, D)) for k in range(K)]
    return _Components(
        list(model.weights_),
        list(model.means_),
        list(full_covariances(model.covariance_type, model.covariances_, K, D)),
        list(nk),
        scatter,
        [nk[k] * _leading(scatter[k])[0] for k in range(K)],
    )


def _check_n_new(n_new):
    if isinstance(n_new, bool) or not isinstance(n_new, int | np.integer) or n_new < 0:
        raise ValueError(f"n_new must be a whole number >= 0; got {n_new!r}.")
    return int(n_new)


def split_parameters(model, X, sample_weight=None, n_new=1, *, first=None):
    """First parameters of a mixture with ``n_new`` more components than ``model``.

    The most spread-out component is split in two, ``n_new`` times (see the module notes).

    Parameters
    ----------
    model : GaussianMixture
        A fitted model.
    X, sample_weight
        The data it was fitted on (array or chunk source, as for ``fit``).
    n_new : int
        Components to add.
    first : int, optional
        Split this component first (the rest by spread).

    Returns
    -------
    dict
        ``weights_init``, ``means_init`` and ``precisions_init`` for
        ``GaussianMixture(K + n_new, covariance_type=model.covariance_type, ...)``.
    """
    model._check_fitted()
    n_new = _check_n_new(n_new)
    comps = _components(model, X, sample_weight)
    return _split_init(comps, model, n_new, first)


def _split_init(comps, model, n_new, first=None):
    comps = comps.copy()
    reg = float(model.reg_covar) * np.eye(model.means_.shape[1])
    for i in range(n_new):
        comps.split(int(np.argmax(comps.spread)) if i or first is None else int(first), reg)
    return comps.init(model.covariance_type, reg)


def _options_of(model):
    return {
        "tol": model.tol,
        "reg_covar": model.reg_covar,
        "max_iter": model.max_iter,
        "init": model.init,
        "prior": model.prior,
        "chunk_mib": model.chunk_mib,
        "dtype": model.dtype,
    }


def trial_sample(X, sample_weight=None, *, size=10_000, random_state=None):
    """A weighted sample of about ``size`` distinct rows on which candidate starts are judged.

    Returns ``(Xs, ws, exact)``: the rows, their weights (summing to the data's total
    weight), and whether the sample is the data itself (when it has no more than ``size``
    rows of positive weight).
    """
    source = as_source(X, sample_weight)
    summary = summarize(source, allow_nan=True)
    if summary.has_missing:  # rows with nothing observed are not drawn (weight 0)
        source = FilledSource(source, None)
    Xs, ws = weighted_sample(source, summary, int(size), check_random_state(random_state))
    return Xs, ws, summary.n_positive <= size


def grow_mixture(
    model,
    X,
    sample_weight=None,
    *,
    n_components,
    n_candidates=6,
    trial_iter=5,
    trial_data=None,
    random_state=None,
    callback=None,
    **options,
):
    """Fit a mixture with more components, starting from a fitted smaller one.

    Each of the ``n_candidates`` most spread-out components of ``model`` is tried as the
    first one to split (further splits, when more than one component is added, go to the
    most spread-out component). Every candidate runs ``trial_iter`` EM iterations on a
    weighted sample of the data (:func:`trial_sample`), and EM continues on all the data,
    to convergence, from the candidate with the best objective. With ``n_init`` > 1 the
    other initialisations are ordinary (cold) ones, and the best fit is kept.

    Parameters
    ----------
    model : GaussianMixture
        A fitted model with fewer than ``n_components`` components.
    X, sample_weight
        The data, as for :meth:`GaussianMixture.fit`.
    n_components : int
        K of the new model.
    n_candidates : int, default 6
        Components tried as the first to split; 1 skips the trials.
    trial_iter : int, default 5
        EM iterations that judge each candidate.
    trial_data : tuple, optional
        ``trial_sample(X, sample_weight)``, to share one sample between many calls.
    random_state : None, int or numpy.random.Generator
    callback : callable, optional
        ``callback(iteration, objective)`` after every EM iteration on all the data.
    **options
        Options of :class:`GaussianMixture` (``tol``, ``max_iter``, ...); by default those
        of ``model``.

    Returns
    -------
    GaussianMixture
        Fitted, with ``n_components`` components and ``model``'s covariance type.
    """
    model._check_fitted()
    K = model.n_components
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise ValueError(f"n_components must be a whole number; got {n_components!r}.")
    if n_components <= K:
        raise ValueError(
            f"n_components must be larger than the model's {K} components; got {n_components}."
        )
    for name, value in (("n_candidates", n_candidates), ("trial_iter", trial_iter)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1; got {value!r}.")
    opts = {**_options_of(model), **check_fit_options(options)}
    n_init = int(opts.pop("n_init", 1))
    max_iter = int(opts.pop("max_iter"))
    rng = check_random_state(random_state)
    n_components = int(n_components)

    def new(iterations, init, cb=None, n=1):
        return GaussianMixture(
            n_components,
            covariance_type=model.covariance_type,
            max_iter=iterations,
            n_init=n,
            random_state=rng,
            callback=cb,
            **opts,
            **init,
        )

    comps = _components(model, X, sample_weight)
    order = np.argsort(-np.array(comps.spread), kind="stable")[: int(n_candidates)]
    inits = [_split_init(comps, model, n_components - K, first=j) for j in order]
    if len(inits) == 1:
        warm = new(max_iter, inits[0], callback).fit(X, sample_weight)
    else:
        Xt, wt, exact = (
            trial_data
            if trial_data is not None
            else trial_sample(X, sample_weight, random_state=rng)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            trials = [new(min(trial_iter, max_iter), init).fit(Xt, wt) for init in inits]
        warm = max(trials, key=lambda m: m.lower_bound_)
        if not (exact and (warm.converged_ or max_iter <= trial_iter)):
            cont = {
                "weights_init": warm.weights_,
                "means_init": warm.means_,
                "precisions_init": _symmetric(warm.precisions_, warm.covariance_type),
            }
            warm = new(max_iter, cont, callback).fit(X, sample_weight)
        else:  # the sample is the data: the winning trial is the fit
            if callback is not None:
                for iteration, value in enumerate(warm.history_, 1):
                    callback(iteration, float(value))
            if not warm.converged_:
                warnings.warn(
                    f"EM did not converge in max_iter={max_iter} iterations; raise max_iter "
                    "or tol.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
    if n_init > 1:
        cold = new(max_iter, {}, callback, n_init - 1).fit(X, sample_weight)
        if cold.lower_bound_ > warm.lower_bound_:
            return cold
    return warm


def _symmetric(P, ctype):
    return 0.5 * (P + np.swapaxes(P, -1, -2)) if ctype in ("full", "tied") else P
