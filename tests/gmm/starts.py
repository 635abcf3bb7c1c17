"""Random first precisions of a 3-component mixture, shared by the oracle and missing-value
tests (which compare whole EM runs from given starts)."""

import numpy as np


def random_precisions(covariance_type, rng, K, D):
    """Positive definite precisions in ``covariance_type``'s layout, drawn from ``rng``
    (spherical: fixed values, for K = 3)."""
    if covariance_type == "full":
        precisions = []
        for k in range(K):
            B = rng.normal(size=(D, D))
            precisions.append(B @ B.T + (1.0 + k) * np.eye(D))
        return np.array(precisions)
    if covariance_type == "tied":
        B = rng.normal(size=(D, D))
        return B @ B.T + np.eye(D)
    if covariance_type == "diag":
        return rng.uniform(0.3, 3.0, size=(K, D))
    if covariance_type == "tied_diag":
        return rng.uniform(0.3, 3.0, size=D)
    return np.array([0.4, 1.0, 2.5])
