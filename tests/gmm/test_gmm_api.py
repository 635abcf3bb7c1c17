"""The estimator's surface: validation errors, information criteria, sampling, persistence."""

import json
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmm import (
    ConvergenceWarning,
    GaussianMixture,
    IterableSource,
    full_covariances,
    n_parameters,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]


def two_blobs(seed=0, n=80, D=2):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, (n, D)), rng.normal(5.0, 0.7, (n, D))])


def fitted(covariance_type="full", X=None, **kw):
    X = two_blobs() if X is None else X
    kw.setdefault("random_state", 0)
    kw.setdefault("dtype", np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(2, covariance_type=covariance_type, **kw).fit(X)


# ---------------------------------------------------------------------------------------
# Data errors


@pytest.mark.parametrize(
    ("X", "match"),
    [
        # NaN is a missing value (see test_gmm_missing.py); infinity is an error.
        (np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 4.0]]), "contains infinity"),
        (np.array([[0.0, 1.0], [-np.inf, 2.0], [3.0, 4.0]]), "contains infinity"),
        (np.arange(5.0), r"2-D array.*reshape\(-1, 1\)"),
        (np.zeros((4, 2, 2)), "2-D array"),
        (np.empty((0, 2)), "X is empty"),
        (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
        (np.ones((3, 2), dtype=complex), "real numbers"),
    ],
)
def test_bad_data(X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(1).fit(X)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.array([1.0, -1.0, 1.0, 1.0]), "non-negative"),
        (np.array([1.0, np.nan, 1.0, 1.0]), "NaN or infinity"),
        (np.array([1.0, np.inf, 1.0, 1.0]), "NaN or infinity"),
        (np.ones(3), r"sample_weight must have shape \(4,\).*got \(3,\)"),
        (np.ones((4, 1)), r"sample_weight must have shape \(4,\)"),
        (np.zeros(4), "every sample_weight is zero"),
    ],
)
def test_bad_weights(w, match):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(1).fit(X, sample_weight=w)


def test_constant_column_without_regularisation():
    X = np.column_stack([np.arange(10.0), np.ones(10)])
    with pytest.raises(ValueError, match=r"singular.*reg_covar > 0"):
        GaussianMixture(1, reg_covar=0.0).fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regularisation_negligible_at_the_data_scale(covariance_type, dtype):
    # Two rows in 2-D at scale 1e6: a rank-1 covariance of ~1e12, to which reg_covar=1e-6 adds
    # less than its rounding. No covariance is positive definite, not even the data's one
    # that collapsed components restart with (this used to escape as an internal
    # SingularCovarianceError from the M-step).
    X = np.array([[1.27e6, -5.56e5], [3.1e5, 2.2e6]])
    model = GaussianMixture(1, covariance_type=covariance_type, dtype=dtype)
    with pytest.raises(
        ValueError,
        match=r"singular at the data's scale.*set reg_covar to "
        r"about 1e-6 times the data's variance \(1.06e\+12\)",
    ):
        model.fit(X)
    # A regularisation in the data's units fits.
    model = GaussianMixture(1, covariance_type=covariance_type, dtype=dtype, reg_covar=1e6)
    assert np.isfinite(model.fit(X).score_samples(X)).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_column_with_prior_but_no_regularisation(covariance_type):
    """The default prior's scale is the data's covariance, singular too: a prior alone does
    not make reg_covar=0 safe (this used to crash in the M-step). One variance per
    component (spherical) is not singular, and fits."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=50), np.ones(50)])
    model = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0, prior="default")
    if covariance_type == "spherical":
        assert np.isfinite(model.fit(X).score_samples(X)).all()
        return
    with pytest.raises(ValueError, match=r"reg_covar=0 is singular at the data's scale"):
        model.fit(X)


# ---------------------------------------------------------------------------------------
# Option errors


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_components": 0}, "n_components must be >= 1"),
        ({"n_components": 1.5}, "n_components must be an integer"),
        ({"n_components": True}, "n_components must be an integer"),
        ({"tol": -1e-3}, r"tol must be a finite number >= 0"),
        ({"tol": float("nan")}, r"tol must be a finite number"),
        ({"tol": "small"}, "tol must be a real number"),
        ({"reg_covar": -1.0}, "reg_covar must be a finite number >= 0"),
        ({"reg_covar": float("inf")}, "reg_covar must be a finite number"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"n_init": 0}, "n_init must be >= 1"),
        ({"covariance_type": "banana"}, "covariance_type must be one of full, tied, diag"),
        ({"init": "kmeans+++"}, "init must be one of kmeans, k-means\\+\\+, random"),
        ({"chunk_mib": 0}, r"chunk_mib must be a finite number > 0"),
        ({"chunk_mib": -4}, r"chunk_mib must be a finite number > 0"),
        ({"dtype": np.float16}, "dtype must be float32 or float64"),
        ({"random_state": "seed"}, "random_state must be None, an int seed"),
        ({"callback": 3}, "callback must be callable"),
        (
            {"prior": {"mean": [0.0, 0.0], "strength": 1.0}},
            r"unknown prior key\(s\) \['strength'\]",
        ),
        ({"prior": "mclust"}, "prior must be None, 'default' or a dict"),
        ({"prior": 3}, "prior must be None, 'default' or a dict"),
        ({"prior": {"mean": [0.0]}}, r"prior\['mean'\] must be 2 finite numbers"),
        ({"prior": {"shrinkage": 0.0}}, r"prior\['shrinkage'\] must be a finite number > 0"),
        ({"prior": {"dof": 0.5}}, r"prior\['dof'\] must be a finite number > 1"),
        ({"prior": {"scale": [[1.0, 2.0], [2.0, 1.0]]}}, r"prior\['scale'\] must be positive"),
        ({"prior": {"scale": np.eye(3)}}, r"prior\['scale'\] must be a symmetric \(2, 2\)"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**{"n_components": 2, **options}).fit(two_blobs())


@pytest.mark.parametrize(
    ("covariance_type", "scale", "match"),
    [
        ("diag", [1.0, -1.0], r"prior\['scale'\] must be a positive scalar or 2 positive"),
        ("tied_diag", [1.0, 1.0, 1.0], r"prior\['scale'\] must be a positive scalar or 2"),
        ("spherical", [1.0, 1.0], r"prior\['scale'\] must be a positive scalar for spherical"),
        ("spherical", 0.0, r"prior\['scale'\] must be a positive scalar for spherical"),
        ("full", [[1.0, np.nan], [np.nan, 1.0]], r"prior\['scale'\] must be finite"),
    ],
)
def test_bad_prior_scale(covariance_type, scale, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type=covariance_type, prior={"scale": scale}).fit(two_blobs())


def good_precisions(covariance_type, K=2, D=2):
    return {
        "full": np.broadcast_to(np.eye(D), (K, D, D)),
        "tied": np.eye(D),
        "diag": np.ones((K, D)),
        "tied_diag": np.ones(D),
        "spherical": np.ones(K),
    }[covariance_type]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"weights_init": [1.0]}, "weights_init must be 2 non-negative numbers"),
        ({"weights_init": [1.5, -0.5]}, "weights_init must be 2 non-negative numbers"),
        ({"weights_init": [0.5, np.nan]}, "weights_init must be 2 non-negative numbers"),
        ({"weights_init": [0.2, 0.2]}, "weights_init must sum to 1; they sum to 0.4"),
        ({"means_init": np.zeros((3, 2))}, r"means_init must be a finite array of shape \(2, 2\)"),
        ({"means_init": np.zeros(4)}, r"means_init must be a finite array of shape \(2, 2\)"),
        ({"means_init": [[0, 0], [np.inf, 0]]}, "means_init must be a finite array"),
    ],
)
def test_bad_user_init(options, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, **options).fit(two_blobs())


@pytest.mark.filterwarnings("error::RuntimeWarning")  # rejected before any sqrt of < 0
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bad_precisions_init(covariance_type):
    good = good_precisions(covariance_type)
    wrong_shape = np.ones((*good.shape, 1))
    with pytest.raises(
        ValueError,
        match=rf"precisions_init for covariance_type="
        rf"'{covariance_type}' must be a finite array of shape",
    ):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=wrong_shape).fit(
            two_blobs()
        )
    not_pd = -np.array(good)  # negative definite / negative precisions
    with pytest.raises(ValueError, match="precisions_init must be positive definite"):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=not_pd).fit(two_blobs())
    zero = 0 * np.array(good)
    with pytest.raises(ValueError, match="precisions_init must be positive definite"):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=zero).fit(two_blobs())
    nan = np.array(good, dtype=float)
    nan.flat[0] = np.nan
    with pytest.raises(ValueError, match=r"precisions_init .* must be a finite array"):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=nan).fit(two_blobs())


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_asymmetric_precisions_init(covariance_type):
    # Cholesky reads one triangle only: without a check the other would be silently ignored.
    P = np.array([[2.0, 1.0], [0.0, 2.0]])
    if covariance_type == "full":
        P = np.array([P, np.eye(2)])
    with pytest.raises(ValueError, match="precisions_init must be symmetric"):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=P).fit(two_blobs())


def test_indefinite_full_precisions_init():
    P = np.array([[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])  # eigenvalues 3, -1
    with pytest.raises(ValueError, match="precisions_init must be positive definite"):
        GaussianMixture(2, precisions_init=P).fit(two_blobs())


# ---------------------------------------------------------------------------------------
# Chunk sources


def test_one_shot_generator_is_refused():
    X = two_blobs()
    gen = ((X[i : i + 10], None) for i in range(0, len(X), 10))
    with pytest.raises(ValueError, match=r"re-iterable.*one-shot iterator or generator"):
        GaussianMixture(2).fit(gen)
    with pytest.raises(ValueError, match="re-iterable"):
        GaussianMixture(2).fit(iter([(X, None)]))


class Reopening:
    """A re-iterable chunk source: every iter() starts again (like files reopened)."""

    def __init__(self, X, step):
        self.X, self.step = X, step

    def __iter__(self):
        for a in range(0, len(self.X), self.step):
            yield self.X[a : a + self.step], None


def test_reiterable_object_is_accepted():
    X = two_blobs()
    a = fitted(X=Reopening(X, 13))
    b = fitted(X=X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_array_equal(a.predict(Reopening(X, 7)), b.predict(X))


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ([(np.ones((3, 2)), None), (np.ones((3, 3)), None)], "3 features but 2 were expected"),
        ([(np.ones((3, 2)), None), (np.full((3, 2), np.inf), None)], "contains infinity"),
        ([(np.ones((3, 2)), np.ones(3)), (np.ones((3, 2)), -np.ones(3))], "non-negative"),
        ([(np.ones((3, 2)), np.ones(2))], r"sample_weight must have shape \(3,\)"),
        (Reopening(np.empty((0, 2)), 5), "yielded no chunks"),
    ],
)
def test_bad_chunk_sources(source, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(1, reg_covar=1e-3).fit(source)


def test_chunk_not_a_pair():
    X = two_blobs()
    with pytest.raises(ValueError, match=r"chunk 1 .* not an \(X_chunk, w_chunk\) pair"):
        GaussianMixture(1).fit(IterableSource([(X, None), X]))


def test_weights_beside_a_chunk_source_are_refused():
    X = two_blobs()
    with pytest.raises(ValueError, match="inside its \\(X, w\\) pairs"):
        GaussianMixture(1).fit([(X, None)], sample_weight=np.ones(len(X)))


# ---------------------------------------------------------------------------------------
# Errors of a fitted (or unfitted) model


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X: m.predict(X),
        lambda m, X: m.predict_proba(X),
        lambda m, X: m.score_samples(X),
        lambda m, X: m.score(X),
        lambda m, X: m.bic(X),
        lambda m, X: m.aic(X),
        lambda m, X: m.icl(X),
        lambda m, X: m.sample(3),
        lambda m, X: m.to_dict(),
        lambda m, X: m.n_parameters(),
        lambda m, X: m.precisions_,
    ],
)
def test_not_fitted(call):
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\(X\) first"):
        call(GaussianMixture(2), two_blobs())


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X: m.predict(X),
        lambda m, X: m.predict_proba(X),
        lambda m, X: m.score_samples(X),
        lambda m, X: m.score(X),
        lambda m, X: m.bic(X),
    ],
)
def test_wrong_data_at_predict(call):
    model = fitted()
    with pytest.raises(ValueError, match="has 3 features but 2 were expected"):
        call(model, np.ones((4, 3)))
    with pytest.raises(ValueError, match="contains infinity"):
        call(model, np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="2-D array"):
        call(model, np.ones(4))


def test_score_without_weight():
    model = fitted()
    with pytest.raises(ValueError, match="no rows"):
        model.score(np.empty((0, 2)))
    with pytest.raises(ValueError, match="no rows"):
        model.bic(np.ones((3, 2)), np.zeros(3))


def test_predict_empty_gives_empty():
    model = fitted()
    assert model.predict(np.empty((0, 2))).shape == (0,)
    assert model.predict_proba(np.empty((0, 2))).shape == (0, 2)


def test_sample_bad_count():
    with pytest.raises(ValueError, match="n_samples must be >= 0"):
        fitted().sample(-1)


# ---------------------------------------------------------------------------------------
# Information criteria


def expected_n_parameters(covariance_type, K, D):
    cov = {
        "full": K * D * (D + 1) / 2,
        "tied": D * (D + 1) / 2,
        "diag": K * D,
        "tied_diag": D,
        "spherical": K,
    }[covariance_type]
    return int((K - 1) + K * D + cov)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("K", "D"), [(1, 1), (2, 3), (4, 2)])
def test_n_parameters(covariance_type, K, D):
    assert n_parameters(covariance_type, K, D) == expected_n_parameters(covariance_type, K, D)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_criteria_formulas(covariance_type, weighted):
    X = two_blobs(seed=1, D=3)
    w = np.random.default_rng(2).uniform(0.0, 4.0, len(X)) if weighted else np.ones(len(X))
    model = fitted(covariance_type, X=X)
    K, D = model.means_.shape
    p = expected_n_parameters(covariance_type, K, D)
    assert model.n_parameters() == p
    loglik = w @ model.score_samples(X)
    N = w.sum()
    r = model.predict_proba(X)
    entropy = -w @ np.sum(r * np.log(np.where(r > 0, r, 1.0)), axis=1)
    sw = w if weighted else None
    # rtol 1e-10: the same numbers summed in another order.
    np.testing.assert_allclose(model.score(X, sw), loglik / N, rtol=1e-10)
    np.testing.assert_allclose(model.bic(X, sw), -2 * loglik + p * np.log(N), rtol=1e-10)
    np.testing.assert_allclose(model.aic(X, sw), -2 * loglik + 2 * p, rtol=1e-10)
    np.testing.assert_allclose(
        model.icl(X, sw), -2 * loglik + p * np.log(N) + 2 * entropy, rtol=1e-10
    )
    assert model.icl(X, sw) >= model.bic(X, sw)


def test_bic_prefers_the_true_number_of_components():
    X = np.concatenate([two_blobs(seed=3), two_blobs(seed=4) + np.array([12.0, 0.0])])  # 4 blobs
    bics = [GaussianMixture(k, random_state=0, dtype=np.float64).fit(X).bic(X) for k in range(1, 7)]
    assert int(np.argmin(bics)) + 1 == 4


# ---------------------------------------------------------------------------------------
# sample()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample(covariance_type):
    X = np.concatenate([two_blobs(seed=5), np.random.default_rng(6).normal(-4, 0.5, (50, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Y, labels = model.sample(5, random_state=1)
    assert Y.shape == (5, 2) and labels.shape == (5,)
    assert model.sample(0)[0].shape == (0, 2)
    # Reproducible with a seed; another seed draws other rows.
    Y1, l1 = model.sample(100, random_state=7)
    Y2, l2 = model.sample(100, random_state=7)
    np.testing.assert_array_equal(Y1, Y2)
    np.testing.assert_array_equal(l1, l2)
    assert not np.array_equal(Y1, model.sample(100, random_state=8)[0])

    n = 120_000
    Y, labels = model.sample(n, random_state=np.random.default_rng(9))
    K, D = model.means_.shape
    assert labels.min() >= 0 and labels.max() < K
    # Label proportions: binomial standard error <= sqrt(0.25 / n) = 0.0015; allow 5 se.
    np.testing.assert_allclose(np.bincount(labels, minlength=K) / n, model.weights_, atol=0.0075)
    covs = full_covariances(covariance_type, model.covariances_, K, D)
    for k in range(K):
        Yk = Y[labels == k]
        sd = np.sqrt(np.diag(covs[k]))
        # Mean: standard error sd / sqrt(n_k); allow 5 se. Covariance: the standard error of
        # a sample covariance entry is about sd_i sd_j sqrt(2 / n_k); allow 5 se.
        se = 5 / np.sqrt(len(Yk))
        np.testing.assert_allclose(Yk.mean(axis=0), model.means_[k], atol=float(se * sd.max()))
        np.testing.assert_allclose(
            np.cov(Yk.T), covs[k], atol=float(se * np.sqrt(2) * sd.max() ** 2)
        )
    # The model explains its own samples better than a shifted copy of them.
    assert model.score(Y[:2000]) > model.score(Y[:2000] + 1.0)


# ---------------------------------------------------------------------------------------
# to_dict / from_dict


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior", [None, "default"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_json_round_trip(covariance_type, prior, dtype):
    X = two_blobs(seed=10)
    model = fitted(covariance_type, X=X, prior=prior, dtype=dtype, reg_covar=1e-5)
    data = json.loads(json.dumps(model.to_dict()))
    back = GaussianMixture.from_dict(data)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "history_"):
        a, b = getattr(model, name), getattr(back, name)
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes(), name
    for name in (
        "n_components",
        "covariance_type",
        "tol",
        "reg_covar",
        "max_iter",
        "n_init",
        "init",
        "chunk_mib",
        "converged_",
        "n_iter_",
        "lower_bound_",
        "n_resets_",
        "reset_iterations_",
        "n_features_in_",
    ):
        assert getattr(back, name) == getattr(model, name), name
    assert np.dtype(back.dtype) == np.dtype(dtype)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_array_equal(back.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    assert back.to_dict() == data
    if prior is not None:
        assert back.prior_.shrinkage == model.prior_.shrinkage
        np.testing.assert_array_equal(back.prior_.mean, model.prior_.mean)
        np.testing.assert_array_equal(back.prior_.scale, model.prior_.scale)
        # The rebuilt options fit again (the prior dict is a valid prior option).
        refit = GaussianMixture.from_dict(data)
        refit.random_state = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            refit.fit(X)
        np.testing.assert_allclose(refit.means_, model.means_, rtol=1e-5, atol=1e-5)


def mutate(path, value):
    def apply(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return d

    return apply


DELETE = object()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (mutate(["format"], "sklearn/1"), "not a gmm.GaussianMixture/1 model"),
        (mutate(["format"], DELETE), "not a gmm.GaussianMixture/1 model"),
        (mutate(["means"], DELETE), "malformed model parameters: means is missing"),
        (mutate(["n_components"], DELETE), "malformed model parameters: n_components is missing"),
        (mutate(["n_components"], 0), "n_components must be >= 1"),
        (mutate(["n_components"], 3), "parameter shapes do not match"),
        (mutate(["n_features"], 3), "parameter shapes do not match"),
        (mutate(["covariance_type"], "diag"), "parameter shapes do not match"),
        (mutate(["covariance_type"], "round"), "covariance_type must be one of"),
        (mutate(["means"], [[0.0, 0.0], [1.0]]), "malformed model parameters"),
        (mutate(["means"], [[0.0, 0.0], [1.0, float("nan")]]), "parameters must be finite"),
        (mutate(["weights"], "heavy"), "malformed model parameters"),
        (mutate(["weights"], [1.5, -0.5]), "weights must be non-negative and sum to 1"),
        (mutate(["weights"], [0.2, 0.2]), "weights must be non-negative and sum to 1"),
        (
            mutate(["precisions_cholesky"], [[[0.0, 0.0], [0.0, 0.0]]] * 2),
            "precisions_cholesky must have a positive diagonal",
        ),
        (mutate(["options", "tol"], -1.0), "tol must be a finite number >= 0"),
        (mutate(["options", "dtype"], "int8"), "dtype must be float32 or float64"),
        (mutate(["options"], None), "malformed model parameters"),
        (mutate(["options", "prior"], {"mean": [0.0, 0.0]}), "malformed model parameters"),
    ],
)
def test_malformed_dicts(change, match):
    data = json.loads(json.dumps(fitted().to_dict()))
    with pytest.raises(ValueError, match=match):
        GaussianMixture.from_dict(change(data))


@pytest.mark.parametrize("data", [None, [], "model.json", 3])
def test_from_dict_not_a_dict(data):
    with pytest.raises(ValueError, match=r"malformed model parameters|not a gmm"):
        GaussianMixture.from_dict(data)


def test_precisions_property():
    model = fitted("full")
    for P, C in zip(model.precisions_, model.covariances_, strict=True):
        np.testing.assert_allclose(P @ C, np.eye(2), atol=1e-10)
    assert GaussianMixture.from_dict(model.to_dict()).precisions_.shape == (2, 2, 2)


def test_score_samples_is_logsumexp_of_components():
    """score_samples(x) = log sum_k pi_k N(x | k): check against the responsibilities."""
    model = fitted("diag")
    X = two_blobs(seed=11)
    r = model.predict_proba(X)
    ll = model.score_samples(X)
    # log r_nk + log p(x_n) = log pi_k N(x_n | k), and logsumexp_k of it is log p(x_n).
    np.testing.assert_allclose(logsumexp(np.log(r) + ll[:, None], axis=1), ll, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iter_blocks_is_predict_proba_and_score_samples_by_blocks(covariance_type):
    X = two_blobs(n=3000, D=3)
    model = fitted(covariance_type, X)
    model.chunk_mib = 0.01  # blocks of a few hundred rows: many blocks, a short last one
    K = model.n_components
    resp, log_prob, starts = np.full((len(X), K), np.nan), np.full(len(X), np.nan), []
    for rows, r, lp in model.iter_blocks(X):
        assert r.shape == (K, rows.stop - rows.start) and lp.shape == (r.shape[1],)
        resp[rows] = r.T
        log_prob[rows] = lp
        starts.append(rows.start)
    assert len(starts) > 3 and starts == sorted(starts)
    np.testing.assert_array_equal(resp, model.predict_proba(X))
    np.testing.assert_array_equal(log_prob, model.score_samples(X))
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    cov = full_covariances(covariance_type, model.covariances_, K, X.shape[1])
    ref = logsumexp(
        [
            np.log(model.weights_[k]) + multivariate_normal.logpdf(X, model.means_[k], cov[k])
            for k in range(K)
        ],
        axis=0,
    )
    np.testing.assert_allclose(log_prob, ref, rtol=1e-9, atol=1e-9)
