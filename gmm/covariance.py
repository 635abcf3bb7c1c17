"""One small function per covariance structure, behind dicts keyed by covariance type.

Shapes of the per-type parameters (K components, D features):

=============  ======================  ===========================
type           covariances_            precisions_cholesky_
=============  ======================  ===========================
full           (K, D, D)               (K, D, D), P_k = U_k U_kᵀ
tied           (D, D)                  (D, D)
diag           (K, D)                  (K, D), 1 / sqrt(variances)
tied_diag      (D,)                    (D,)
spherical      (K,)                    (K,)
=============  ======================  ===========================

Second-moment statistics come in three *kinds*, the least each structure needs: ``full``
(K, D, D) scatter matrices for full and tied, ``diag`` (K, D) for diag and tied_diag,
``trace`` (K,) for spherical.
"""

import numpy as np
from scipy import linalg

STATS_KIND = {
    "full": "full",
    "tied": "full",
    "diag": "diag",
    "tied_diag": "diag",
    "spherical": "trace",
}


# --------------------------------------------------------------------------------------
# Parameter counts (for BIC / AIC)


def n_covariance_parameters(covariance_type, K, D):
    return {
        "full": K * D * (D + 1) // 2,
        "tied": D * (D + 1) // 2,
        "diag": K * D,
        "tied_diag": D,
        "spherical": K,
    }[covariance_type]


def n_parameters(covariance_type, K, D):
    """Free parameters of a K-component mixture: weights, means and covariances."""
    return (K - 1) + K * D + n_covariance_parameters(covariance_type, K, D)


# --------------------------------------------------------------------------------------
# Covariances -> Cholesky factors of the precisions


class SingularCovarianceError(ValueError):
    """A covariance matrix is not positive definite; ``components`` says which."""

    def __init__(self, components):
        super().__init__(f"covariance of component(s) {list(components)} is not positive definite")
        self.components = list(components)


def _chol_precision_matrices(covariances):
    """U_k = inv(chol(Σ_k))ᵀ for a stack (K, D, D); raises LinAlgError if one is not PD.

    numpy's batched LAPACK calls, not one scipy call per component: for these tiny matrices
    a multi-threaded BLAS spends milliseconds per call synchronising its threads.
    """
    chol = np.linalg.cholesky(covariances)
    eye = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    return np.linalg.solve(chol, eye).transpose(0, 2, 1)


def _precision_cholesky_full(covariances):
    try:
        out = _chol_precision_matrices(covariances)
    except np.linalg.LinAlgError:
        out = None
    if out is not None and np.isfinite(out).all():
        return out
    bad = []
    for k in range(covariances.shape[0]):
        try:
            if not np.isfinite(_chol_precision_matrices(covariances[k : k + 1])).all():
                bad.append(k)
        except np.linalg.LinAlgError:
            bad.append(k)
    raise SingularCovarianceError(bad or list(range(covariances.shape[0])))


def _precision_cholesky_tied(covariance):
    try:
        out = _chol_precision_matrices(covariance[None])[0]
    except np.linalg.LinAlgError:
        out = None
    if out is None or not np.isfinite(out).all():
        raise SingularCovarianceError(["tied"])
    return out


def _precision_cholesky_variances(variances):
    bad = np.flatnonzero(~(np.asarray(variances) > 0).reshape(np.shape(variances)[0], -1).all(1))
    if bad.size:
        raise SingularCovarianceError(bad.tolist())
    return 1.0 / np.sqrt(variances)


def _precision_cholesky_tied_diag(variances):
    if not (variances > 0).all():
        raise SingularCovarianceError(["tied"])
    return 1.0 / np.sqrt(variances)


PRECISION_CHOLESKY = {
    "full": _precision_cholesky_full,
    "tied": _precision_cholesky_tied,
    "diag": _precision_cholesky_variances,
    "tied_diag": _precision_cholesky_tied_diag,
    "spherical": _precision_cholesky_variances,
}


def precision_cholesky(covariance_type, covariances):
    """Cholesky factor U of each precision (P = U Uᵀ); raises SingularCovarianceError."""
    return PRECISION_CHOLESKY[covariance_type](np.asarray(covariances, dtype=np.float64))


def covariances_from_precision_cholesky(covariance_type, prec_chol):
    """Inverse of :func:`precision_cholesky`."""
    if covariance_type == "full":
        return np.array([np.linalg.inv(U @ U.T) for U in prec_chol])
    if covariance_type == "tied":
        return np.linalg.inv(prec_chol @ prec_chol.T)
    return 1.0 / prec_chol**2


def precision_cholesky_from_precisions(covariance_type, precisions):
    """Cholesky factors from user-given precisions (``precisions_init``)."""
    P = np.asarray(precisions, dtype=np.float64)
    if covariance_type == "full":
        return np.array([linalg.cholesky(p, lower=True) for p in P])
    if covariance_type == "tied":
        return linalg.cholesky(P, lower=True)
    return np.sqrt(P)


# --------------------------------------------------------------------------------------
# Per-component precisions for the E-step: P (K, D, D) or p (K, D) / (K,), and log|U|


def precisions_and_logdet(covariance_type, prec_chol, K, D):
    """Precisions in the layout of the type's statistics kind, and Σ log diag(U) per component."""
    U = np.asarray(prec_chol, dtype=np.float64)
    if covariance_type == "full":
        P = U @ U.transpose(0, 2, 1)
        logdet = np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
    elif covariance_type == "tied":
        P = np.broadcast_to(U @ U.T, (K, D, D))
        logdet = np.full(K, np.log(np.diag(U)).sum())
    elif covariance_type == "diag":
        P = U**2
        logdet = np.log(U).sum(axis=1)
    elif covariance_type == "tied_diag":
        P = np.broadcast_to(U**2, (K, D))
        logdet = np.full(K, np.log(U).sum())
    else:  # spherical
        P = U**2
        logdet = D * np.log(U)
    return P, logdet


def full_covariances(covariance_type, covariances, K, D):
    """Covariances of every component as (K, D, D) matrices, whatever the type."""
    C = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return C.copy()
    if covariance_type == "tied":
        return np.broadcast_to(C, (K, D, D)).copy()
    if covariance_type == "diag":
        return np.array([np.diag(c) for c in C])
    if covariance_type == "tied_diag":
        return np.broadcast_to(np.diag(C), (K, D, D)).copy()
    return C[:, None, None] * np.eye(D)


def from_full_covariance(covariance_type, cov, K):
    """One (D, D) covariance in the layout of ``covariance_type`` for K components."""
    D = cov.shape[0]
    if covariance_type == "full":
        return np.broadcast_to(cov, (K, D, D)).copy()
    if covariance_type == "tied":
        return cov.copy()
    if covariance_type == "diag":
        return np.broadcast_to(np.diag(cov), (K, D)).copy()
    if covariance_type == "tied_diag":
        return np.diag(cov).copy()
    return np.full(K, np.trace(cov) / D)


def expected_shape(covariance_type, K, D):
    return {
        "full": (K, D, D),
        "tied": (D, D),
        "diag": (K, D),
        "tied_diag": (D,),
        "spherical": (K,),
    }[covariance_type]


# --------------------------------------------------------------------------------------
# M-step: covariances from the scatter about the new means
#
# ``scatter`` is W_k = Σ w r (x - x̄_k)(x - x̄_k)ᵀ in the type's statistics kind; ``nk`` the
# component weights; ``dev`` is x̄_k - μ_prior (None without a prior), ``prior`` the resolved
# hyperparameters. The MAP formulas are those of Fraley & Raftery (2007), derived from a
# normal-inverse-Wishart (or normal-inverse-gamma) prior with shrinkage κ, degrees of freedom
# ν and scale Λ; ``reg`` is added to the diagonal afterwards, as in scikit-learn.


def _shrunk(nk, prior):
    """κ N_k / (κ + N_k): weight of the mean's deviation from the prior mean."""
    return prior.shrinkage * nk / (prior.shrinkage + nk)


def _covariance_full(nk, scatter, dev, reg, prior):
    D = scatter.shape[1]
    if prior is None:
        cov = scatter / nk[:, None, None]
    else:
        B = (
            prior.scale
            + scatter
            + _shrunk(nk, prior)[:, None, None] * (dev[:, :, None] * dev[:, None, :])
        )
        cov = B / (nk + prior.dof + D + 2)[:, None, None]
    cov = 0.5 * (cov + cov.transpose(0, 2, 1))
    cov[:, np.arange(D), np.arange(D)] += reg
    return cov


def _covariance_tied(nk, scatter, dev, reg, prior):
    D = scatter.shape[1]
    K = nk.shape[0]
    if prior is None:
        cov = scatter.sum(axis=0) / nk.sum()
    else:
        B = (
            prior.scale
            + scatter.sum(axis=0)
            + np.einsum("k,ki,kj->ij", _shrunk(nk, prior), dev, dev)
        )
        cov = B / (nk.sum() + K + prior.dof + D + 1)
    cov = 0.5 * (cov + cov.T)
    cov[np.arange(D), np.arange(D)] += reg
    return cov


def _covariance_diag(nk, scatter, dev, reg, prior):
    scatter = np.maximum(scatter, 0.0)
    if prior is None:
        var = scatter / nk[:, None]
    else:
        var = (prior.scale + scatter + _shrunk(nk, prior)[:, None] * dev**2) / (nk + prior.dof + 3)[
            :, None
        ]
    return var + reg


def _covariance_tied_diag(nk, scatter, dev, reg, prior):
    scatter = np.maximum(scatter, 0.0)
    K = nk.shape[0]
    if prior is None:
        var = scatter.sum(axis=0) / nk.sum()
    else:
        var = (
            prior.scale + scatter.sum(axis=0) + (_shrunk(nk, prior)[:, None] * dev**2).sum(0)
        ) / (nk.sum() + K + prior.dof + 2)
    return var + reg


def _covariance_spherical(nk, scatter, dev, reg, prior, D):
    scatter = np.maximum(scatter, 0.0)
    if prior is None:
        var = scatter / (D * nk)
    else:
        var = (prior.scale + scatter + _shrunk(nk, prior) * (dev**2).sum(axis=1)) / (
            D * (nk + 1) + prior.dof + 2
        )
    return var + reg


COVARIANCE_ESTIMATORS = {
    "full": _covariance_full,
    "tied": _covariance_tied,
    "diag": _covariance_diag,
    "tied_diag": _covariance_tied_diag,
    "spherical": _covariance_spherical,
}


def estimate_covariances(covariance_type, nk, scatter, dev, reg, prior, D):
    if covariance_type == "spherical":
        return _covariance_spherical(nk, scatter, dev, reg, prior, D)
    return COVARIANCE_ESTIMATORS[covariance_type](nk, scatter, dev, reg, prior)


# --------------------------------------------------------------------------------------
# Log prior density of the parameters (up to a constant that does not depend on them)


def _log_prior_full(means, prec_chol, prior):
    D = means.shape[1]
    U = prec_chol
    logdet_prec = 2.0 * np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
    trace = np.einsum("kij,ij->k", U.transpose(0, 2, 1) @ prior.scale @ U, np.eye(D))
    z = np.einsum("kd,kde->ke", means - prior.mean, U)
    return float(
        (
            0.5 * (prior.dof + D + 2) * logdet_prec
            - 0.5 * trace
            - 0.5 * prior.shrinkage * (z**2).sum(1)
        ).sum()
    )


def _log_prior_tied(means, prec_chol, prior):
    K, D = means.shape
    U = prec_chol
    logdet_prec = 2.0 * np.log(np.diag(U)).sum()
    trace = np.trace(U.T @ prior.scale @ U)
    z = (means - prior.mean) @ U
    return float(
        0.5 * (K + prior.dof + D + 1) * logdet_prec
        - 0.5 * trace
        - 0.5 * prior.shrinkage * (z**2).sum()
    )


def _log_prior_diag(means, prec_chol, prior):
    p = prec_chol**2
    return float(
        (
            0.5 * (prior.dof + 3) * np.log(p)
            - 0.5 * p * (prior.scale + prior.shrinkage * (means - prior.mean) ** 2)
        ).sum()
    )


def _log_prior_tied_diag(means, prec_chol, prior):
    K = means.shape[0]
    p = prec_chol**2
    dev2 = ((means - prior.mean) ** 2).sum(axis=0)
    return float(
        (
            0.5 * (K + prior.dof + 2) * np.log(p) - 0.5 * p * (prior.scale + prior.shrinkage * dev2)
        ).sum()
    )


def _log_prior_spherical(means, prec_chol, prior):
    D = means.shape[1]
    p = prec_chol**2
    dev2 = ((means - prior.mean) ** 2).sum(axis=1)
    return float(
        (
            0.5 * (D + prior.dof + 2) * np.log(p) - 0.5 * p * (prior.scale + prior.shrinkage * dev2)
        ).sum()
    )


LOG_PRIOR = {
    "full": _log_prior_full,
    "tied": _log_prior_tied,
    "diag": _log_prior_diag,
    "tied_diag": _log_prior_tied_diag,
    "spherical": _log_prior_spherical,
}


def log_prior(covariance_type, means, prec_chol, prior):
    """log p(θ) of the means and precisions under the conjugate prior, up to a constant."""
    return LOG_PRIOR[covariance_type](means, np.asarray(prec_chol, dtype=np.float64), prior)
