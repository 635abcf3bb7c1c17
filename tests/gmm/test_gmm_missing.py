"""EM with missing values (NaN) against a naive dense reference written here.

The reference loops over rows and scores each by scipy.stats.multivariate_normal on its
observed coordinates; its M-step completes each row by its conditional mean and adds the
conditional covariance (Ghahramani & Jordan 1994), then imposes the covariance structure.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmm import ConvergenceWarning, GaussianMixture, UnobservedRowsWarning, full_covariances

from .starts import random_precisions

TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]
FAITHFUL = Path(__file__).parent.parent / "data" / "old_faithful" / "faithful.csv"
K, D = 3, 3
REG = 1e-6


def blobs(seed=0, n=40):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [1.0, 4.0, 2.0]])
    A = np.array([[1.0, 0.5, 0.0], [0.0, 0.7, 0.4], [0.3, 0.0, 1.0]])
    return np.concatenate([rng.normal(size=(n, D)) @ A + c for c in centres])


def remove(X, fraction, seed=1):
    """X with about ``fraction`` of its values set to NaN, at random (MCAR)."""
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    Xm[rng.random(X.shape) < fraction] = np.nan
    return Xm


def start(covariance_type, X):
    rng = np.random.default_rng(2)
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.5, 0.2, 0.0], [2.5, 1.5, -0.5], [1.0, 3.0, 2.5]])
    precisions = random_precisions(covariance_type, rng, K, D)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


def covariances_of(covariance_type, precisions):
    P = np.asarray(precisions)
    if covariance_type == "full":
        C = np.linalg.inv(P)
    elif covariance_type == "tied":
        C = np.linalg.inv(P)
    else:
        C = 1.0 / P
    return full_covariances(covariance_type, C, K, D)


# -- the naive reference ------------------------------------------------------------------


def reference_estep(X, w, weights, means, covs):
    """Per row: responsibilities, the completed rows x̂_k and conditional covariances C_k
    (zero outside the missing block), log p(x_o); rows with nothing observed are dropped."""
    out = []
    for x, wi in zip(X, w, strict=True):
        o = ~np.isnan(x)
        if not o.any():
            continue
        m = ~o
        logp = np.array(
            [
                np.log(weights[k])
                + multivariate_normal(means[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
                for k in range(len(weights))
            ]
        )
        ll = logsumexp(logp)
        r = np.exp(logp - ll)
        xhat, C = [], []
        for k in range(len(weights)):
            S = covs[k]
            gain = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            full = x.copy()
            full[m] = means[k][m] + gain @ (x[o] - means[k][o])
            Ck = np.zeros((len(x), len(x)))
            Ck[np.ix_(m, m)] = S[np.ix_(m, m)] - gain @ S[np.ix_(o, m)]
            xhat.append(full)
            C.append(Ck)
        out.append((wi, r, np.array(xhat), np.array(C), ll))
    return out


def reference_em_step(covariance_type, X, w, weights, means, covs):
    """One EM iteration: new (weights, means, full covariances) and the mean log-likelihood
    of the old parameters."""
    rows = reference_estep(X, w, weights, means, covs)
    Kc, Dc = means.shape
    N = np.zeros(Kc)
    S1 = np.zeros((Kc, Dc))
    for wi, r, xhat, _, _ in rows:
        N += wi * r
        S1 += wi * r[:, None] * xhat
    new_means = S1 / N[:, None]
    scatter = np.zeros((Kc, Dc, Dc))
    for wi, r, xhat, C, _ in rows:
        for k in range(Kc):
            d = xhat[k] - new_means[k]
            scatter[k] += wi * r[k] * (np.outer(d, d) + C[k])
    per = scatter / N[:, None, None]
    if covariance_type == "full":
        new = per
    elif covariance_type == "tied":
        new = np.broadcast_to(scatter.sum(0) / N.sum(), (Kc, Dc, Dc))
    elif covariance_type == "diag":
        new = np.array([np.diag(np.diag(c)) for c in per])
    elif covariance_type == "tied_diag":
        new = np.broadcast_to(np.diag(np.diag(scatter.sum(0)) / N.sum()), (Kc, Dc, Dc))
    else:
        new = np.array([np.trace(c) / Dc * np.eye(Dc) for c in per])
    new = new + REG * np.eye(Dc)
    total = sum(wi for wi, *_ in rows)
    loglik = sum(wi * ll for wi, *_, ll in rows) / total
    return N / N.sum(), new_means, new, loglik


def reference_impute(X, weights, means, covs):
    out = X.copy()
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        m = ~o
        if not m.any():
            continue
        if not o.any():
            out[i] = weights @ means
            continue
        logp = np.array(
            [
                np.log(weights[k])
                + multivariate_normal(means[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
                for k in range(len(weights))
            ]
        )
        r = np.exp(logp - logsumexp(logp))
        cond = [
            means[k][m]
            + covs[k][np.ix_(m, o)] @ np.linalg.solve(covs[k][np.ix_(o, o)], x[o] - means[k][o])
            for k in range(len(weights))
        ]
        out[i, m] = r @ np.array(cond)
    return out


# -- helpers ----------------------------------------------------------------------------


def fit_quiet(X, sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedRowsWarning)
        return GaussianMixture(dtype=np.float64, reg_covar=REG, **kw).fit(X, sample_weight)


def missing_data():
    X = remove(blobs(), 0.3)
    X[5] = np.nan  # nothing observed
    X[7, :2] = np.nan
    return X


# -- one iteration against the reference ----------------------------------------------


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_one_iteration_equals_reference(covariance_type, weighted, chunked):
    X = missing_data()
    n = X.shape[0]
    w = np.random.default_rng(3).uniform(0.2, 3.0, n) if weighted else np.ones(n)
    if weighted:
        w[10] = 0.0
    init = start(covariance_type, X)
    covs = covariances_of(covariance_type, init["precisions_init"])
    ref_w, ref_m, ref_c, ref_ll = reference_em_step(
        covariance_type, X, w, init["weights_init"], init["means_init"], covs
    )
    if chunked:
        data = [(X[a : a + 17], w[a : a + 17] if weighted else None) for a in range(0, n, 17)]
        model = fit_quiet(data, n_components=K, covariance_type=covariance_type, max_iter=1, **init)
    else:
        model = fit_quiet(
            X,
            w if weighted else None,
            n_components=K,
            covariance_type=covariance_type,
            max_iter=1,
            **init,
        )
    ours_c = full_covariances(covariance_type, model.covariances_, K, D)
    np.testing.assert_allclose(model.history_[0], ref_ll, rtol=1e-10)
    np.testing.assert_allclose(model.weights_, ref_w, rtol=1e-9)
    np.testing.assert_allclose(model.means_, ref_m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours_c, ref_c, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_rows_of_a_fitted_model_match_reference(covariance_type):
    X = missing_data()
    init = start(covariance_type, X)
    model = fit_quiet(X, n_components=K, covariance_type=covariance_type, max_iter=3, **init)
    covs = full_covariances(covariance_type, model.covariances_, K, D)
    logp_ref = np.full((X.shape[0], K), np.nan)
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        for k in range(K):
            logp_ref[i, k] = np.log(model.weights_[k]) + (
                multivariate_normal(model.means_[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
                if o.any()
                else 0.0
            )
    ll = logsumexp(logp_ref, axis=1)
    np.testing.assert_allclose(model.score_samples(X), ll, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(X), np.exp(logp_ref - ll[:, None]), atol=1e-5)
    assert np.array_equal(model.predict(X), np.argmax(logp_ref, axis=1))
    # A row with nothing observed: log p = 0 and the prior's most likely component.
    assert model.score_samples(X[5:6])[0] == pytest.approx(0.0, abs=1e-6)
    assert model.predict(X[5:6])[0] == np.argmax(model.weights_)
    seen = ~np.isnan(X).all(axis=1)
    assert model.score(X) == pytest.approx(ll[seen].mean(), rel=1e-6)
    # A block whose incomplete rows all have nothing observed.
    only_empty = np.vstack([blobs()[:4], np.full((2, D), np.nan)])
    assert model.score(only_empty) == pytest.approx(model.score(only_empty[:4]), rel=1e-9)
    # The block API gives the same, block by block.
    resp = np.empty((X.shape[0], K))
    logp = np.empty(X.shape[0])
    small = GaussianMixture.from_dict({**model.to_dict(), "options": {"chunk_mib": 0.002}})
    for rows, r, lp in small.iter_blocks(X):
        assert rows.stop - rows.start < X.shape[0]
        resp[rows], logp[rows] = r.T, lp
    np.testing.assert_allclose(logp, ll, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(resp, np.exp(logp_ref - ll[:, None]), atol=1e-5)
    expected = reference_impute(X, model.weights_, model.means_, covs)
    imputed = model.impute(X)
    np.testing.assert_allclose(imputed, expected, rtol=1e-9, atol=1e-12)
    assert not np.isnan(imputed).any()
    observed = ~np.isnan(X)
    assert np.array_equal(imputed[observed], X[observed])


# -- invariants -------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_observed_loglik_never_decreases(covariance_type, dtype):
    X = remove(blobs(seed=4, n=200), 0.4, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UnobservedRowsWarning)
        model = GaussianMixture(
            K, covariance_type=covariance_type, tol=0.0, max_iter=40, dtype=dtype, random_state=0
        ).fit(X)
    assert model.n_iter_ > 5
    steps = np.diff(model.history_)
    assert (steps >= -1e-9 * np.abs(model.history_[1:])).all()
    # The last objective is the observed-data log-likelihood of the fitted parameters (up
    # to the last step).
    assert model.score(X) >= model.history_[-1] - 1e-6


def test_complete_data_is_todays_fit_exactly():
    X = blobs(seed=6, n=300)
    w = np.random.default_rng(7).integers(0, 4, X.shape[0]).astype(float)
    for covariance_type in TYPES:
        for dtype in (np.float32, np.float64):
            kw = dict(covariance_type=covariance_type, dtype=dtype, random_state=0, chunk_mib=0.01)
            a = GaussianMixture(K, missing="marginalize", **kw).fit(X, w)
            b = GaussianMixture(K, missing="error", **kw).fit(X, w)
            for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "history_"):
                assert np.array_equal(getattr(a, name), getattr(b, name)), name
            assert a.n_unobserved_ == 0
            assert np.array_equal(a.predict(X), b.predict(X))
            assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
            assert np.array_equal(a.score_samples(X), b.score_samples(X))
            assert a.score(X, w) == b.score(X, w)
            assert np.array_equal(a.impute(X), X)


def test_unobserved_rows_are_counted_and_change_nothing():
    X = remove(blobs(seed=8, n=100), 0.2, seed=9)
    X[X.shape[0] // 2 :][np.isnan(X[X.shape[0] // 2 :]).any(axis=1)] = np.nan
    n_empty = int(np.isnan(X).all(axis=1).sum())
    assert n_empty > 3
    kw = dict(n_components=K, random_state=0, dtype=np.float64, tol=1e-8)
    with pytest.warns(UnobservedRowsWarning, match=f"{n_empty} row"):
        a = GaussianMixture(**kw).fit(X)
    assert a.n_unobserved_ == n_empty
    b = GaussianMixture(**kw).fit(X[~np.isnan(X).all(axis=1)])
    assert b.n_unobserved_ == 0
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-9)


def test_weights_act_as_repeated_rows():
    X = remove(blobs(seed=10, n=60), 0.3, seed=11)
    X = X[~np.isnan(X).all(axis=1)]
    counts = np.random.default_rng(12).integers(1, 4, X.shape[0])
    init = start("full", X)
    a = fit_quiet(X, counts.astype(float), n_components=K, max_iter=5, **init)
    b = fit_quiet(np.repeat(X, counts, axis=0), n_components=K, max_iter=5, **init)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-10)


def test_errors_and_options():
    X = remove(blobs(), 0.2)
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        GaussianMixture(2, missing="error").fit(X)
    with pytest.raises(ValueError, match="missing must be one of"):
        GaussianMixture(2, missing="drop").fit(X)
    Y = X.copy()
    Y[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GaussianMixture(2).fit(Y)
    Y = X.copy()
    Y[:, 1] = np.nan
    with pytest.raises(ValueError, match="feature 1 is missing"):
        GaussianMixture(2).fit(Y)
    with pytest.raises(ValueError, match="nothing to fit"):
        GaussianMixture(2).fit(np.full((5, 2), np.nan))
    model = GaussianMixture(2, random_state=0).fit(blobs())
    clone = GaussianMixture.from_dict(model.to_dict())
    assert clone.missing == "marginalize"
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    strict = GaussianMixture(2, missing="error", random_state=0).fit(blobs())
    with pytest.raises(ValueError, match="NaN"):
        strict.predict(X)
    assert not np.isnan(strict.impute(X)).any()  # impute always treats NaN as missing


# -- recovery -------------------------------------------------------------------------


def matched(model, means):
    """The model's components ordered to match ``means`` (nearest first mean)."""
    order = [int(np.argmin(((model.means_ - m) ** 2).sum(1))) for m in means]
    assert len(set(order)) == len(means)
    return order


def test_recovers_synthetic_parameters():
    rng = np.random.default_rng(13)
    means = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 1.0, -2.0, 0.0], [0.0, 5.0, 2.0, 3.0]])
    covs = []
    for _ in range(3):
        B = rng.normal(size=(4, 4)) * 0.5
        covs.append(B @ B.T + 0.3 * np.eye(4))
    n = 4000
    X = np.concatenate([rng.multivariate_normal(m, c, n) for m, c in zip(means, covs, strict=True)])
    Xm = remove(X, 0.3, seed=14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnobservedRowsWarning)
        model = GaussianMixture(3, dtype=np.float64, tol=1e-8, random_state=0).fit(Xm)
    order = matched(model, means)
    np.testing.assert_allclose(model.means_[order], means, atol=0.08)
    np.testing.assert_allclose(model.covariances_[order], np.array(covs), atol=0.12)
    np.testing.assert_allclose(model.weights_[order], 1 / 3, atol=0.02)
    # Held-out complete rows are explained about as well as by the fit of the complete data.
    test = np.concatenate(
        [rng.multivariate_normal(m, c, 500) for m, c in zip(means, covs, strict=True)]
    )
    complete = GaussianMixture(3, dtype=np.float64, tol=1e-8, random_state=0).fit(X)
    assert model.score(test) > complete.score(test) - 0.02


def test_old_faithful_with_values_removed_matches_reference_em():
    X = np.loadtxt(FAITHFUL, delimiter=",", skiprows=1)
    Xm = remove(X, 0.15, seed=15)
    Xm = Xm[~np.isnan(Xm).all(axis=1)]
    assert np.isnan(Xm).any(axis=1).sum() > 50
    weights = np.array([0.5, 0.5])
    means = np.array([[2.0, 55.0], [4.0, 80.0]])
    covs = np.array([np.diag([1.0, 100.0])] * 2)
    init = dict(weights_init=weights, means_init=means, precisions_init=np.linalg.inv(covs))
    n_iter = 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(
            2, tol=0.0, max_iter=n_iter, dtype=np.float64, reg_covar=REG, **init
        ).fit(Xm)
    w = np.ones(Xm.shape[0])
    history = []
    for _ in range(n_iter):
        weights, means, covs, ll = reference_em_step("full", Xm, w, weights, means, covs)
        history.append(ll)
    np.testing.assert_allclose(model.history_, history, rtol=1e-9)
    np.testing.assert_allclose(model.means_, means, rtol=1e-7)
    np.testing.assert_allclose(model.covariances_, covs, rtol=1e-6)
    # ...and the fit run to convergence is the published two-component fit.
    full = GaussianMixture(2, tol=1e-8, max_iter=500, dtype=np.float64, random_state=0).fit(Xm)
    order = np.argsort(full.means_[:, 0])
    np.testing.assert_allclose(full.means_[order, 0], [2.04, 4.29], atol=0.1)
    np.testing.assert_allclose(full.means_[order, 1], [54.5, 80.0], atol=1.5)
    np.testing.assert_allclose(full.weights_[order], [0.356, 0.644], atol=0.03)


def test_online_em_with_missing_values():
    rng = np.random.default_rng(16)
    X = np.concatenate([rng.normal(0, 1, (6000, 3)), rng.normal(4, 0.5, (6000, 3))])
    rng.shuffle(X)
    Xm = remove(X, 0.2, seed=17)
    n_empty = int(np.isnan(Xm).all(axis=1).sum())
    kw = dict(n_components=2, random_state=0, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnobservedRowsWarning)
        batch = GaussianMixture(**kw).fit(Xm)
    online = GaussianMixture(**kw, online_batch_rows=1000).fit(Xm, online=True)
    assert online.n_unobserved_ == n_empty > 0
    assert online.score(X) > batch.score(X) - 0.01
    # The same stream with the values present does better, but not by much.
    complete = GaussianMixture(**kw, online_batch_rows=1000).fit(X, online=True)
    assert online.score(X) <= complete.score(X) + 1e-3
    strict = GaussianMixture(**kw, missing="error")
    with pytest.raises(ValueError, match="NaN"):
        strict.partial_fit(Xm[:1000])


def test_select_model_with_missing_values():
    from gmm import select_model

    rng = np.random.default_rng(18)
    centres = ([0, 0, 0], [4, 0, 0], [0, 4, 2])
    X = np.concatenate([rng.normal(c, 0.6, (800, 3)) for c in centres])
    Xm = remove(X, 0.25, seed=19)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select_model(
            Xm, n_components=range(1, 6), covariance_types=("full", "diag"), random_state=0
        )
        complete = select_model(
            X, n_components=range(1, 6), covariance_types=("full", "diag"), random_state=0
        )
    assert sel.chosen == complete.chosen == (3, "diag")
    for row in sel.table:
        model = sel.models[(row["k"], row["covariance_type"])]
        assert row["bic"] == pytest.approx(model.bic(Xm), rel=1e-12)
    assert sel.table[0]["bic"] < complete.table[0]["bic"]  # fewer observed values
