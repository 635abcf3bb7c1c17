"""Degenerate data and collapsing components: never an exception, always finite parameters.

A component whose support falls below D + 1 points, or whose covariance becomes singular,
is reset (restarted at a poorly explained row with the data's covariance) and counted in
``n_resets_``; the objective may drop right after such an iteration, and only there.
"""

import json
import warnings

import numpy as np
import pytest

from gmm import ConvergenceWarning, FewDistinctPointsWarning, GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]
INITS = ["kmeans", "k-means++", "random", "random_from_data"]
#: Inits that look at the rows and so can tell there are too few distinct ones.
SEEDING_INITS = ["kmeans", "k-means++", "random_from_data"]


def assert_healthy(model, X, sample_weight=None):
    """Finite parameters, PD covariances, proper weights and responsibilities, a history
    that only drops right after a reset."""
    K = model.n_components
    for a in (model.weights_, model.means_, model.covariances_, model.precisions_cholesky_):
        assert np.isfinite(a).all()
    assert (model.weights_ >= 0).all()
    np.testing.assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    if model.covariance_type in ("full", "tied"):
        assert (np.linalg.eigvalsh(model.covariances_) > 0).all()
    else:
        assert (np.asarray(model.covariances_) > 0).all()
    r = model.predict_proba(X)
    assert r.shape == (len(X), K) and np.isfinite(r).all()
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(model.score_samples(X)).all()
    assert np.isfinite(model.score(X, sample_weight))
    assert isinstance(model.n_resets_, int) and model.n_resets_ >= 0
    assert len(model.reset_iterations_) <= model.n_resets_
    assert model.n_resets_ <= 3 * K  # at most max_resets=3 per component
    h = model.history_
    assert np.isfinite(h).all() and len(h) == model.n_iter_
    for j in range(1, len(h)):
        if j not in model.reset_iterations_:
            assert h[j] >= h[j - 1], (j, h, model.reset_iterations_)


def fit_quietly(X, sample_weight=None, **kw):
    kw.setdefault("random_state", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FewDistinctPointsWarning)
        return GaussianMixture(**kw).fit(X, sample_weight=sample_weight)


THREE_POINTS = np.repeat(np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]]), 20, axis=0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", SEEDING_INITS)
def test_fewer_distinct_points_than_components(covariance_type, init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(FewDistinctPointsWarning, match="only 3 distinct point"):
            model = GaussianMixture(
                6, covariance_type=covariance_type, init=init, random_state=0
            ).fit(THREE_POINTS)
    assert_healthy(model, THREE_POINTS)
    # Every row is explained by a component sitting on it: each distinct point ends with
    # (at least) its share of the weight, whichever components hold it.
    labels = model.predict(THREE_POINTS)
    for a in range(0, 60, 20):
        assert len(set(labels[a : a + 20])) == 1


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fewer_distinct_points_resets_are_counted(covariance_type):
    # With k-means, three of the six clusters are empty from the start: their components
    # have no support and are reset (and counted) until their resets run out.
    model = fit_quietly(THREE_POINTS, n_components=6, covariance_type=covariance_type)
    assert model.n_resets_ > 0
    assert model.reset_iterations_ and model.reset_iterations_[0] == 1
    assert_healthy(model, THREE_POINTS)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
def test_fewer_distinct_points_any_init_never_raises(covariance_type, init):
    for dtype in (np.float32, np.float64):
        model = fit_quietly(
            THREE_POINTS, n_components=6, covariance_type=covariance_type, init=init, dtype=dtype
        )
        assert_healthy(model, THREE_POINTS)


def test_random_from_data_starts_on_distinct_points(monkeypatch):
    """Rows repeated many times must not make random_from_data start two components on
    the same point while there are enough distinct points (nor warn that there are not)."""
    from gmm import init as gmm_init

    starts = []
    original = gmm_init._random_from_data

    def spy(*args):
        params = original(*args)
        starts.append(params.means.copy())
        return params

    monkeypatch.setattr(gmm_init, "_random_from_data", spy)
    X = np.repeat(np.arange(8.0).reshape(4, 2), [1, 1, 1, 200], axis=0)
    for seed in range(10):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FewDistinctPointsWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            GaussianMixture(4, init="random_from_data", max_iter=1, random_state=seed).fit(X)
        assert len(np.unique(starts[-1], axis=0)) == 4


def outlier_data():
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [rng.normal(0.0, 1.0, (100, 2)), rng.normal(6.0, 1.0, (100, 2)), [[30.0, -30.0]]]
    )
    return X


PRECISIONS = {
    "full": np.array([np.eye(2), np.eye(2), 1e4 * np.eye(2)]),
    "diag": np.array([[1.0, 1.0], [1.0, 1.0], [1e4, 1e4]]),
    "spherical": np.array([1.0, 1.0, 1e4]),
}


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_component_on_isolated_point_is_reset(covariance_type):
    X = outlier_data()
    model = fit_quietly(
        X,
        n_components=3,
        covariance_type=covariance_type,
        dtype=np.float64,
        means_init=[[0.0, 0.0], [6.0, 6.0], [30.0, -30.0]],
        precisions_init=PRECISIONS[covariance_type],
        max_iter=50,
    )
    # The third component holds one point (support 1 < D + 1 = 3) after the first E-step.
    assert model.n_resets_ >= 1
    assert model.reset_iterations_[0] == 1
    assert_healthy(model, X)
    # The reset and counts survive a JSON round trip.
    back = GaussianMixture.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back.n_resets_ == model.n_resets_
    assert back.reset_iterations_ == model.reset_iterations_


def test_component_on_isolated_point_without_user_precisions_is_not_a_spike():
    """A k-means cluster of one row starts broad (the data's covariance), not as a spike."""
    X = outlier_data()
    model = fit_quietly(
        X,
        n_components=3,
        means_init=[[0.0, 0.0], [6.0, 6.0], [30.0, -30.0]],
        dtype=np.float64,
        max_iter=1,
        tol=0.0,
    )
    assert_healthy(model, X)
    assert np.linalg.eigvalsh(model.covariances_).min() > 1e-3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_and_duplicated_columns_never_raise(covariance_type, init, dtype):
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(0, 1, 50), rng.normal(5, 1, 50)])
    X = np.column_stack([a, np.full(100, 7.0), a])  # a constant and a duplicated column
    X = np.concatenate([X, X[:30]])  # duplicated rows
    model = fit_quietly(
        X, n_components=3, covariance_type=covariance_type, init=init, dtype=dtype, reg_covar=1e-6
    )
    assert_healthy(model, X)
    # The constant column is fitted exactly, with the regularisation as its variance.
    np.testing.assert_allclose(model.means_[:, 1], 7.0, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("K", [1, 3])
def test_single_distinct_point(covariance_type, K):
    X = np.tile([[2.0, -1.0, 0.5]], (40, 1))
    model = fit_quietly(X, n_components=K, covariance_type=covariance_type, reg_covar=1e-4)
    assert_healthy(model, X)
    np.testing.assert_allclose(model.means_, np.tile([2.0, -1.0, 0.5], (K, 1)), atol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fewer_rows_than_components(covariance_type):
    X = np.array([[0.0, 1.0], [2.0, 0.5]])
    model = fit_quietly(X, n_components=4, covariance_type=covariance_type, reg_covar=1e-3)
    assert_healthy(model, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_small_weights_do_not_count_as_lost_support(covariance_type):
    """Weights scaled by 1e-3 describe the same data: the same fit, no extra resets."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(5, 1, (60, 2))])
    w = rng.uniform(0.5, 1.5, len(X))
    kw = dict(
        n_components=2,
        covariance_type=covariance_type,
        dtype=np.float64,
        tol=0.0,
        max_iter=10,
        means_init=[[0.0, 0.0], [5.0, 5.0]],
    )
    a = fit_quietly(X, w, **kw)
    b = fit_quietly(X, w * 1e-3, **kw)
    assert a.n_resets_ == b.n_resets_ == 0
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)


def test_collinear_component_is_reset_or_regularised():
    """Points on a line inside a 2-D cloud: a component may sit on the line with a singular
    covariance; it must be reset (or kept PD by reg_covar), never raise."""
    rng = np.random.default_rng(3)
    t = rng.uniform(-1, 1, 40)
    line = np.column_stack([t, 2 * t]) + 8.0
    X = np.concatenate([rng.normal(0, 1, (200, 2)), line])
    for reg in (0.0, 1e-9, 1e-6):
        model = fit_quietly(
            X, n_components=2, reg_covar=reg, dtype=np.float64, means_init=[[0.0, 0.0], [8.0, 8.0]]
        )
        assert_healthy(model, X)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_resets_use_distinct_rows(covariance_type):
    rng = np.random.default_rng(4)
    base = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(6, 1, (20, 2))])
    kw = dict(
        n_components=4,
        covariance_type=covariance_type,
        dtype=np.float64,
        tol=0.0,
        # Two components far from every row: no support, reset after iteration 1.
        means_init=[[0.0, 0.0], [6.0, 6.0], [100.0, 100.0], [100.0, -100.0]],
    )
    repeated = fit_quietly(np.repeat(base, 5, axis=0), max_iter=1, **kw)
    assert repeated.n_resets_ == 2
    assert len(np.unique(repeated.means_[2:], axis=0)) == 2
    # Deduplication is exact: rows weighted by their counts fit like the repeated rows.
    weighted = fit_quietly(base, np.full(len(base), 5.0), max_iter=10, **kw)
    repeated = fit_quietly(np.repeat(base, 5, axis=0), max_iter=10, **kw)
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-8)


def _saturated_rows(rng):
    """Photo-like rows: three spread clusters and a third of the rows exactly equal and far
    from the mean (clipped pixels, e.g. pure black in CIELAB)."""
    spread = [
        rng.normal(centre, scale, size=(6000, 3))
        for centre, scale in (
            ([60.0, 10.0, 20.0], 6.0),
            ([40.0, -20.0, 5.0], 4.0),
            ([80.0, 0.0, -30.0], 8.0),
        )
    ]
    return np.vstack([np.zeros((9000, 3)), *spread])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_identical_rows_in_float32_are_not_a_collapse(covariance_type):
    """A cluster of identical rows with reg_covar > 0 is a bounded, legitimate component:
    float32 rounding of its scatter must not make it look singular (it used to be reset
    again and again, the objective dropping each time). The fit matches float64's."""
    X = _saturated_rows(np.random.default_rng(0))
    fits = {}
    for dtype in (np.float32, np.float64):
        model = GaussianMixture(
            4, covariance_type=covariance_type, random_state=0, dtype=dtype, max_iter=200
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            model.fit(X)
        assert model.n_resets_ == 0, dtype
        assert (np.diff(model.history_) >= -1e-6 * abs(model.history_[-1])).all(), dtype
        assert_healthy(model, X)
        fits[dtype] = model
    order = {d: np.argsort(m.means_[:, 0]) for d, m in fits.items()}
    np.testing.assert_allclose(
        fits[np.float32].means_[order[np.float32]],
        fits[np.float64].means_[order[np.float64]],
        atol=0.05,
    )
    # The identical rows are one component with (almost) no spread in float32 too.
    spike = fits[np.float32].means_[order[np.float32][0]]
    np.testing.assert_allclose(spike, 0.0, atol=1e-3)
