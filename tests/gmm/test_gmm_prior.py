"""MAP estimation with the conjugate prior of Fraley & Raftery (2007).

The prior on component k: mu_k | Sigma_k ~ N(mu_p, Sigma_k / kappa), and Sigma_k ~
inverse-Wishart(nu, Lambda) (full, tied) or every variance ~ inverse-gamma(nu / 2,
zeta^2 / 2) (diag, tied_diag, spherical); no prior on the weights. The posterior of one
component given its responsibilities is of the same family, and its joint mode (in the
(mu, Sigma) parametrisation) is, with N_k = sum r, xbar_k the weighted mean, W_k the scatter
about xbar_k, d_k = xbar_k - mu_p and s_k = kappa N_k / (kappa + N_k):

    mu_k = (N_k xbar_k + kappa mu_p) / (N_k + kappa)

and, counting the powers of |Sigma| (or sigma^2) in prior x likelihood:

- full: |Sigma|^-(nu+D+1)/2 (IW) x |Sigma|^-1/2 (mean) x |Sigma|^-N_k/2, so
  Sigma_k = (Lambda + W_k + s_k d_k d_kᵀ) / (N_k + nu + D + 2);
- tied: one IW and K means: Sigma = (Lambda + sum W_k + sum s_k d_k d_kᵀ) / (N + K + nu + D + 1);
- diag, per feature: (s2)^-(nu/2+1) x (s2)^-1/2 x (s2)^-N_k/2, so
  s2_kj = (zeta2_j + W_kjj + s_k d_kj^2) / (N_k + nu + 3);
- tied_diag: s2_j = (zeta2_j + sum_k W_kjj + sum_k s_k d_kj^2) / (N + K + nu + 2);
- spherical: (s2)^-(nu/2+1) x (s2)^-D/2 x (s2)^-D N_k/2, so
  s2_k = (zeta2 + tr W_k + s_k |d_k|^2) / (D (N_k + 1) + nu + 2).

These are the denominators of Fraley & Raftery's Table 2 (full: nu_P + n_k + d + 2;
spherical: nu_P + (n_k + 1) d + 2; diagonal: nu_P + n_k + 3), and those gmm uses; reg_covar is
added afterwards. The tests below recompute them from scratch and also check the objective
(log-likelihood + log-prior) against scipy's densities.
"""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import invgamma, invwishart, multivariate_normal

from gmm import ConvergenceWarning, GaussianMixture, full_covariances

COVARIANCE_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]
K, D = 3, 3


def data(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [1.0, 3.0, 2.0]])
    X = np.concatenate([rng.normal(c, 1.0, (50, D)) for c in centres])
    w = rng.uniform(0.5, 2.0, len(X))
    return X, w


def start(covariance_type, X):
    precisions = {
        "full": np.array([np.eye(D) * (0.6 + 0.4 * k) for k in range(K)]),
        "tied": np.eye(D) * 0.8,
        "diag": np.array([[0.5, 1.0, 1.5], [1.0, 1.0, 1.0], [2.0, 0.7, 0.9]]),
        "tied_diag": np.array([0.5, 1.0, 1.5]),
        "spherical": np.array([0.5, 1.0, 2.0]),
    }[covariance_type]
    return {
        "weights_init": np.array([0.2, 0.5, 0.3]),
        "means_init": X[[0, 60, 110]] + 0.4,
        "precisions_init": precisions,
    }


def a_prior(covariance_type):
    """A deliberately strong prior, so that its terms weigh in the comparisons."""
    scale = {
        "full": np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]]),
        "tied": np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]]),
        "diag": np.array([2.0, 1.0, 1.5]),
        "tied_diag": np.array([2.0, 1.0, 1.5]),
        "spherical": 1.7,
    }[covariance_type]
    return {"mean": np.array([1.0, -1.0, 0.5]), "shrinkage": 3.0, "dof": 6.0, "scale": scale}


# ---------------------------------------------------------------------------------------
# References written from the formulas in the module docstring


def joint_log_densities(X, weights, means, covs):
    """log pi_k + log N(x | mu_k, Sigma_k), (N, K), via scipy."""
    return np.stack(
        [
            np.log(weights[k]) + multivariate_normal(means[k], covs[k]).logpdf(X)
            for k in range(len(weights))
        ],
        axis=1,
    )


def naive_map_m_step(covariance_type, X, w, R, prior, reg):
    """MAP parameters from responsibilities R (N, K) and weights w (N,)."""
    mu_p, kappa, nu, Lam = prior["mean"], prior["shrinkage"], prior["dof"], prior["scale"]
    Rw = R * w[:, None]
    Nk = Rw.sum(axis=0)
    N = Nk.sum()
    xbar = (Rw.T @ X) / Nk[:, None]
    means = (Nk[:, None] * xbar + kappa * mu_p) / (Nk + kappa)[:, None]
    W = np.array([(Rw[:, k, None] * (X - xbar[k])).T @ (X - xbar[k]) for k in range(K)])
    d = xbar - mu_p
    s = kappa * Nk / (kappa + Nk)
    dd = np.array([s[k] * np.outer(d[k], d[k]) for k in range(K)])
    eye = np.eye(D)
    if covariance_type == "full":
        covs = np.array([(Lam + W[k] + dd[k]) / (Nk[k] + nu + D + 2) + reg * eye for k in range(K)])
    elif covariance_type == "tied":
        covs = (Lam + W.sum(0) + dd.sum(0)) / (N + K + nu + D + 1) + reg * eye
    elif covariance_type == "diag":
        covs = np.array(
            [(Lam + np.diag(W[k]) + np.diag(dd[k])) / (Nk[k] + nu + 3) + reg for k in range(K)]
        )
    elif covariance_type == "tied_diag":
        covs = (Lam + sum(np.diag(W[k]) + np.diag(dd[k]) for k in range(K))) / (
            N + K + nu + 2
        ) + reg
    else:
        covs = np.array(
            [
                (Lam + np.trace(W[k]) + np.trace(dd[k])) / (D * (Nk[k] + 1) + nu + 2) + reg
                for k in range(K)
            ]
        )
    return Nk / N, means, covs


def naive_log_prior(covariance_type, means, covariances, prior):
    """log p(mu, Sigma) with scipy's densities (normalising constants included)."""
    mu_p, kappa, nu, Lam = prior["mean"], prior["shrinkage"], prior["dof"], prior["scale"]
    covs = full_covariances(covariance_type, covariances, K, D)
    mean_terms = sum(multivariate_normal(mu_p, covs[k] / kappa).logpdf(means[k]) for k in range(K))
    Lam_d = np.broadcast_to(Lam, (D,)) if np.ndim(Lam) < 2 else None
    if covariance_type == "full":
        cov_terms = sum(invwishart(df=nu, scale=Lam).logpdf(covs[k]) for k in range(K))
    elif covariance_type == "tied":
        cov_terms = invwishart(df=nu, scale=Lam).logpdf(covariances)
    elif covariance_type == "diag":
        cov_terms = invgamma(nu / 2, scale=Lam_d / 2).logpdf(covariances).sum()
    elif covariance_type == "tied_diag":
        cov_terms = invgamma(nu / 2, scale=Lam_d / 2).logpdf(covariances).sum()
    else:
        cov_terms = invgamma(nu / 2, scale=Lam / 2).logpdf(covariances).sum()
    return mean_terms + cov_terms


def naive_log_posterior(model, X, w, prior):
    covs = full_covariances(model.covariance_type, model.covariances_, K, D)
    loglik = w @ logsumexp(joint_log_densities(X, model.weights_, model.means_, covs), axis=1)
    return loglik + naive_log_prior(model.covariance_type, model.means_, model.covariances_, prior)


def fit_map(X, w, covariance_type, prior, max_iter, reg_covar=0.0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(
            K,
            covariance_type=covariance_type,
            prior=prior,
            reg_covar=reg_covar,
            tol=0.0,
            max_iter=max_iter,
            dtype=np.float64,
            **start(covariance_type, X),
            **kw,
        ).fit(X, sample_weight=w)


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("reg_covar", [0.0, 1e-3])
def test_one_map_m_step_matches_formulas(covariance_type, reg_covar):
    X, w = data()
    prior = a_prior(covariance_type)
    model = fit_map(X, w, covariance_type, prior, max_iter=1, reg_covar=reg_covar)
    assert model.n_resets_ == 0
    # The responsibilities the single E-step used: those of the starting parameters.
    init = start(covariance_type, X)
    P0 = np.asarray(init["precisions_init"])
    cov0 = np.linalg.inv(P0) if covariance_type in ("full", "tied") else 1.0 / P0
    cov0 = full_covariances(covariance_type, cov0, K, D)
    L = joint_log_densities(X, init["weights_init"], init["means_init"], cov0)
    R = np.exp(L - logsumexp(L, axis=1, keepdims=True))
    weights, means, covs = naive_map_m_step(covariance_type, X, w, R, prior, reg_covar)
    # rtol 1e-9: the same quantities, summed in another order (see test_gmm_oracle).
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-9)
    np.testing.assert_allclose(model.means_, means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.covariances_, covs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_objective_is_the_log_posterior(covariance_type):
    """history_[i] = (log-likelihood + log-prior) / total weight, up to a constant: its
    increments equal those of the log-posterior computed with scipy's densities."""
    X, w = data(seed=1)
    prior = a_prior(covariance_type)
    # history_[i] is the objective of the parameters after i M-steps.
    values = [
        naive_log_posterior(fit_map(X, w, covariance_type, prior, max_iter=i), X, w, prior)
        / w.sum()
        for i in (1, 2, 3)
    ]
    model = fit_map(X, w, covariance_type, prior, max_iter=4)
    np.testing.assert_allclose(np.diff(model.history_[1:]), np.diff(values), rtol=1e-7)
    assert (np.diff(model.history_) > 0).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior", ["default", "custom"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_posterior_never_decreases(covariance_type, prior, dtype):
    """EM's monotonicity holds for the log-posterior. The driver stops (and warns) at the
    first decrease above tol, so a run to convergence without that warning shows every
    step went up; float32 rounds the objective to ~1e-7 relative, hence its larger tol."""
    X, w = data(seed=2)
    prior = a_prior(covariance_type) if prior == "custom" else prior
    tol = 1e-10 if dtype == np.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message=".*objective decreased", category=ConvergenceWarning
        )
        model = GaussianMixture(
            K,
            covariance_type=covariance_type,
            prior=prior,
            tol=tol,
            max_iter=500,
            dtype=dtype,
            random_state=0,
        ).fit(X, w)
    assert model.converged_
    h = model.history_
    assert (np.diff(h) >= 0).all() or model.reset_iterations_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_default_prior_hyperparameters(covariance_type):
    """prior='default' follows mclust's defaultPrior: the data mean, kappa = 0.01,
    nu = D + 2, and Lambda = cov(X) / K^(2/D) (its diagonal / mean variance)."""
    X, w = data(seed=3)
    model = GaussianMixture(
        K, covariance_type=covariance_type, prior="default", max_iter=2, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, w)
    mean = w @ X / w.sum()
    cov = np.cov(X.T, aweights=w, bias=True) / K ** (2 / D)
    p = model.prior_
    np.testing.assert_allclose(p.mean, mean, rtol=1e-12)
    assert p.shrinkage == 0.01 and p.dof == D + 2
    expected = {
        "full": cov,
        "tied": cov,
        "diag": np.diag(cov),
        "tied_diag": np.diag(cov),
        "spherical": np.trace(cov) / D,
    }[covariance_type]
    np.testing.assert_allclose(p.scale, expected, rtol=1e-10)


THREE_POINTS = np.repeat(np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]]), 20, axis=0)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_default_prior_removes_singularities(covariance_type):
    """Three components on three distinct points, no reg_covar: maximum likelihood sends
    every covariance to zero (singular, so components are reset); the MAP fit keeps them
    positive definite and needs no reset."""
    kw = dict(covariance_type=covariance_type, reg_covar=0.0, random_state=0, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ml = GaussianMixture(3, **kw).fit(THREE_POINTS)
        mapped = GaussianMixture(3, prior="default", **kw).fit(THREE_POINTS)
    assert ml.n_resets_ > 0
    assert mapped.n_resets_ == 0
    order = np.argsort(mapped.means_[:, 0])
    # Shrinkage 0.01 against 20 points: the means move by 0.01/20.01 of their distance
    # to the data mean (< 1e-3 here).
    np.testing.assert_allclose(mapped.means_[order], [[0, 0], [1, 2], [3, 1]], atol=1e-3)
    np.testing.assert_allclose(mapped.weights_, 1 / 3, rtol=1e-6)
    covs = full_covariances(covariance_type, mapped.covariances_, 3, 2)
    assert (np.linalg.eigvalsh(covs) > 1e-4).all()
    assert np.isfinite(mapped.score_samples(THREE_POINTS)).all()


def test_prior_shrinks_means_toward_prior_mean():
    X, w = data(seed=4)
    target = np.array([10.0, 10.0, 10.0])
    distances = []
    for shrinkage in (1e-6, 1.0, 100.0, 1e4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = GaussianMixture(
                K, prior={"mean": target, "shrinkage": shrinkage}, random_state=0, dtype=np.float64
            ).fit(X, w)
        distances.append(np.linalg.norm(m.means_ - target, axis=1).max())
    assert np.all(np.diff(distances) < 0), distances
    # kappa = 1e4 pseudo-points against ~60 weighted points per component.
    assert distances[-1] < 0.5


def test_prior_is_used_by_from_dict_objective():
    """A model rebuilt from its dict carries its prior (the options round trip)."""
    X, w = data(seed=5)
    model = fit_map(X, w, "diag", a_prior("diag"), max_iter=3)
    back = GaussianMixture.from_dict(model.to_dict())
    np.testing.assert_array_equal(back.prior_.scale, model.prior_.scale)
    assert back.prior["dof"] == 6.0
