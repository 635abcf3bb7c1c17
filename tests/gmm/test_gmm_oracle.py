"""gmm checked against independent references.

- scikit-learn's ``GaussianMixture`` (a test-only oracle) from the same starting parameters,
  for the four covariance types it knows;
- a naive N x K reference EM written here for ``tied_diag``, which scikit-learn lacks;
- scipy's ``multivariate_normal`` for the log-densities and the responsibilities;
- the classic two-component fit of the Old Faithful data.

Everything runs in float64 so that the tolerances can be tight: the only differences left
are the order of floating-point sums (ours go through quadratic features and per-block
matrix products; scikit-learn's and scipy's through centred differences), of order 1e-14
relative on these well-conditioned problems. rtol=1e-5 on parameters (as asked) leaves
many orders of magnitude of margin; 1e-8 on log-densities still leaves ~5.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmm import ConvergenceWarning, GaussianMixture, full_covariances

from .starts import random_precisions

COVARIANCE_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]
SKLEARN_TYPES = ["full", "tied", "diag", "spherical"]
FAITHFUL = Path(__file__).resolve().parents[1] / "data" / "old_faithful" / "faithful.csv"

K, D = 3, 3


def blobs(seed=0, n=120):
    """Three overlapping, anisotropic clusters in 3-D: EM has work to do for 5 iterations."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [1.0, 4.0, 2.0]])
    A = np.array([[1.0, 0.3, 0.0], [0.0, 0.7, 0.2], [0.1, 0.0, 1.3]])
    return np.concatenate(
        [rng.normal(size=(n, D)) @ A * (0.6 + 0.3 * k) + c for k, c in enumerate(centres)]
    )


def start(covariance_type, X):
    """Deliberately poor starting parameters (so that the first iterations move a lot)."""
    weights = np.array([0.5, 0.3, 0.2])
    means = X[[0, 130, 250]] + 0.5
    rng = np.random.default_rng(1)
    precisions = random_precisions(covariance_type, rng, K, D)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


def fit_ours(X, covariance_type, max_iter, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 never converges
        return GaussianMixture(
            K,
            covariance_type=covariance_type,
            tol=0.0,
            max_iter=max_iter,
            dtype=np.float64,
            **start(covariance_type, X),
            **kw,
        ).fit(X)


# ---------------------------------------------------------------------------------------
# scikit-learn from the same start


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
@pytest.mark.parametrize("max_iter", [1, 2, 3, 5])
def test_same_as_sklearn_from_same_start(covariance_type, max_iter):
    X = blobs()
    ours = fit_ours(X, covariance_type, max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        sk = SkGaussianMixture(
            K,
            covariance_type=covariance_type,
            tol=0.0,
            max_iter=max_iter,
            reg_covar=1e-6,
            random_state=0,
            **start(covariance_type, X),
        ).fit(X)
    assert ours.n_resets_ == 0
    assert ours.n_iter_ == sk.n_iter_ == max_iter
    np.testing.assert_allclose(ours.weights_, sk.weights_, rtol=1e-5)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-5, atol=1e-12)
    # Both lower bounds are the mean log-likelihood of the parameters before the last M-step.
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-10)
    # And after the fit both models describe the data identically.
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-8)


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_history_is_sklearn_lower_bound_per_iteration(covariance_type):
    X = blobs(seed=3)
    ours = fit_ours(X, covariance_type, 4)
    expected = []
    for it in range(1, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkConvergenceWarning)
            sk = SkGaussianMixture(
                K,
                covariance_type=covariance_type,
                tol=0.0,
                max_iter=it,
                random_state=0,
                **start(covariance_type, X),
            ).fit(X)
        expected.append(sk.lower_bound_)
    np.testing.assert_allclose(ours.history_, expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------
# tied_diag against a naive reference EM


def naive_loglik_matrix(X, weights, means, variances):
    """log pi_k + log N(x_n | mu_k, diag(variances)), shape (N, K), the textbook way."""
    diff = X[:, None, :] - means[None, :, :]  # (N, K, D)
    quad = (diff**2 / variances).sum(axis=2)
    logdet = np.log(variances).sum()
    return np.log(weights) - 0.5 * (X.shape[1] * np.log(2 * np.pi) + logdet + quad)


def naive_tied_diag_em(X, weights, means, variances, n_iter, reg=1e-6):
    """Plain EM for a shared diagonal covariance, one N x K array of responsibilities."""
    history = []
    for _ in range(n_iter):
        L = naive_loglik_matrix(X, weights, means, variances)
        ll = logsumexp(L, axis=1)
        history.append(ll.mean())
        R = np.exp(L - ll[:, None])
        nk = R.sum(axis=0)
        weights = nk / X.shape[0]
        means = (R.T @ X) / nk[:, None]
        diff2 = (X[:, None, :] - means[None, :, :]) ** 2  # (N, K, D)
        variances = (R[:, :, None] * diff2).sum(axis=(0, 1)) / X.shape[0] + reg
    return weights, means, variances, history


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_tied_diag_same_as_naive_em(max_iter):
    X = blobs(seed=5)
    init = start("tied_diag", X)
    ours = fit_ours(X, "tied_diag", max_iter)
    weights, means, variances, history = naive_tied_diag_em(
        X, init["weights_init"], init["means_init"], 1.0 / init["precisions_init"], max_iter
    )
    np.testing.assert_allclose(ours.weights_, weights, rtol=1e-5)
    np.testing.assert_allclose(ours.means_, means, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(ours.covariances_, variances, rtol=1e-5)
    np.testing.assert_allclose(ours.precisions_cholesky_, 1 / np.sqrt(variances), rtol=1e-5)
    np.testing.assert_allclose(ours.history_, history, rtol=1e-10)


def test_tied_diag_is_diag_of_tied_with_equal_variances():
    """A tied_diag model is a diag model whose K rows are equal; the densities agree."""
    X = blobs(seed=6)
    m = fit_ours(X, "tied_diag", 3)
    ref = GaussianMixture(K, covariance_type="diag", dtype=np.float64)
    ref.weights_, ref.means_ = m.weights_, m.means_
    ref.covariances_ = np.tile(m.covariances_, (K, 1))
    ref.precisions_cholesky_ = np.tile(m.precisions_cholesky_, (K, 1))
    ref.n_features_in_ = D
    np.testing.assert_allclose(m.score_samples(X), ref.score_samples(X), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# scipy densities and responsibilities


def scipy_log_joint(model, X):
    """log pi_k + log N(x | mu_k, Sigma_k) (N, K) from covariances_, via scipy."""
    Kc, Dc = model.means_.shape
    covs = full_covariances(model.covariance_type, model.covariances_, Kc, Dc)
    return np.stack(
        [
            np.log(model.weights_[k]) + multivariate_normal(model.means_[k], covs[k]).logpdf(X)
            for k in range(Kc)
        ],
        axis=1,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_and_proba_match_scipy(covariance_type):
    X = blobs(seed=7)
    model = fit_ours(X, covariance_type, 4)
    # Points well outside the data too: the quadratic features must stay accurate there.
    rng = np.random.default_rng(8)
    Y = np.concatenate([X, rng.normal(0.0, 10.0, size=(50, D))])
    L = scipy_log_joint(model, Y)
    ref = logsumexp(L, axis=1)
    # rtol 1e-8: the two computations differ in summation order only (see module doc).
    np.testing.assert_allclose(model.score_samples(Y), ref, rtol=1e-8)
    proba = model.predict_proba(Y)
    np.testing.assert_allclose(proba, np.exp(L - ref[:, None]), rtol=1e-6, atol=1e-10)
    np.testing.assert_array_equal(model.predict(X), np.argmax(L[: len(X)], axis=1))
    np.testing.assert_allclose(model.score(Y), ref.mean(), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_rows_match_scipy(covariance_type, dtype):
    """Rows far below every component's peak take the kernel's redo path (float32: more
    than 40 nats below the highest peak); they must be as right as the others."""
    X = blobs(seed=3)
    model = fit_ours(X, covariance_type, 5)
    model.dtype = dtype
    rng = np.random.default_rng(4)
    direction = rng.normal(size=(60, D))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = np.geomspace(3.0, 300.0, 60)[:, None]
    Y = np.concatenate([X[:40], X.mean(0) + radius * direction])
    L = scipy_log_joint(model, Y)
    ref = logsumexp(L, axis=1)
    assert (ref < model.kernel().offset - 40).sum() > 20  # the redo path is exercised
    rtol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(model.score_samples(Y), ref, rtol=rtol, atol=rtol)
    proba = model.predict_proba(Y)
    np.testing.assert_allclose(proba, np.exp(L - ref[:, None]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_offset_changes_nothing(dtype):
    """Any offset above the log-densities gives the same responsibilities: with one far
    above them every row is redone with its own maximum. (Not arbitrarily far: the offset
    is folded into the coefficients, in the dtype.)"""
    from gmm.estep import Kernel

    X = blobs(seed=5)
    model = fit_ours(X, "full", 3)
    model.dtype = dtype
    natural = model.kernel()
    above = 50.0 if dtype == np.float32 else 700.0
    high = Kernel(*natural.spec()[:5], offset=natural.offset + above)
    Xd = X.astype(dtype)
    ll0 = natural.normalize(natural.logits(Xd[: natural.rows])[0]).copy()
    R0 = natural.L[:, : len(ll0)].copy()
    ll1 = high.normalize(high.logits(Xd[: high.rows])[0])
    R1 = high.L[:, : len(ll1)]
    # float32: the logits carry an error of a few ulps of ``above`` (~4e-6).
    single = dtype == np.float32
    np.testing.assert_allclose(ll1, ll0, rtol=1e-5 if single else 1e-12)
    np.testing.assert_allclose(R1, R0, rtol=1e-4 if single else 1e-12, atol=1e-7)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precisions_are_inverse_covariances(covariance_type):
    model = fit_ours(blobs(seed=9), covariance_type, 3)
    covs = full_covariances(covariance_type, model.covariances_, K, D)
    precs = full_covariances(covariance_type, model.precisions_, K, D)
    for c, p in zip(covs, precs, strict=True):
        np.testing.assert_allclose(c @ p, np.eye(D), atol=1e-10)


# ---------------------------------------------------------------------------------------
# Criteria against scikit-learn


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_bic_aic_match_sklearn_for_same_parameters(covariance_type):
    X = blobs(seed=10)
    ours = fit_ours(X, covariance_type, 5)
    sk = SkGaussianMixture(K, covariance_type=covariance_type)
    sk.weights_, sk.means_ = ours.weights_, ours.means_
    sk.covariances_ = ours.covariances_
    sk.precisions_cholesky_ = ours.precisions_cholesky_
    sk.n_features_in_ = D
    assert ours.n_parameters() == sk._n_parameters()
    np.testing.assert_allclose(ours.bic(X), sk.bic(X), rtol=1e-10)
    np.testing.assert_allclose(ours.aic(X), sk.aic(X), rtol=1e-10)


# ---------------------------------------------------------------------------------------
# Old Faithful


def faithful():
    data = np.loadtxt(FAITHFUL, delimiter=",", skiprows=1)
    assert data.shape == (272, 2)
    return data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_old_faithful_two_components(dtype):
    X = faithful()
    model = GaussianMixture(2, tol=1e-6, max_iter=500, random_state=0, dtype=dtype).fit(X)
    order = np.argsort(model.means_[:, 0])
    means, weights = model.means_[order], model.weights_[order]
    # The published two-component fit (e.g. mclust, scikit-learn): short eruptions after
    # short waits and long after long. Loose tolerances: EM stops at tol, not at the exact
    # optimum, and float32 rounds.
    np.testing.assert_allclose(means[:, 0], [2.04, 4.29], atol=0.05)  # eruptions, minutes
    np.testing.assert_allclose(means[:, 1], [54.5, 80.0], atol=0.5)  # waiting, minutes
    np.testing.assert_allclose(weights, [0.356, 0.644], atol=0.01)
    assert model.converged_


def test_old_faithful_same_optimum_as_sklearn():
    X = faithful()
    ours = GaussianMixture(2, tol=1e-12, max_iter=2000, dtype=np.float64, random_state=0).fit(X)
    sk = SkGaussianMixture(2, tol=1e-12, max_iter=2000, random_state=0).fit(X)
    o, s = np.argsort(ours.means_[:, 0]), np.argsort(sk.means_[:, 0])
    # Both converged to the same (unique, well-separated) optimum; 1e-6 relative is what
    # tol=1e-12 on the mean log-likelihood leaves of the parameters' distance to it.
    np.testing.assert_allclose(ours.weights_[o], sk.weights_[s], rtol=1e-6)
    np.testing.assert_allclose(ours.means_[o], sk.means_[s], rtol=1e-6)
    np.testing.assert_allclose(ours.covariances_[o], sk.covariances_[s], rtol=1e-5)
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(ours.bic(X), sk.bic(X), rtol=1e-9)
