"""Invariants of the EM fit that hold for every covariance type and every way of giving data.

Tolerances: "same results" comparisons are float64 fits from identical starting parameters
whose only difference is the order of floating-point additions (blocks summed in another
order, rows repeated instead of weighted); each EM iteration then loses a few ulps, so
1e-10 (relative to O(1) parameters) leaves ~5 orders of magnitude of margin over 15
iterations. Those comparisons stop EM *before* it converges (overlapping clusters,
``tol=0``, ``max_iter=15``, and both fits must have run all 15 iterations): at a converged
optimum the objective is flat to rounding, so where EM stops - and so the last ~1e-10 of the
parameters - is decided by rounding noise, not by the data. Identical inputs (memmap, same
seed) must give identical bytes.
"""

import json
import warnings
from itertools import pairwise

import numpy as np
import pytest

from gmm import ConvergenceWarning, GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]
INITS = ["kmeans", "k-means++", "random", "random_from_data"]


def three_blobs(seed=0, n=60, spread=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
    scales = np.array([[1.0, 0.5], [0.6, 1.2], [0.8, 0.8]]) * spread
    X = np.concatenate(
        [rng.normal(c, s, size=(n, 2)) for c, s in zip(centres, scales, strict=True)]
    )
    return X.astype(dtype)


def params(model):
    return (model.weights_, model.means_, np.asarray(model.covariances_))


def assert_same_params(a, b, rtol=1e-10, atol=1e-10):
    for x, y in zip(params(a), params(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_history_monotone(model):
    """EM never decreases the objective, except right after an iteration that reset a
    component: history_[j] is the objective at iteration j + 1, so a reset at iteration r
    may lower history_[r] below history_[r - 1]. The driver keeps the better parameters
    whenever rounding would make a step go down, so the check is exact (no tolerance)."""
    h = np.asarray(model.history_)
    assert h.ndim == 1 and len(h) == model.n_iter_ >= 1
    assert np.isfinite(h).all()
    resets = set(model.reset_iterations_)
    for j in range(1, len(h)):
        if j not in resets:
            assert h[j] >= h[j - 1], f"objective decreased at iteration {j + 1}: {h}"
    assert model.lower_bound_ == h[-1]


def assert_same_fit(a, b):
    """Two fits that differ only in the order of their sums (see the module doc)."""
    assert a.n_iter_ == b.n_iter_ == a.max_iter, "EM stopped early: the comparison is moot"
    assert_same_params(a, b)
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-12)


def fit(X, sample_weight=None, **kw):
    kw.setdefault("n_components", 3)
    kw.setdefault("dtype", np.float64)
    kw.setdefault("random_state", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**kw).fit(X, sample_weight=sample_weight)


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("init", INITS)
def test_history_monotone_and_responsibilities_sum_to_one(covariance_type, dtype, init):
    X = three_blobs(seed=1)
    model = fit(X, covariance_type=covariance_type, dtype=dtype, init=init, tol=1e-8, max_iter=200)
    assert_history_monotone(model)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert proba.dtype == dtype
    assert (proba >= 0).all()
    # float32 responsibilities are rounded to 2**-24 each: 1e-5 on a sum of 3.
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_array_equal(model.predict(X), np.argmax(proba, axis=1))
    np.testing.assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    for a in params(model):
        assert np.isfinite(a).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    X = three_blobs(seed=2, spread=1.5)
    w = np.random.default_rng(3).integers(0, 5, size=len(X))
    # Same starting means for both, so that only the EM passes are compared (a random
    # initialisation draws from the rows, whose number differs).
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=15, means_init=X[[0, 70, 130]])
    weighted = fit(X, w, **kw)
    repeated = fit(np.repeat(X, w, axis=0), **kw)
    assert_same_fit(weighted, repeated)
    np.testing.assert_allclose(
        weighted.bic(X, w), repeated.bic(np.repeat(X, w, axis=0)), rtol=1e-12
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
def test_chunked_equals_unchunked(covariance_type, init):
    X = three_blobs(seed=4, spread=1.5)
    w = np.random.default_rng(5).uniform(0.0, 3.0, size=len(X))
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=15, init=init)
    whole = fit(X, w, **kw)
    # A tiny budget: about 7 rows per E-step block (1 KiB), so 26+ blocks per pass.
    tiny = fit(X, w, chunk_mib=0.001, **kw)
    # A list of (X, w) pairs split at odd places, including an empty chunk.
    cuts = [0, 1, 8, 8, 57, 101, 102, len(X)]
    pairs = [(X[a:b], w[a:b]) for a, b in pairwise(cuts)]
    listed = fit(pairs, **kw)
    for other in (tiny, listed):
        assert_same_fit(whole, other)
    # Prediction from a chunk source too.
    np.testing.assert_allclose(whole.score_samples(X), listed.score_samples(pairs), rtol=1e-12)
    np.testing.assert_array_equal(whole.predict(X), listed.predict(pairs))


def test_chunked_equals_unchunked_when_init_samples():
    """Above 20000 weighted rows k-means runs on a sample; its rows are located by global
    cumulative weight, so the sample (and the fit) must not depend on the chunking."""
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(c, 1.0, size=(11000, 2)) for c in (0.0, 6.0)])
    w = rng.integers(0, 3, size=len(X)).astype(np.float64)
    kw = dict(n_components=2, covariance_type="diag", tol=0.0, max_iter=3)
    whole = fit(X, w, **kw)
    cuts = [0, 4097, 4098, 16000, len(X)]
    listed = fit([(X[a:b], w[a:b]) for a, b in pairwise(cuts)], **kw)
    assert_same_params(whole, listed)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data"])
def test_zero_weights_equal_removed_rows(covariance_type, init):
    X = three_blobs(seed=7, spread=1.5)
    w = np.random.default_rng(8).uniform(0.5, 2.0, size=len(X))
    w[::3] = 0.0
    # Zero-weight rows far away: any leak of them into a statistic would show.
    X[::3] += 100.0
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=15, init=init)
    with_zeros = fit(X, w, **kw)
    removed = fit(X[w > 0], w[w > 0], **kw)
    assert_same_fit(with_zeros, removed)
    np.testing.assert_allclose(
        with_zeros.score(X, w), removed.score(X[w > 0], w[w > 0]), rtol=1e-12
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_zero_weights_equal_removed_rows_random_init(covariance_type):
    X = three_blobs(seed=7, spread=1.5)
    w = np.random.default_rng(8).uniform(0.5, 2.0, size=len(X))
    w[::3] = 0.0
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=15, init="random")
    assert_same_fit(fit(X, w, **kw), fit(X[w > 0], w[w > 0], **kw))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_agrees_with_float64(covariance_type):
    # Well separated: both precisions converge to the same optimum, which they locate to
    # float32 accuracy; 1e-3 relative (a few hundred float32 ulps, accumulated over the
    # iterations and the stopping point at tol) is the expected agreement.
    X = three_blobs(seed=9, spread=0.5)
    kw = dict(covariance_type=covariance_type, tol=1e-7, max_iter=300)
    a = fit(X, dtype=np.float32, **kw)
    b = fit(X, dtype=np.float64, **kw)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-3)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-5)
    np.testing.assert_allclose(a.score_samples(X), b.score_samples(X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
def test_same_seed_same_bytes(covariance_type, init):
    X = three_blobs(seed=10).astype(np.float32)
    kw = dict(covariance_type=covariance_type, init=init, dtype=np.float32, random_state=42)
    a, b = fit(X, **kw), fit(X, **kw)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    # A Generator is used as is: equal states, equal results.
    c = fit(X, **{**kw, "random_state": np.random.default_rng(42)})
    d = fit(X, **{**kw, "random_state": np.random.default_rng(42)})
    assert c.to_dict() == d.to_dict()


@pytest.mark.parametrize("init", ["k-means++", "random", "random_from_data"])
def test_different_seeds_start_differently(init):
    X = three_blobs(seed=11)
    kw = dict(init=init, max_iter=1, tol=0.0)
    a, b = fit(X, random_state=1, **kw), fit(X, random_state=2, **kw)
    assert not np.array_equal(a.means_, b.means_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_memmap_equals_in_memory(covariance_type, tmp_path):
    X = three_blobs(seed=12).astype(np.float32)
    mm = np.memmap(tmp_path / "X.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(tmp_path / "X.f32", dtype=np.float32, mode="r", shape=X.shape)
    w = np.arange(len(X)) % 4
    kw = dict(covariance_type=covariance_type, chunk_mib=0.001)
    a, b = fit(mm, w, **kw), fit(X, w, **kw)
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.predict_proba(mm), b.predict_proba(X))
    np.testing.assert_array_equal(a.score_samples(mm), b.score_samples(X))


def test_input_arrays_not_modified():
    X = three_blobs(seed=13)
    w = np.ones(len(X))
    X0, w0 = X.copy(), w.copy()
    means = X[[0, 70, 130]].copy()
    model = fit(X, w, means_init=means)
    model.predict_proba(X)
    model.score(X, w)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(means, X0[[0, 70, 130]])


@pytest.mark.parametrize("X_dtype", [np.float32, np.float64, np.int64])
def test_any_real_input_dtype(X_dtype):
    X = (three_blobs(seed=14) * 10).astype(X_dtype)
    model = fit(X, covariance_type="diag", reg_covar=1e-3)
    assert model.means_.dtype == np.float64
    assert np.isfinite(model.score_samples(X)).all()


def test_fit_predict_equals_fit_then_predict():
    X = three_blobs(seed=15)
    a = GaussianMixture(3, random_state=0, dtype=np.float64).fit_predict(X)
    b = GaussianMixture(3, random_state=0, dtype=np.float64).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# n_init and callback


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_n_init_keeps_best_run(init):
    X = three_blobs(seed=16, spread=2.0)
    kw = dict(init=init, tol=1e-4, max_iter=60)
    best = fit(X, n_init=4, random_state=np.random.default_rng(3), **kw)
    # One Generator shared by four single runs draws what the four inits of n_init=4 draw.
    rng = np.random.default_rng(3)
    runs = [fit(X, n_init=1, random_state=rng, **kw) for _ in range(4)]
    bounds = [r.lower_bound_ for r in runs]
    assert best.lower_bound_ == max(bounds)
    winner = runs[int(np.argmax(bounds))]
    assert_same_params(best, winner, rtol=0, atol=0)
    np.testing.assert_array_equal(best.history_, winner.history_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_callback_once_per_iteration_with_history(covariance_type):
    calls = []
    X = three_blobs(seed=17)
    model = fit(
        X, covariance_type=covariance_type, tol=1e-6, callback=lambda i, v: calls.append((i, v))
    )
    assert [i for i, _ in calls] == list(range(1, model.n_iter_ + 1))
    np.testing.assert_array_equal([v for _, v in calls], model.history_)


def test_callback_sees_every_run_of_n_init():
    calls = []
    X = three_blobs(seed=18)
    model = fit(X, n_init=3, init="random", tol=1e-4, callback=lambda i, v: calls.append(i))
    assert calls.count(1) == 3
    assert len(calls) >= model.n_iter_


def test_converged_flag_and_warning():
    X = three_blobs(seed=19)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = GaussianMixture(3, tol=0.0, max_iter=2, random_state=0).fit(X)
    assert not model.converged_ and model.n_iter_ == 2
    model = fit(X, tol=1e-3, max_iter=500)
    assert model.converged_ and model.n_iter_ < 500
    # Converged means the last change was below tol.
    assert abs(model.history_[-1] - model.history_[-2]) < 1e-3
