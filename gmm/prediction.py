"""The work behind :class:`gmm.GaussianMixture`'s prediction and scoring methods: the E-step
kernel of fitted parameters, per-row outputs over blocks (sized or unsized sources), the
weighted log-likelihood, and sampling."""

import numpy as np

from . import covariance as cov
from .chunks import ValidatedSource
from .estep import Kernel, block_rows
from .missing import loglik_and_entropy_missing
from .rescale import feature_scale, scale_weights
from .row_outputs import loglik_and_entropy
from .stats import FeatureMap


def fitted_kernel(params, covariance_type, dtype, chunk_mib):
    """The E-step kernel of fitted ``params`` in ``dtype``, blocks within ``chunk_mib``."""
    K, D = params.means.shape
    fmap = FeatureMap(cov.STATS_KIND[covariance_type], D)
    rows = block_rows(K, fmap, dtype, chunk_mib)
    shift = params.weights @ params.means
    full = cov.full_covariances(covariance_type, params.covariances, K, D)
    scale = feature_scale(np.diagonal(full, axis1=-2, axis2=-1))
    return Kernel.for_params(params, covariance_type, shift, dtype, rows, scale)


def rows_out(source, fn, kernel, shape_tail, dtype):
    """``fn(kernel, source, out)`` (a per-row function of gmm.estep or gmm.missing) into a new
    array of shape (N, *shape_tail); an unsized source is done block by block."""
    # A row far outside float32's range (a point at 1e30) overflows its features; the
    # kernel redoes such rows (finite responsibilities, log-density -inf): no warning.
    with np.errstate(over="ignore", invalid="ignore"):
        return _rows_out_quiet(source, fn, kernel, shape_tail, dtype)


def _rows_out_quiet(source, fn, kernel, shape_tail, dtype):
    n = source.n_rows
    if n is not None:
        return fn(kernel, source, np.empty((n, *shape_tail), dtype=dtype))
    parts = []
    for x, w in source.chunks(kernel.rows):
        part = ValidatedSource(_OneBlock(x, w), source.n_features, allow_nan=source.allow_nan)
        parts.append(fn(kernel, part, np.empty((x.shape[0], *shape_tail), dtype=dtype)))
    return np.concatenate(parts) if parts else np.empty((0, *shape_tail), dtype=dtype)


def weighted_loglik(kernel, mixture, source, sample_weight):
    """(log-likelihood, total weight, entropy of the responsibilities) of ``source``;
    ``mixture`` (a :class:`gmm.missing.MarginalMixture`) when rows may hold NaN, else None."""
    # Weights are relative: scaled by a power of two into float32's range, and the sums
    # scaled back (exactly).
    w_exp = 0
    if sample_weight is not None and np.size(sample_weight):
        w_max = np.max(np.asarray(sample_weight, dtype=np.float64))
        source, w_exp = scale_weights(source, w_max)
    with np.errstate(over="ignore", invalid="ignore"):
        if mixture is not None:
            loglik, weight, entropy = loglik_and_entropy_missing(kernel, mixture, source)
        else:
            loglik, weight, entropy = loglik_and_entropy(kernel, source)
    return tuple(float(np.ldexp(v, -w_exp)) for v in (loglik, weight, entropy))


def draw_samples(params, covariance_type, n_samples, rng):
    """``n_samples`` rows drawn from the mixture and the component of each row."""
    K, D = params.means.shape
    counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
    full = cov.full_covariances(covariance_type, params.covariances, K, D)
    X = np.empty((n_samples, D))
    start = 0
    for k, c in enumerate(counts):
        X[start : start + c] = rng.multivariate_normal(
            params.means[k], full[k], size=c, method="cholesky"
        )
        start += c
    return X, np.repeat(np.arange(K), counts)


class _OneBlock:
    """A one-block chunk source (to validate and process a block of an unsized source)."""

    def __init__(self, x, w):
        self.x, self.w = x, w
        self.n_features = x.shape[1]
        self.n_rows = x.shape[0]

    def chunks(self, max_rows):
        for a in range(0, self.x.shape[0], max_rows):
            yield self.x[a : a + max_rows], None if self.w is None else self.w[a : a + max_rows]
