"""Conjugate priors for MAP estimation (Fraley & Raftery 2007).

The prior on component k is a normal on its mean given its covariance, with ``shrinkage`` κ
pseudo-observations at ``mean``, and an inverse-Wishart (full, tied) or inverse-gamma per
variance (diag, tied_diag, spherical) with ``dof`` ν and ``scale`` Λ. The weights get none
(uniform). With ``prior="default"`` the hyperparameters come from the data as in mclust's
``defaultPrior``: the data mean, κ = 0.01, ν = D + 2, and Λ = cov(X) / K^(2/D) (its diagonal,
or its mean variance, for the diagonal and spherical structures).
"""

from dataclasses import dataclass

import numpy as np

from ._checks import check_real

PRIOR_KEYS = ("mean", "shrinkage", "dof", "scale")


@dataclass(frozen=True)
class Prior:
    mean: np.ndarray
    shrinkage: float
    dof: float
    scale: np.ndarray | float

    def to_dict(self):
        return {
            "mean": self.mean.tolist(),
            "shrinkage": self.shrinkage,
            "dof": self.dof,
            "scale": np.asarray(self.scale).tolist(),
        }


def _default_scale(covariance_type, data_cov, K):
    D = data_cov.shape[0]
    factor = K ** (2.0 / D)
    if covariance_type in ("full", "tied"):
        return data_cov / factor
    if covariance_type in ("diag", "tied_diag"):
        return np.diag(data_cov) / factor
    return float(np.trace(data_cov) / D / factor)


def resolve_prior(prior, covariance_type, K, data_mean, data_cov):
    """Turn the user's ``prior`` argument into a :class:`Prior`, or None.

    Parameters
    ----------
    prior : None, "default" or dict
        A dict may set any of ``mean`` (D,), ``shrinkage`` (> 0), ``dof`` and ``scale`` (a
        (D, D) matrix for full and tied, a (D,) vector or a scalar for diag and tied_diag, a
        scalar for spherical); the keys it omits take their default values.
    """
    if prior is None:
        return None
    D = data_mean.shape[0]
    if isinstance(prior, str):
        if prior != "default":
            raise ValueError(f"prior must be None, 'default' or a dict; got {prior!r}.")
        prior = {}
    if not isinstance(prior, dict):
        raise ValueError(f"prior must be None, 'default' or a dict; got {type(prior).__name__}.")
    unknown = set(prior) - set(PRIOR_KEYS)
    if unknown:
        raise ValueError(
            f"unknown prior key(s) {sorted(unknown)}; the keys are {', '.join(PRIOR_KEYS)}."
        )
    mean = np.asarray(prior.get("mean", data_mean), dtype=np.float64)
    if mean.shape != (D,) or not np.isfinite(mean).all():
        raise ValueError(f"prior['mean'] must be {D} finite numbers; got shape {mean.shape}.")
    shrinkage = check_real("prior['shrinkage']", prior.get("shrinkage", 0.01), 0.0, strict=True)
    min_dof = D - 1 if covariance_type in ("full", "tied") else 0.0
    dof = prior.get("dof", D + 2.0)
    dof = check_real("prior['dof']", dof, min_dof, strict=True)
    if "scale" in prior:
        scale = _check_scale(prior["scale"], covariance_type, D)
    else:
        scale = _default_scale(covariance_type, data_cov, K)
    return Prior(mean, shrinkage, dof, scale)


def _check_scale(scale, covariance_type, D):
    scale = np.asarray(scale, dtype=np.float64)
    if not np.isfinite(scale).all():
        raise ValueError("prior['scale'] must be finite.")
    if covariance_type in ("full", "tied"):
        if scale.ndim == 0:
            scale = scale * np.eye(D)
        if scale.shape != (D, D) or not np.allclose(scale, scale.T):
            raise ValueError(f"prior['scale'] must be a symmetric ({D}, {D}) matrix.")
        if np.linalg.eigvalsh(scale).min() <= 0:
            raise ValueError("prior['scale'] must be positive definite.")
        return scale
    if covariance_type in ("diag", "tied_diag"):
        scale = np.broadcast_to(scale, (D,)).copy() if scale.ndim == 0 else scale
        if scale.shape != (D,) or (scale <= 0).any():
            raise ValueError(f"prior['scale'] must be a positive scalar or {D} positive numbers.")
        return scale
    if scale.ndim != 0 or scale <= 0:
        raise ValueError("prior['scale'] must be a positive scalar for spherical covariances.")
    return float(scale)
