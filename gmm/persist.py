"""Checking a model read back from :meth:`GaussianMixture.to_dict` output.

A model file may come from anywhere (an older version, a hand edit, a damaged disk, a
hostile sender), so :func:`check_model_dict` checks every field before the estimator uses
it: types, shapes, finiteness, magnitudes that the E-step can square without overflow,
weights that sum to one, covariances that are positive definite and precisions that are
their inverses. Each message names the field that is wrong.
"""

import numbers

import numpy as np

from . import covariance as cov
from .mstep import Params
from .prior import PRIOR_KEYS, Prior, resolve_prior

FORMAT = "gmm.GaussianMixture/1"

#: Largest magnitude of a mean or a standard deviation: squares and products of the
#: quadratic form must stay finite in float64 (1e308), with room to spare.
MAX_MAGNITUDE = 1e150
#: Tolerance of ``P Σ = I``: a fitted covariance has a condition number up to 1e12 or so,
#: which the round trip through decimal text and an inverse may amplify to about 1e-4.
INVERSE_TOLERANCE = 1e-2


class ModelFieldError(ValueError):
    """A field of a model dict is missing or wrong; the message names it."""


def field(data, name, where=""):
    if not isinstance(data, dict):
        raise ModelFieldError(f"{where or 'the model'} is not a JSON object")
    if name not in data:
        raise ModelFieldError(f"{where}{name} is missing")
    return data[name]


def int_field(data, name, minimum, where=""):
    value = field(data, name, where)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ModelFieldError(f"{where}{name} must be an integer; got {_short(value)}")
    if value < minimum:
        raise ModelFieldError(f"{where}{name} must be >= {minimum}; got {_short(value)}")
    return int(value)


def array_field(data, name, shape, where=""):
    """The field as a finite float64 array of exactly ``shape``."""
    value = field(data, name, where)
    try:
        a = np.array(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ModelFieldError(
            f"{where}{name} must be an array of numbers of shape {shape}"
        ) from None
    if a.shape != shape:
        raise ModelFieldError(
            f"{where}{name}: parameter shapes do not match n_components and n_features "
            f"(expected {shape}, got {a.shape})"
        )
    if not np.isfinite(a).all():
        raise ModelFieldError(f"{where}{name}: parameters must be finite (no NaN or infinity)")
    return a


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_params(data, covariance_type, K, D):
    """The validated :class:`Params` of a model dict."""
    weights = array_field(data, "weights", (K,))
    if (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-6):
        raise ModelFieldError("weights must be non-negative and sum to 1")
    means = array_field(data, "means", (K, D))
    if (np.abs(means) > MAX_MAGNITUDE).any():
        raise ModelFieldError(
            f"means: a value of magnitude {np.abs(means).max():.3g} is beyond "
            f"{MAX_MAGNITUDE:g}, where the log-densities cannot be computed"
        )
    shape = cov.expected_shape(covariance_type, K, D)
    covs = array_field(data, "covariances", shape)
    prec = array_field(data, "precisions_cholesky", shape)
    _check_covariances(covariance_type, covs, K, D)
    diag = prec if covariance_type not in ("full", "tied") else np.diagonal(prec, 0, -2, -1)
    if (diag <= 0).any():
        raise ModelFieldError("precisions_cholesky must have a positive diagonal")
    _check_inverse(covariance_type, covs, prec, K, D)
    return Params(weights, means, covs, prec)


def _check_covariances(covariance_type, covs, K, D):
    full = cov.full_covariances(covariance_type, covs, K, D)
    if covariance_type in ("full", "tied"):
        C = full if covariance_type == "full" else covs[None]
        asym = np.abs(C - np.swapaxes(C, -1, -2)).max(axis=(-2, -1))
        size = np.abs(C).max(axis=(-2, -1))
        if (asym > 1e-8 * size).any():
            raise ModelFieldError(f"covariances{_which(asym > 1e-8 * size)} is not symmetric")
    variances = np.diagonal(full, 0, -2, -1)
    too_big = (variances > MAX_MAGNITUDE**2).any(axis=-1)
    if too_big.any():
        raise ModelFieldError(
            f"covariances{_which(too_big)} has a variance beyond {MAX_MAGNITUDE**2:g}"
        )
    try:
        cov.precision_cholesky(covariance_type, covs)
    except cov.SingularCovarianceError as err:
        which = "" if err.components == ["tied"] else f"[{err.components[0]}]"
        raise ModelFieldError(f"covariances{which} is not positive definite") from None


def _check_inverse(covariance_type, covs, prec, K, D):
    """The precisions (U Uᵀ) must be the inverses of the covariances."""
    full = cov.full_covariances(covariance_type, covs, K, D)
    if covariance_type in ("full", "tied"):
        U = prec if covariance_type == "full" else np.broadcast_to(prec, (K, D, D))
        P = U @ np.swapaxes(U, -1, -2)
    else:
        P = cov.full_covariances(covariance_type, prec**2, K, D)
    err = np.abs(P @ full - np.eye(D)).max(axis=(-2, -1))
    bad = ~(err <= INVERSE_TOLERANCE)
    if bad.any():
        raise ModelFieldError(
            f"precisions_cholesky{_which(bad)} is not the inverse of covariances"
            f"{_which(bad)} (P Σ differs from the identity by {np.nanmax(err):.3g})"
        )


def _which(mask):
    mask = np.atleast_1d(mask)
    return f"[{int(np.flatnonzero(mask)[0])}]" if mask.size > 1 else ""


def check_history(data):
    """converged, n_iter, history, lower_bound, n_resets, reset_iterations (all optional)."""
    converged = data.get("converged", True)
    if not isinstance(converged, bool):
        raise ModelFieldError(f"converged must be true or false; got {_short(converged)}")
    n_iter = int_field(data, "n_iter", 0) if "n_iter" in data else 0
    n_resets = int_field(data, "n_resets", 0) if "n_resets" in data else 0
    history = _float_list(data.get("history", []), "history")
    lower_bound = data.get("lower_bound", None)
    lower_bound = np.nan if lower_bound is None else _float_list([lower_bound], "lower_bound")[0]
    resets = data.get("reset_iterations", [])
    if not isinstance(resets, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 10**9 for i in resets
    ):
        raise ModelFieldError("reset_iterations must be a list of iteration numbers")
    return converged, n_iter, history, float(lower_bound), n_resets, [int(i) for i in resets]


def _float_list(values, name):
    if not isinstance(values, list) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        raise ModelFieldError(f"{name} must be a list of numbers")
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        raise ModelFieldError(f"{name} holds a number too large for a float") from None


def model_to_dict(model):
    """A fitted :class:`gmm.GaussianMixture`'s parameters and options as plain JSON-able
    values (exact round trip through :func:`model_from_dict`)."""
    prior = model.prior_.to_dict() if isinstance(model.prior_, Prior) else None
    return {
        "format": FORMAT,
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "n_features": int(model.means_.shape[1]),
        "weights": model.weights_.tolist(),
        "means": model.means_.tolist(),
        "covariances": np.asarray(model.covariances_).tolist(),
        "precisions_cholesky": np.asarray(model.precisions_cholesky_).tolist(),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "lower_bound": float(model.lower_bound_),
        "history": [float(v) for v in model.history_],
        "n_resets": int(model.n_resets_),
        "reset_iterations": [int(i) for i in model.reset_iterations_],
        "options": {
            "tol": float(model.tol),
            "reg_covar": float(model.reg_covar),
            "max_iter": int(model.max_iter),
            "n_init": int(model.n_init),
            "init": model.init,
            "chunk_mib": float(model.chunk_mib),
            "dtype": np.dtype(model.dtype).name,
            "prior": prior,
            "missing": model.missing,
        },
    }


def model_from_dict(cls, data):
    """The fitted ``cls`` (a GaussianMixture) of a :meth:`to_dict` dict; ValueError naming
    the wrong field otherwise."""
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a {FORMAT} model (format={found!r})")
        opts = data.get("options", {})
        if not isinstance(opts, dict):
            raise ValueError("options is not a JSON object")
        model = cls(
            int_field(data, "n_components", 1),
            covariance_type=field(data, "covariance_type"),
            tol=opts.get("tol", 1e-3),
            reg_covar=opts.get("reg_covar", 1e-6),
            max_iter=opts.get("max_iter", 100),
            n_init=opts.get("n_init", 1),
            init=opts.get("init", "kmeans"),
            chunk_mib=opts.get("chunk_mib", 64),
            dtype=opts.get("dtype", "float32"),
            missing=opts.get("missing", "marginalize"),
        )
        model._check_options()
        K, D = model.n_components, int_field(data, "n_features", 1)
        if K * D > 10**7:
            raise ValueError(f"n_components × n_features = {K * D} is implausibly large")
        model._set_params(check_params(data, model.covariance_type, K, D))
        (
            model.converged_,
            model.n_iter_,
            model.history_,
            model.lower_bound_,
            model.n_resets_,
            model.reset_iterations_,
        ) = check_history(data)
        model.n_features_in_ = D
        p = opts.get("prior")
        model.prior_ = None
        if p is not None:
            if not isinstance(p, dict) or set(p) != set(PRIOR_KEYS):
                raise ValueError(f"options.prior must hold exactly {', '.join(PRIOR_KEYS)}")
            model.prior_ = resolve_prior(p, model.covariance_type, K, np.zeros(D), np.eye(D))
        model.prior = None if p is None else dict(p)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed model parameters: missing or invalid {err}") from None
    except (ValueError, np.linalg.LinAlgError) as err:
        raise ValueError(f"malformed model parameters: {err}") from None
    return model
