"""The M-step: parameters from sufficient statistics, and the detection of collapse."""

from dataclasses import dataclass

import numpy as np

from .covariance import (
    SingularCovarianceError,
    estimate_covariances,
    from_full_covariance,
    precision_cholesky,
)

#: A component whose covariance, in units of the data's spread, has a condition number above
#: this is treated as collapsed onto a lower-dimensional set.
CONDITION_LIMIT = 1e12

#: Rounding of the E-step's second moments, in units of the working dtype's epsilon times a
#: component's mean squared distance from the shift. On photos in float32 the scatter of a
#: cluster of identical pixels came out with negative eigenvalues down to 4.4 of these
#: units (astronaut, CIELAB); 32 leaves a margin of seven.
ROUNDING_UNITS = 32.0


@dataclass
class Params:
    """Mixture parameters in the layout of their covariance type (see covariance.py)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    def copy(self):
        return Params(
            *(
                np.array(a, copy=True)
                for a in (self.weights, self.means, self.covariances, self.precisions_cholesky)
            )
        )

    def subset(self, keep, covariance_type):
        """A copy with only the components ``keep`` (a boolean mask), weights renormalised;
        shared (tied) covariances stay whole."""
        sub = self.copy()
        sub.weights = sub.weights[keep] / sub.weights[keep].sum()
        sub.means = sub.means[keep]
        if covariance_type not in ("tied", "tied_diag"):
            sub.covariances = sub.covariances[keep]
            sub.precisions_cholesky = sub.precisions_cholesky[keep]
        return sub


@dataclass(frozen=True)
class DataScale:
    """What the M-step needs to know of the data to judge and repair components."""

    covariance: np.ndarray  # (D, D) data covariance (+ reg), the fallback for a component
    std: np.ndarray  # (D,) per-feature spread used to judge conditioning
    min_support: float  # a component with less weight than this has lost its support
    tiny: float  # added to every N_k so that no division is by zero
    shift: np.ndarray  # (D,) the point the E-step's raw sums are taken about
    rounding: float  # relative rounding of those sums in the working dtype


def data_scale(summary, reg_covar, n_components, *, dtype=np.float64, shift=None):
    """:class:`DataScale` of the data ``summary`` for a fit in ``dtype`` whose E-step sums
    are taken about ``shift`` (default: the data's mean)."""
    D = summary.n_features
    cov = summary.covariance + reg_covar * np.eye(D)
    unit = min(1.0, summary.mean_weight)
    min_support = min((D + 1) * unit, 0.5 * summary.total_weight / n_components)
    return DataScale(
        cov,
        np.sqrt(np.diag(cov)),
        min_support,
        10 * np.finfo(np.float64).eps * unit,
        np.array(summary.mean if shift is None else shift, dtype=np.float64),
        ROUNDING_UNITS * float(np.finfo(dtype).eps),
    )


def _scatter(stats, nk):
    sk, qk = stats.sk, stats.qk
    if qk.ndim == 3:
        return qk - sk[:, :, None] * sk[:, None, :] / nk[:, None, None]
    if qk.ndim == 2:
        return qk - sk**2 / nk[:, None]
    return qk - (sk**2).sum(axis=1) / nk


def _rounding(stats, scale):
    """Per component, the variance below which its covariance is rounding noise.

    The E-step sums w r (x − s)(x − s)ᵀ in the working precision, so a component's scatter is
    known only to about eps · E‖x − s‖²: in float32 a cluster of identical values far from
    the shift s (saturated pixels) gets a scatter with negative eigenvalues, which would
    otherwise be taken for a collapse and reset again and again.
    """
    far = ((stats.centres - scale.shift) ** 2).sum(axis=1)
    return scale.rounding * (far + np.trace(scale.covariance))


def _floor_rounding(covariance_type, covariances, floor, weights):
    """Covariances with no variance below ``floor`` (K,) in any direction (what the
    statistics cannot resolve); those above it are unchanged. Tied types use the weighted
    mean of the floor."""
    if covariance_type == "full":
        low = np.linalg.eigvalsh(covariances)[:, 0] < floor
        if low.any():
            w, V = np.linalg.eigh(covariances[low])
            w = np.maximum(w, floor[low][:, None])
            covariances = covariances.copy()
            covariances[low] = (V * w[:, None, :]) @ V.transpose(0, 2, 1)
        return covariances
    if covariance_type == "tied":
        f = float(weights @ floor)
        w, V = np.linalg.eigh(covariances)
        if w[0] >= f:
            return covariances
        return (V * np.maximum(w, f)) @ V.T
    if covariance_type == "diag":
        return np.maximum(covariances, floor[:, None])
    if covariance_type == "tied_diag":
        return np.maximum(covariances, float(weights @ floor))
    return np.maximum(covariances, floor)


def _ill_conditioned(covariance_type, covariances, std):
    """Components whose covariance, standardised by the data's spread, is near-singular."""
    if covariance_type == "full":
        C = covariances / np.outer(std, std)
        eig = np.linalg.eigvalsh(C)
        return eig[:, 0] * CONDITION_LIMIT < eig[:, -1]
    if covariance_type == "diag":
        v = covariances / std**2
        return v.min(axis=1) * CONDITION_LIMIT < v.max(axis=1)
    return None


def m_step(stats, covariance_type, reg_covar, prior, scale):
    """New parameters from ``stats``; also which components collapsed.

    Returns
    -------
    params : Params
        Always finite: a component whose covariance is not positive definite gets the data's
        covariance instead.
    collapsed : ndarray of bool (K,)
        Components that lost their support or became (near-)singular; the EM driver resets
        them.
    """
    nk_raw = stats.nk
    K, D = stats.centres.shape
    nk = nk_raw + scale.tiny
    xbar = stats.centres + stats.sk / nk[:, None]
    scatter = _scatter(stats, nk)
    if prior is None:
        means, dev = xbar, None
    else:
        means = (nk[:, None] * xbar + prior.shrinkage * prior.mean) / (nk + prior.shrinkage)[
            :, None
        ]
        dev = xbar - prior.mean
    covariances = estimate_covariances(covariance_type, nk, scatter, dev, reg_covar, prior, D)
    weights = nk / nk.sum()
    if reg_covar > 0 or prior is not None:
        # The model is bounded, so its covariances are positive definite in exact
        # arithmetic: what rounding takes away is put back. With neither, a singular
        # covariance is a true collapse, and is reset below.
        floor = _rounding(stats, scale)
        covariances = _floor_rounding(covariance_type, covariances, floor, weights)
    # With a prior a component of little support is still well defined (the prior's
    # pseudo-observations hold it); only singular ones need a restart.
    collapsed = nk_raw < scale.min_support if prior is None else np.zeros(K, dtype=bool)
    ill = _ill_conditioned(covariance_type, covariances, scale.std)
    if ill is not None:
        collapsed |= ill
    prec_chol, singular = _precisions_or_fallback(covariance_type, covariances, scale, K)
    collapsed[singular] = True
    return Params(weights, means, covariances, prec_chol), collapsed


def _precisions_or_fallback(covariance_type, covariances, scale, K):
    """Precision Cholesky factors; non-PD covariances are replaced by the data's, in place."""
    singular = np.zeros(K, dtype=bool)
    try:
        return precision_cholesky(covariance_type, covariances), singular
    except SingularCovarianceError as err:
        fallback = from_full_covariance(covariance_type, scale.covariance, K)
        if covariance_type in ("tied", "tied_diag"):
            covariances[...] = fallback
        else:
            bad = np.asarray(err.components, dtype=int)
            covariances[bad] = fallback[bad]
            singular[bad] = True
        return precision_cholesky(covariance_type, covariances), singular


def reset_components(params, components, new_means, covariance_type, scale):
    """Restart ``components`` at ``new_means`` with the data's covariance and weight 1/K.

    The other components keep their parameters; the weights are renormalised.
    """
    K = params.weights.shape[0]
    p = params.copy()
    fallback = from_full_covariance(covariance_type, scale.covariance, K)
    for k, mean in zip(components, new_means, strict=True):
        p.means[k] = mean
        p.weights[k] = 1.0 / K
        if covariance_type not in ("tied", "tied_diag"):
            p.covariances[k] = fallback[k]
    p.weights /= p.weights.sum()
    p.precisions_cholesky = precision_cholesky(covariance_type, p.covariances)
    return p
