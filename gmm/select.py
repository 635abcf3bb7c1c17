"""Choice of the number of components K (and of the covariance structure) by an information
criterion: BIC, AIC or ICL, lower is better.

:func:`select_model` fits every K of a range for each covariance type and keeps the model
with the lowest criterion. Work is reused along each covariance type's range: the K values
are fitted in increasing order, and every model after the first starts from the previous
one with its most spread-out components split in two (:func:`grow_mixture`), so EM begins
close to an optimum instead of from a fresh k-means. The data (for images, the distinct
colours weighted by their pixel counts) are given once and passed to every fit as they are.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._checks import COVARIANCE_TYPES, check_choice, check_random_state
from .chunks import summarize
from .exceptions import FewDistinctPointsWarning
from .grow import check_fit_options, grow_mixture, trial_sample
from .model import GaussianMixture
from .sources import as_source

CRITERIA = ("bic", "aic", "icl")


# =========================================================================================
# Results
# =========================================================================================


@dataclass
class Selection:
    """What :func:`select_model` fitted and which model it chose.

    Attributes
    ----------
    best : GaussianMixture
        The fitted model with the lowest criterion.
    criterion : str
        ``"bic"``, ``"aic"`` or ``"icl"``.
    chosen : tuple (int, str)
        ``(k, covariance_type)`` of ``best``.
    table : list of dict
        One row per fitted model, in fitting order: ``k``, ``covariance_type``, ``bic``,
        ``aic``, ``icl``, ``loglik`` (Σ w log p(x)), ``n_parameters``, ``n_iter``,
        ``converged``, ``n_resets``, ``warm_start`` (whether it started from the previous K).
    models : dict
        ``{(k, covariance_type): GaussianMixture}`` for every row of ``table``.
    """

    best: GaussianMixture
    criterion: str
    chosen: tuple
    table: list = field(default_factory=list)
    models: dict = field(default_factory=dict, repr=False)

    def values(self, criterion=None):
        """The criterion per K for each covariance type, as ``plot_criterion`` takes them.

        Parameters
        ----------
        criterion : {"bic", "aic", "icl"}, optional
            Default: the criterion the selection used.

        Returns
        -------
        ks : ndarray of int (n_k,)
            Every K fitted, increasing.
        values : dict of str to ndarray (n_k,)
            Per covariance type (in the order given), the criterion at each K; NaN where
            that K was not fitted for that type.
        """
        name = check_choice(
            "criterion", self.criterion if criterion is None else criterion, CRITERIA
        )
        ks = np.array(sorted({row["k"] for row in self.table}), dtype=int)
        position = {int(k): i for i, k in enumerate(ks)}
        out = {}
        for row in self.table:
            series = out.setdefault(row["covariance_type"], np.full(ks.size, np.nan))
            series[position[row["k"]]] = row[name]
        return ks, out

    def to_dict(self):
        """The choice and the table as plain JSON-able values (for a model file)."""
        return {
            "criterion": self.criterion,
            "chosen": {"k": int(self.chosen[0]), "covariance_type": self.chosen[1]},
            "table": [dict(row) for row in self.table],
        }


# =========================================================================================
# Validation
# =========================================================================================


def _check_ks(n_components):
    try:
        ks = list(n_components)
    except TypeError:
        ks = [n_components]
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1]
    if not ks or bad:
        raise ValueError(
            "n_components must be a non-empty sequence of whole numbers >= 1, e.g. "
            f"range(2, 17); got {n_components!r}."
        )
    if len(set(ks)) != len(ks):
        raise ValueError(f"n_components lists a number twice: {ks}.")
    return sorted(int(k) for k in ks)


def _check_types(covariance_types):
    types = [covariance_types] if isinstance(covariance_types, str) else list(covariance_types)
    if not types:
        raise ValueError(f"covariance_types is empty; use some of {', '.join(COVARIANCE_TYPES)}.")
    for t in types:
        check_choice("covariance_types", t, COVARIANCE_TYPES)
    if len(set(types)) != len(types):
        raise ValueError(f"covariance_types lists a type twice: {types}.")
    return types


# =========================================================================================
# Criteria and selection
# =========================================================================================


def criteria(model, X, sample_weight=None):
    """BIC, AIC, ICL and Σ w log p(x) of a fitted model on data, from one pass.

    The same values as ``model.bic``, ``model.aic`` and ``model.icl``; N in BIC is the
    total weight (the number of pixels when the rows are distinct colours with counts).
    """
    loglik, weight, entropy = model._loglik(X, sample_weight)
    p = model.n_parameters()
    bic = -2.0 * loglik + p * np.log(weight)
    return {
        "bic": float(bic),
        "aic": float(-2.0 * loglik + 2.0 * p),
        "icl": float(bic + 2.0 * entropy),
        "loglik": float(loglik),
        "n_parameters": int(p),
    }


def select_model(
    X,
    sample_weight=None,
    *,
    n_components=range(2, 17),
    covariance_types=("full",),
    criterion="bic",
    warm_start=True,
    random_state=None,
    callback=None,
    **options,
):
    """Fit a range of K (and covariance types) and choose the model by an information
    criterion.

    Parameters
    ----------
    X : array-like (N, D), numpy.memmap, or chunk source
        The data, as for :meth:`GaussianMixture.fit`.
    sample_weight : array-like (N,), optional
        Non-negative weights (pixel counts of distinct colours).
    n_components : sequence of int, default range(2, 17)
        The K to try; fitted in increasing order. K above the number of rows with positive
        weight are left out (with a :class:`FewDistinctPointsWarning`).
    covariance_types : sequence of str, default ("full",)
        Covariance structures to try, each over the whole range of K.
    criterion : {"bic", "aic", "icl"}, default "bic"
        What to minimise. All three are computed for every model (in ``table``); ties go
        to the smaller K, then to the earlier covariance type.
    warm_start : bool, default True
        Start each K (after a type's first) from the previous model with components split
        (see :func:`grow_mixture`); False fits every K from its own initialisation.
    random_state : None, int or numpy.random.Generator
        One generator drives every fit, so an int gives the same selection every run.
    callback : callable, optional
        ``callback(k, covariance_type, iteration, objective)`` after every EM iteration.
    **options
        Passed on to every :class:`GaussianMixture`: ``tol``, ``reg_covar``, ``max_iter``,
        ``n_init``, ``init``, ``prior``, ``chunk_mib``, ``dtype``.

    Returns
    -------
    Selection
        ``best``, ``chosen`` (k, covariance_type), ``table``, ``models``; ``values()`` gives
        the criterion per K and type for plotting.

    Raises
    ------
    ValueError
        For invalid options or data (as :meth:`GaussianMixture.fit`), or when no K of the
        range can be fitted.
    """
    ks = _check_ks(n_components)
    types = _check_types(covariance_types)
    criterion = check_choice("criterion", criterion, CRITERIA)
    opts = check_fit_options(options)
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(k, covariance_type, it, value).")
    rng = check_random_state(random_state)
    summary = summarize(as_source(X, sample_weight), allow_nan=True)
    usable = [k for k in ks if k <= summary.n_positive]
    if len(usable) < len(ks):
        if not usable:
            raise ValueError(
                f"the data hold only {summary.n_positive} row(s) with positive weight, fewer "
                f"than the smallest K tried ({ks[0]}); try fewer components."
            )
        warnings.warn(
            f"the data hold only {summary.n_positive} rows with positive weight: K above that "
            f"({', '.join(str(k) for k in ks if k not in usable)}) left out.",
            FewDistinctPointsWarning,
            stacklevel=2,
        )
    trial_data = trial_sample(X, sample_weight, random_state=rng) if warm_start else None
    table, models = [], {}
    for ctype in types:
        previous = None
        for k in usable:
            cb = None if callback is None else _bind(callback, k, ctype)
            if previous is not None and warm_start:
                model = grow_mixture(
                    previous,
                    X,
                    sample_weight,
                    n_components=k,
                    trial_data=trial_data,
                    random_state=rng,
                    callback=cb,
                    **opts,
                )
            else:
                model = GaussianMixture(
                    k, covariance_type=ctype, random_state=rng, callback=cb, **opts
                ).fit(X, sample_weight)
            row = {"k": k, "covariance_type": ctype, **criteria(model, X, sample_weight)}
            row.update(
                n_iter=int(model.n_iter_),
                converged=bool(model.converged_),
                n_resets=int(model.n_resets_),
                warm_start=previous is not None and bool(warm_start),
            )
            table.append(row)
            models[(k, ctype)] = model
            previous = model
    best = min(range(len(table)), key=lambda i: (table[i][criterion], table[i]["k"], i))
    chosen = (table[best]["k"], table[best]["covariance_type"])
    return Selection(models[chosen], criterion, chosen, table, models)


def _bind(callback, k, ctype):
    def on_iteration(iteration, objective):
        callback(k, ctype, iteration, objective)

    return on_iteration
