"""Issue 13, classes 2 and 14: ``gmm`` at the edges of floating point, and model dicts that
are valid JSON but not valid models.

Every input is generated here. The references are the same fits on well-scaled data:
weights are relative (any constant factor gives the same fit), a translation or a scaling
by a power of two of the data moves the fitted parameters with it and changes nothing else.
"""

import copy
import json
import warnings

import numpy as np
import pytest

from gmm import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "tied_diag", "spherical"]


def blobs(n=600, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (n // 2, 2)) * spread
    b = rng.normal(0.0, 0.5, (n - n // 2, 2)) * spread + 4.0 * spread
    return np.concatenate([a, b])


def fit(X, w=None, **kw):
    kw = {"random_state": 0, "max_iter": 200, "tol": 1e-6, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow, invalid) may leak
        return GaussianMixture(2, **kw).fit(X, w)


def same_fit(a, b, *, shift=0.0, scale=1.0, rtol=1e-4, unit=1.0):
    """b fitted on a's data × scale + shift: the same mixture, moved. ``unit``: the spread
    of a's data (the tolerances are relative to it)."""
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(
        (b.means_ - shift) / scale / unit, a.means_ / unit, rtol=rtol, atol=1e-3
    )
    # float32 E-steps: the covariances agree to ~1e-4 of the variances (about 0.25 here).
    np.testing.assert_allclose(
        b.covariances_ / (scale * unit) ** 2, a.covariances_ / unit**2, rtol=1e-3, atol=3e-4
    )


# =============================================================================================
# Class 14: sample weights are relative
# =============================================================================================


@pytest.mark.parametrize("factor", [1e-100, 1e-40, 1e40, 1e100, 2.0**-1000])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_weights_of_any_magnitude_give_the_same_fit(factor, covariance_type):
    X = blobs()
    w = np.random.default_rng(1).integers(1, 4, X.shape[0]).astype(np.float64)
    ref = fit(X, w, covariance_type=covariance_type)
    out = fit(X, w * factor, covariance_type=covariance_type)
    same_fit(ref, out)
    assert out.converged_
    np.testing.assert_allclose(out.lower_bound_, ref.lower_bound_, rtol=1e-6)
    # score is a weighted mean: the factor cancels; bic counts the total weight.
    np.testing.assert_allclose(out.score(X, w * factor), ref.score(X, w), rtol=1e-6)
    bic = out.bic(X, w * factor)
    assert np.isfinite(bic)


def test_weights_spanning_many_decades():
    X = blobs()
    w = np.ones(X.shape[0])
    w[::7] = 1e60  # a few rows dominate: the fit is theirs, and finite
    model = fit(X, w)
    assert np.isfinite(model.means_).all() and np.isfinite(model.lower_bound_)
    ref = fit(X[::7])
    same_fit(ref, model, rtol=1e-3)


# =============================================================================================
# Class 14: offsets and scales of the data
# =============================================================================================


@pytest.mark.parametrize("offset", [1e8, -1e8, 3e9])
@pytest.mark.parametrize("spread", [1e-2, 1.0])
def test_large_offset_fits_like_centred_data(offset, spread):
    """float64 data far from 0: centred in float64 before the float32 E-step (and the
    k-means start), they give the fit of the centred data."""
    X = blobs(spread=spread)
    ref = fit(X)
    out = fit(X + offset)
    # X + offset itself is exact to ~ulp(offset) ≈ offset × 1e-16 only.
    rtol = max(1e-4, 10 * abs(offset) * 2.2e-16 / spread)
    same_fit(ref, out, shift=offset, unit=spread, rtol=rtol)
    assert (out.predict(X + offset) == ref.predict(X)).all()
    np.testing.assert_allclose(out.score(X + offset), ref.score(X), atol=1e-3)


@pytest.mark.parametrize("exponent", [60, -60, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_scaled_data_fit_like_unscaled(exponent, dtype, covariance_type):
    """X × 2^e (e.g. 1e20 or 1e-18): float32 features would overflow or underflow; the
    fit is the same mixture, scaled."""
    if dtype == np.float32 and abs(exponent) > 100:
        pytest.skip("beyond float32's range")
    X = blobs()
    scale = 2.0**exponent
    ref = fit(X, covariance_type=covariance_type)
    # reg_covar is in the data's units: scaled with them, the problem is exactly the same.
    reg = 1e-6 * scale**2
    out = fit((X * scale).astype(dtype), covariance_type=covariance_type, reg_covar=reg)
    same_fit(ref, out, scale=scale, rtol=1e-3)
    Xs = (X * scale).astype(dtype)
    assert (out.predict(Xs) == ref.predict(X)).mean() > 0.999
    np.testing.assert_allclose(out.score(Xs) + X.shape[1] * np.log(scale), ref.score(X), rtol=1e-4)


def test_x_times_1e20_in_float32():
    X = (blobs() * 1e20).astype(np.float32)
    model = fit(X)
    assert np.isfinite(model.means_).all() and np.isfinite(model.covariances_).all()
    assert set(np.unique(model.predict(X))) == {0, 1}


# =============================================================================================
# Class 14: points far outside the model, degenerate shapes, argument names
# =============================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("far", [1e30, -1e30, 1e200, 3e38])
def test_far_point_finite_probabilities_and_minus_inf_loglik(far, covariance_type, dtype):
    model = fit(blobs(), covariance_type=covariance_type, dtype=dtype)
    X = np.array([[far, 0.0], [0.0, far], [far, far], [1.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = model.predict_proba(X)
        ll = model.score_samples(X)
        labels = model.predict(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert ((labels >= 0) & (labels < 2)).all()
    assert np.isfinite(ll[3])
    # The log-density of a far point: -inf, or a finite number far below any data's.
    assert (np.isneginf(ll[:3]) | (ll[:3] < -1e10)).all()
    assert not np.isnan(ll).any()
    if abs(far) >= 1e200 or dtype == np.float32:
        assert np.isneginf(ll[:3]).all()


def test_far_point_goes_to_the_widest_component():
    """Far along x, the component with the larger variance along x explains the point."""
    model = GaussianMixture.from_dict(
        {
            "format": "gmm.GaussianMixture/1",
            "n_components": 2,
            "covariance_type": "diag",
            "n_features": 2,
            "weights": [0.5, 0.5],
            "means": [[0.0, 0.0], [0.0, 0.0]],
            "covariances": [[1.0, 4.0], [4.0, 1.0]],
            "precisions_cholesky": [[1.0, 0.5], [0.5, 1.0]],
        }
    )
    proba = model.predict_proba(np.array([[1e30, 0.0], [0.0, 1e30], [1e300, 1.0]]))
    np.testing.assert_allclose(proba, [[0, 1], [1, 0], [0, 1]], atol=1e-6)


@pytest.mark.parametrize("shape", [(10, 0), (0, 0)])
def test_zero_columns(shape):
    with pytest.raises(ValueError, match=r"X has no columns|X is empty"):
        GaussianMixture(2).fit(np.empty(shape))


@pytest.mark.parametrize("seed", [-1, -(2**70)])
def test_negative_random_state_names_the_parameter(seed):
    with pytest.raises(ValueError, match=r"random_state must be a non-negative int seed"):
        GaussianMixture(2, random_state=seed).fit(blobs())


# =============================================================================================
# Class 2 (gmm side): model dicts that are valid JSON but not valid models
# =============================================================================================


def fitted_dict(covariance_type="full"):
    return json.loads(json.dumps(fit(blobs(), covariance_type=covariance_type).to_dict()))


def changed(data, path, value):
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


BAD_FIELDS = [
    (["means", 0, 0], 1e308, r"means: .*magnitude"),
    (["means", 1, 1], -1e200, r"means: .*magnitude"),
    (["covariances", 0], [[1.0, 2.0], [2.0, 1.0]], r"covariances\[0\] is not positive definite"),
    (["covariances", 1], [[1.0, 0.5], [0.0, 1.0]], r"covariances\[1\] is not symmetric"),
    (["covariances", 0], [[1e301, 0.0], [0.0, 1.0]], r"covariances\[0\] has a variance beyond"),
    (["covariances", 1], [[-1.0, 0.0], [0.0, -1.0]], r"covariances\[1\] is not positive definite"),
    (["precisions_cholesky", 0], [[5.0, 0.0], [0.0, 5.0]], r"precisions_cholesky\[0\] is not the"),
    (["weights"], [0.5, 0.5, 0.0], r"weights: parameter shapes"),
    (["weights"], [0.7, 0.7], r"weights must be non-negative and sum to 1"),
    (["n_components"], 10**40, r"n_components|parameter shapes|implausibly"),
    (["n_components"], 2.0, r"n_components must be an integer"),
    (["n_components"], True, r"n_components must be an integer"),
    (["n_features"], "2", r"n_features must be an integer"),
    (["n_iter"], -3, r"n_iter must be >= 0"),
    (["history"], ["a"], r"history must be a list of numbers"),
    (["converged"], "yes", r"converged must be true or false"),
    (["reset_iterations"], [1.5], r"reset_iterations"),
    (["means"], [[0.0, "x"], [1.0, 1.0]], r"means must be an array of numbers"),
    (["options"], [], r"options is not a JSON object"),
    (["options", "prior"], {"mean": [0, 0], "shrinkage": 1, "dof": 1, "scale": -1}, r"prior"),
]


@pytest.mark.parametrize(("path", "value", "match"), BAD_FIELDS)
def test_invalid_model_fields_are_named(path, value, match):
    data = changed(fitted_dict(), path, value)
    with pytest.raises(ValueError, match="malformed model parameters: " + match):
        GaussianMixture.from_dict(data)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_non_positive_variances_rejected_for_every_type(covariance_type):
    data = fitted_dict(covariance_type)
    covs = np.asarray(data["covariances"])
    covs = -np.abs(covs) if covs.ndim else -abs(covs)
    data["covariances"] = covs.tolist()
    with pytest.raises(ValueError, match=r"covariances(\[\d\])? is not positive definite"):
        GaussianMixture.from_dict(data)


def test_deeply_nested_field():
    nested = 0.0
    for _ in range(5000):
        nested = [nested]
    data = changed(fitted_dict(), ["means"], nested)
    with pytest.raises(ValueError, match=r"malformed model parameters: means"):
        GaussianMixture.from_dict(data)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_valid_dicts_still_round_trip(covariance_type):
    data = fitted_dict(covariance_type)
    back = GaussianMixture.from_dict(data)
    assert back.to_dict() == data
