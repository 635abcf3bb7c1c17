"""Checks of :class:`gmm.GaussianMixture`'s fit inputs that need the covariance algebra: the
user-given first parameters, and the fallback covariance that a collapsed component restarts
with."""

import numpy as np

from . import covariance as cov
from .em import UserInit


def check_user_init(K, D, ctype, weights_init, means_init, precisions_init):
    """The user-given first parameters (scikit-learn's shapes) checked, as a UserInit."""
    weights = means = prec_chol = covariances = None
    if weights_init is not None:
        weights = np.array(weights_init, dtype=np.float64)
        if weights.shape != (K,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"weights_init must be {K} non-negative numbers.")
        if not np.isclose(weights.sum(), 1.0, atol=1e-6):
            raise ValueError(f"weights_init must sum to 1; they sum to {weights.sum():.6g}.")
        weights /= weights.sum()
    if means_init is not None:
        means = np.array(means_init, dtype=np.float64)
        if means.shape != (K, D) or not np.isfinite(means).all():
            raise ValueError(f"means_init must be a finite array of shape ({K}, {D}).")
    if precisions_init is not None:
        P = np.array(precisions_init, dtype=np.float64)
        shape = cov.expected_shape(ctype, K, D)
        if P.shape != shape or not np.isfinite(P).all():
            raise ValueError(
                f"precisions_init for covariance_type={ctype!r} must be a finite array "
                f"of shape {shape}; got {P.shape}."
            )
        if ctype in ("full", "tied") and not np.allclose(P, np.swapaxes(P, -1, -2)):
            raise ValueError("precisions_init must be symmetric (and positive definite).")
        try:
            if ctype not in ("full", "tied") and (P <= 0).any():
                raise ValueError  # checked before the square root, which would warn
            prec_chol = cov.precision_cholesky_from_precisions(ctype, P)
        except Exception:
            prec_chol = None
        if prec_chol is None or not np.isfinite(prec_chol).all():
            raise ValueError("precisions_init must be positive definite.")
        covariances = cov.covariances_from_precision_cholesky(ctype, prec_chol)
    return UserInit(weights, means, prec_chol, covariances)


def check_fallback_covariance(ctype, reg_covar, summary):
    """A collapsed component restarts with the data's covariance + reg_covar (in the
    covariance type's layout), so that must be positive definite in floating point."""
    D = summary.n_features
    C = summary.covariance + float(reg_covar) * np.eye(D)
    try:
        cov.precision_cholesky(ctype, cov.from_full_covariance(ctype, C, 1))
    except cov.SingularCovarianceError:
        variance = float(np.trace(summary.covariance)) / D
        raise ValueError(
            f"the data's covariance plus reg_covar={reg_covar:g} is singular at the "
            "data's scale (a constant or collinear column, or fewer distinct rows than "
            "features); set reg_covar to about 1e-6 times the data's variance "
            f"({variance:.3g}), or rescale the data."
        ) from None
