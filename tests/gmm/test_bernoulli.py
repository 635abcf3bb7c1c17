"""gmm.BernoulliMixture against a naive EM written here, EM's invariants, and recovery."""

import json
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from gmm import BernoulliMixture

DIGITS = Path(__file__).resolve().parents[1] / "data" / "digits" / "digits_binary.npz"


def naive_em(X, weights, means, n_iter, a, b):
    """Textbook EM for a Bernoulli mixture (Bishop eqs. 9.56-9.60) with the Beta(a, b) MAP
    M-step, one row and one component at a time, in float64 probabilities (no logs)."""
    N, D = X.shape
    K = len(weights)
    history = []
    for _ in range(n_iter):
        R = np.zeros((N, K))
        loglik = 0.0
        for n in range(N):
            joint = [
                weights[k]
                * np.prod([means[k, d] if X[n, d] else 1.0 - means[k, d] for d in range(D)])
                for k in range(K)
            ]
            total = sum(joint)
            loglik += np.log(total)
            R[n] = np.array(joint) / total
        log_prior = sum(
            (a - 1) * np.log(means[k, d]) + (b - 1) * np.log(1 - means[k, d])
            for k in range(K)
            for d in range(D)
        )
        history.append((loglik + log_prior) / N)
        Nk = R.sum(axis=0)
        weights = Nk / N
        means = np.array(
            [
                [(R[:, k] @ X[:, d] + a - 1) / (Nk[k] + a + b - 2) for d in range(D)]
                for k in range(K)
            ]
        )
    return weights, means, history


def make_data(rng, n=2000):
    true_means = np.array(
        [
            [0.9] * 6 + [0.1] * 6,
            [0.1] * 6 + [0.9] * 6,
            [0.9, 0.1] * 6,
        ]
    )
    true_weights = np.array([0.5, 0.3, 0.2])
    z = rng.choice(3, size=n, p=true_weights)
    X = (rng.random((n, 12)) < true_means[z]).astype(np.uint8)
    return X, z, true_weights, true_means


def test_matches_naive_em_from_the_same_start():
    rng = np.random.default_rng(0)
    X, _, _, _ = make_data(rng, 150)
    K, seed = 3, 7
    start = np.random.default_rng(seed).uniform(0.25, 0.75, size=(K, X.shape[1]))
    w_ref, m_ref, h_ref = naive_em(X, np.full(K, 1 / K), start, 6, 2.0, 3.0)
    # Both report the objective of the parameters before each M-step, and both end with
    # the M-step of the last iteration (like scikit-learn) when they stop at max_iter.
    model = BernoulliMixture(
        K, init="random", prior=(2.0, 3.0), max_iter=6, tol=0.0, random_state=seed
    )
    with pytest.warns(Warning):
        model.fit(X)
    np.testing.assert_allclose(model.history_, h_ref, rtol=1e-10)
    np.testing.assert_allclose(model.means_, m_ref, rtol=1e-9)
    np.testing.assert_allclose(model.weights_, w_ref, rtol=1e-9)


def test_objective_never_decreases_and_responsibilities_sum_to_one():
    X = np.load(DIGITS)["X"]
    model = BernoulliMixture(10, init="random", max_iter=60, tol=0, random_state=1)
    with pytest.warns(Warning):
        model.fit(X)
    assert len(model.history_) > 10
    assert (np.diff(model.history_) >= -1e-12).all()
    R = model.predict_proba(X)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-12)
    assert ((model.means_ > 0) & (model.means_ < 1)).all()
    np.testing.assert_array_equal(model.predict(X), R.argmax(axis=1))


def test_weighted_equals_repeated_and_chunked_equals_unchunked():
    rng = np.random.default_rng(3)
    X, _, _, _ = make_data(rng, 300)
    w = rng.integers(0, 4, size=X.shape[0])
    opts = dict(init="random", max_iter=20, tol=0, random_state=5)
    with pytest.warns(Warning):
        weighted = BernoulliMixture(3, **opts).fit(X, sample_weight=w)
        repeated = BernoulliMixture(3, **opts).fit(np.repeat(X, w, axis=0))
        chunks = [(X[i : i + 37], w[i : i + 37]) for i in range(0, len(X), 37)]
        chunked = BernoulliMixture(3, **opts).fit(chunks)
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.history_, repeated.history_, rtol=1e-10)
    np.testing.assert_allclose(chunked.means_, weighted.means_, rtol=1e-10)
    np.testing.assert_allclose(chunked.weights_, weighted.weights_, rtol=1e-10)


def test_kmeans_init_is_deterministic_and_chunk_independent():
    X = np.load(DIGITS)["X"]
    a = BernoulliMixture(10, random_state=0).fit(X)
    b = BernoulliMixture(10, random_state=0).fit([(X[:500], None), (X[500:], None)])
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)  # sums in another order
    assert a.converged_


def test_recovers_known_parameters():
    rng = np.random.default_rng(11)
    X, z, weights, means = make_data(rng, 6000)
    model = BernoulliMixture(3, n_init=3, random_state=0).fit(X)
    best = min(permutations(range(3)), key=lambda p: np.abs(model.means_[list(p)] - means).sum())
    np.testing.assert_allclose(model.means_[list(best)], means, atol=0.03)
    np.testing.assert_allclose(model.weights_[list(best)], weights, atol=0.03)
    agree = (np.argsort(best)[model.predict(X)] == z).mean()
    assert agree > 0.95


def test_scores_sample_and_round_trip():
    rng = np.random.default_rng(2)
    X, _, _, _ = make_data(rng, 800)
    model = BernoulliMixture(3, random_state=0).fit(X)
    ll = model.score_samples(X)
    assert ll.shape == (800,) and (ll < 0).all()
    assert model.score(X) == pytest.approx(ll.mean())
    p = 3 * 12 + 2
    assert model.n_parameters() == p
    assert model.bic(X) == pytest.approx(-2 * ll.sum() + p * np.log(800))
    assert model.aic(X) == pytest.approx(-2 * ll.sum() + 2 * p)
    S, labels = model.sample(20000, random_state=1)
    assert S.shape == (20000, 12) and set(np.unique(S)) <= {0, 1}
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 20000, model.weights_, atol=0.02)
    np.testing.assert_allclose(S[labels == 0].mean(axis=0), model.means_[0], atol=0.05)
    again = BernoulliMixture.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(again.means_, model.means_)
    np.testing.assert_array_equal(again.score_samples(X), ll)
    with pytest.raises(ValueError, match="malformed"):
        BernoulliMixture.from_dict({**model.to_dict(), "means": [[1.0] * 12] * 3})


def test_bad_inputs_have_clear_messages():
    X = np.array([[0, 1], [1, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        BernoulliMixture(1).fit(np.array([[0, np.nan], [1, 1]]))
    with pytest.raises(ValueError, match=r"value 0\.5.*threshold"):
        BernoulliMixture(1).fit(np.array([[0, 0.5], [1, 1]]))
    with pytest.raises(ValueError, match="prior"):
        BernoulliMixture(1, prior=(0.5, 2)).fit(X)
    with pytest.raises(ValueError, match="not fitted"):
        BernoulliMixture(1).predict(X)
    with pytest.raises(ValueError, match="non-negative"):
        BernoulliMixture(1).fit(X, sample_weight=[1, -1])
    model = BernoulliMixture(1).fit(np.array([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="3 features but 2"):
        model.predict(np.zeros((1, 3)))
