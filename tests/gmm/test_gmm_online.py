"""Online (stepwise) EM: against a naive stepwise EM written here, and against batch EM."""

import numpy as np
import pytest
from scipy import stats

import gmm

MEANS = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 6.0]])


def draw(n, rng):
    z = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    return MEANS[z] + rng.normal(size=(n, 2)) * np.array([1.0, 0.5])


def naive_stepwise(chunks, pi, mu, var, alpha, reg):
    """Stepwise EM for a 1-D mixture, statistics about 0, densities from scipy.stats."""
    n, s, q = pi.copy(), pi * mu, pi * (var - reg + mu**2)
    for t, x in enumerate(chunks):
        dens = pi[None, :] * stats.norm.pdf(x[:, None], mu[None, :], np.sqrt(var)[None, :])
        r = dens / dens.sum(axis=1, keepdims=True)
        eta = (t + 2.0) ** -alpha
        n = (1 - eta) * n + eta * r.mean(axis=0)
        s = (1 - eta) * s + eta * (r * x[:, None]).mean(axis=0)
        q = (1 - eta) * q + eta * (r * x[:, None] ** 2).mean(axis=0)
        pi, mu = n / n.sum(), s / n
        var = q / n - mu**2 + reg
    return pi, mu, var


def test_matches_naive_stepwise_em():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, 3000), rng.normal(3, 0.5, 2000)])
    rng.shuffle(x)
    chunks = np.split(x, 10)
    pi0, mu0, var0 = np.array([0.5, 0.5]), np.array([-1.0, 1.0]), np.array([2.0, 2.0])
    model = gmm.GaussianMixture(
        2,
        weights_init=pi0,
        means_init=mu0[:, None],
        precisions_init=(1 / var0)[:, None, None],
        online_alpha=0.6,
        reg_covar=1e-6,
        dtype=np.float64,
    )
    for c in chunks:
        model.partial_fit(c[:, None])
    pi, mu, var = naive_stepwise(chunks, pi0, mu0, var0, 0.6, 1e-6)
    np.testing.assert_allclose(model.weights_, pi, rtol=1e-9)
    np.testing.assert_allclose(model.means_[:, 0], mu, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_[:, 0, 0], var, rtol=1e-9)
    assert model.n_iter_ == 10 and len(model.history_) == 10


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "tied_diag", "spherical"])
def test_one_online_pass_reaches_the_batch_solution(covariance_type):
    X = draw(200_000, np.random.default_rng(1))
    batch = gmm.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    online = gmm.GaussianMixture(
        3, covariance_type=covariance_type, random_state=0, online_batch_rows=4000
    ).fit(X, online=True)
    assert online.n_iter_ == 50
    assert online.score(X) == pytest.approx(batch.score(X), rel=1e-4)
    order_b, order_o = np.lexsort(batch.means_.T), np.lexsort(online.means_.T)
    np.testing.assert_allclose(online.means_[order_o], batch.means_[order_b], atol=0.02)
    np.testing.assert_allclose(online.weights_[order_o], batch.weights_[order_b], atol=0.01)


def test_stream_is_read_once_deterministic_and_with_a_prior():
    def stream(seed):
        rng = np.random.default_rng(seed)
        for _ in range(40):
            yield draw(5000, rng), None

    opts = dict(random_state=3, prior="default", online_alpha=0.8)
    a = gmm.GaussianMixture(3, **opts).fit(stream(2), online=True)
    b = gmm.GaussianMixture(3, **opts).fit(stream(2), online=True)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    X = np.concatenate([x for x, _ in stream(2)])
    batch = gmm.GaussianMixture(3, random_state=3, prior="default").fit(X)
    assert a.score(X) == pytest.approx(batch.score(X), rel=1e-3)
    assert a.prior_ is not None


def test_weights_act_as_repeated_rows_chunk_by_chunk():
    rng = np.random.default_rng(4)
    init = dict(
        weights_init=[0.4, 0.3, 0.3],
        means_init=MEANS + 0.5,
        precisions_init=np.broadcast_to(np.eye(2), (3, 2, 2)),
        dtype=np.float64,
    )
    weighted, repeated = gmm.GaussianMixture(3, **init), gmm.GaussianMixture(3, **init)
    for _ in range(6):
        x = draw(500, rng)
        w = rng.integers(0, 4, size=500)
        weighted.partial_fit(x, sample_weight=w)
        repeated.partial_fit(np.repeat(x, w, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)
    np.testing.assert_allclose(weighted.history_, repeated.history_, rtol=1e-9)


def test_partial_fit_continues_a_batch_fit_and_checks_its_inputs():
    rng = np.random.default_rng(5)
    X = draw(20000, rng)
    model = gmm.GaussianMixture(3, random_state=0).fit(X)
    before = model.score(X)
    model.partial_fit(draw(20000, rng))
    assert model.n_iter_ == 1 and model.score(X) == pytest.approx(before, abs=0.01)
    with pytest.raises(ValueError, match="3 features but the earlier chunks had 2"):
        model.partial_fit(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="online_alpha must be in"):
        gmm.GaussianMixture(2, online_alpha=0.5).partial_fit(X)
    with pytest.raises(ValueError, match="NaN"):
        gmm.GaussianMixture(2).partial_fit(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="empty"):
        gmm.GaussianMixture(2).fit(iter([]), online=True)


def test_collapsed_component_is_reset_not_fatal():
    rng = np.random.default_rng(6)
    # A component started far from every row: its running weight decays like
    # exp(-Σ η_t) until it holds less than a few rows' worth, and it is restarted.
    model = gmm.GaussianMixture(
        3,
        weights_init=[0.45, 0.45, 0.1],
        means_init=[[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]],
        precisions_init=np.broadcast_to(np.eye(2), (3, 2, 2)),
    )
    for _ in range(150):
        z = rng.integers(0, 2, size=200)
        model.partial_fit(MEANS[:2][z] + rng.normal(size=(200, 2)))
    assert model.n_resets_ >= 1 and model.reset_iterations_
    assert np.isfinite(model.means_).all() and np.isfinite(model.covariances_).all()


def test_callback_with_params_sees_the_parameters_each_objective_was_computed_for():
    X = draw(3000, np.random.default_rng(7))
    seen = []

    def watch(iteration, objective, *, params):
        seen.append((iteration, objective, params))

    model = gmm.GaussianMixture(3, random_state=0, callback=watch, tol=1e-8).fit(X)
    assert [s[0] for s in seen] == list(range(1, model.n_iter_ + 1))
    for _, objective, params in seen[:3]:
        again = gmm.GaussianMixture(
            3,
            weights_init=params.weights,
            means_init=params.means,
            precisions_init=np.linalg.inv(params.covariances),
            max_iter=1,
            dtype=np.float32,
        )
        with pytest.warns(gmm.ConvergenceWarning):
            again.fit(X)
        assert again.history_[0] == pytest.approx(objective, rel=1e-6)
    plain = []
    gmm.GaussianMixture(3, random_state=0, callback=lambda i, v: plain.append(v)).fit(X)
    assert plain[0] == seen[0][1]
