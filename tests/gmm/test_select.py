"""Model selection (gmm.select): BIC finds the true K of known mixtures, the criteria follow
their formulas, warm starts are no worse than cold ones, and the API validates its input."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import gmm
from gmm import FewDistinctPointsWarning, GaussianMixture, select_model
from gmm.covariance import n_parameters
from gmm.grow import grow_mixture, split_parameters


def _rotation(rng, D):
    q, r = np.linalg.qr(rng.normal(size=(D, D)))
    return q * np.sign(np.diag(r))


def mixture_sample(K, covariance_type, *, n=1200, D=3, seed=0, separation=9.0):
    """n rows from each of K well-separated Gaussians with the given covariance structure."""
    rng = np.random.default_rng(seed)
    means = np.zeros((0, D))
    while len(means) < K:  # rejection: every pair of means at least `separation` apart
        m = rng.uniform(-2.5 * separation, 2.5 * separation, size=D)
        if not len(means) or np.linalg.norm(means - m, axis=1).min() > separation:
            means = np.vstack([means, m])
    shared = _rotation(rng, D) @ np.diag(rng.uniform(0.5, 1.5, D))
    shared_diag = np.diag(rng.uniform(0.5, 1.5, D))
    X = []
    for k in range(K):
        A = {
            "full": _rotation(rng, D) @ np.diag(rng.uniform(0.3, 1.5, D)),
            "tied": shared,
            "diag": np.diag(rng.uniform(0.3, 1.5, D)),
            "tied_diag": shared_diag,
            "spherical": np.eye(D) * rng.uniform(0.4, 1.4),
        }[covariance_type]
        X.append(means[k] + rng.normal(size=(n, D)) @ A.T)
    return np.concatenate(X)


def quiet_select(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmm.ConvergenceWarning)
        return select_model(*args, **kwargs)


# -- BIC finds the true K ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("K", "covariance_type"),
    [
        (2, "full"),
        (5, "full"),
        (3, "tied"),
        (6, "tied"),
        (4, "diag"),
        (3, "tied_diag"),
        (6, "spherical"),
    ],
)
def test_bic_selects_the_true_number_of_components(K, covariance_type):
    X = mixture_sample(K, covariance_type, seed=K)
    sel = quiet_select(
        X, n_components=range(1, 10), covariance_types=(covariance_type,), random_state=0
    )
    assert sel.chosen == (K, covariance_type)
    assert sel.best is sel.models[sel.chosen]
    assert sel.best.n_components == K


def test_bic_selects_k_and_structure_among_covariance_types():
    X = mixture_sample(4, "full", seed=11)
    types = ("full", "diag", "spherical")
    sel = quiet_select(X, n_components=range(2, 7), covariance_types=types, random_state=0)
    assert sel.chosen == (4, "full")
    assert {(r["k"], r["covariance_type"]) for r in sel.table} == {
        (k, t) for k in range(2, 7) for t in types
    }


def test_weighted_rows_count_as_repeated_rows():
    # Integer data with counts (like distinct colours): BIC's N is the total weight.
    X = np.round(mixture_sample(3, "spherical", seed=3, n=800) * 2) / 2
    Xu, counts = np.unique(X, axis=0, return_counts=True)
    sel = quiet_select(Xu, counts.astype(float), n_components=[2, 3, 4], random_state=0)
    assert sel.chosen[0] == 3
    for row in sel.table:
        m = sel.models[(row["k"], row["covariance_type"])]
        assert row["bic"] == pytest.approx(m.bic(X), rel=1e-6)
        assert row["loglik"] == pytest.approx(m.score(X) * len(X), rel=1e-6)


# -- criteria ------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "tied_diag", "spherical"])
def test_criteria_follow_their_formulas(covariance_type):
    rng = np.random.default_rng(5)
    X = mixture_sample(3, covariance_type, seed=5, n=300, D=2, separation=4.0)
    w = rng.integers(1, 4, size=len(X)).astype(float)
    sel = quiet_select(
        X, w, n_components=[1, 2, 3, 4], covariance_types=(covariance_type,), random_state=1
    )
    W = w.sum()
    for row in sel.table:
        m = sel.models[(row["k"], covariance_type)]
        K, D = row["k"], X.shape[1]
        p = n_parameters(covariance_type, K, D)
        loglik = float(w @ m.score_samples(X))
        R = m.predict_proba(X).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -float(w @ np.where(R > 0, R * np.log(R), 0.0).sum(axis=1))
        assert row["n_parameters"] == p
        assert row["loglik"] == pytest.approx(loglik, rel=1e-6)
        assert row["bic"] == pytest.approx(-2 * loglik + p * np.log(W), rel=1e-6)
        assert row["aic"] == pytest.approx(-2 * loglik + 2 * p, rel=1e-6)
        assert row["icl"] == pytest.approx(-2 * loglik + p * np.log(W) + 2 * entropy, rel=1e-5)
        assert row["bic"] == pytest.approx(m.bic(X, w), rel=1e-9)
        assert row["aic"] == pytest.approx(m.aic(X, w), rel=1e-9)
        assert row["icl"] == pytest.approx(m.icl(X, w), rel=1e-9)


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_chosen_model_minimises_the_criterion(criterion):
    X = mixture_sample(3, "diag", seed=2, n=200, D=2, separation=3.0)
    sel = quiet_select(
        X,
        n_components=range(1, 7),
        covariance_types=("diag", "spherical"),
        criterion=criterion,
        random_state=0,
    )
    best = min(sel.table, key=lambda r: r[criterion])
    assert sel.chosen == (best["k"], best["covariance_type"])
    assert sel.criterion == criterion


# -- warm starts ---------------------------------------------------------------------------


def test_warm_starts_are_not_worse_than_cold_starts_on_average():
    """Over several mixtures (separated and overlapping) and every K of the range, the
    log-likelihood reached from split components is on average at least that of k-means
    starts."""
    diffs = []
    cases = [(5, "full", 9.0), (6, "spherical", 4.0), (7, "tied", 9.0), (5, "diag", 3.0)]
    for seed, (K, ctype, sep) in enumerate(cases):
        X = mixture_sample(K, ctype, seed=seed, n=600, separation=sep)
        common = dict(n_components=range(1, K + 3), covariance_types=(ctype,), random_state=0)
        warm = quiet_select(X, warm_start=True, **common)
        cold = quiet_select(X, warm_start=False, **common)
        assert [r["warm_start"] for r in warm.table] == [False] + [True] * (K + 1)
        assert not any(r["warm_start"] for r in cold.table)
        diffs += [
            (a["loglik"] - b["loglik"]) / len(X)
            for a, b in zip(warm.table, cold.table, strict=True)
        ]
    assert np.mean(diffs) >= -1e-3, diffs


@pytest.mark.parametrize("name", ["chelsea.png", "rocket.jpg"])
def test_warm_starts_are_not_worse_on_photo_colours(name):
    """The use that matters: distinct colours of a photo weighted by their counts, K from 2
    to 16 (the range of ``segment image -k auto``)."""
    from segment.features import pixel_data
    from segment.imageio import load_image

    data = pixel_data(load_image(Path(__file__).resolve().parents[2] / "images" / name))
    diffs = []
    for ctype in ("full", "diag"):
        common = dict(n_components=range(2, 17), covariance_types=(ctype,), random_state=0)
        warm = quiet_select(data.X, data.weight, warm_start=True, **common)
        cold = quiet_select(data.X, data.weight, warm_start=False, **common)
        diffs += [a["loglik"] - b["loglik"] for a, b in zip(warm.table, cold.table, strict=True)]
    assert np.mean(diffs) / data.weight.sum() >= 0.0


def test_split_parameters_are_a_valid_start_for_every_structure():
    X = mixture_sample(3, "full", seed=4, n=300, D=2)
    for ctype in ("full", "tied", "diag", "tied_diag", "spherical"):
        m = GaussianMixture(2, covariance_type=ctype, random_state=0).fit(X)
        init = split_parameters(m, X, n_new=3)
        assert init["weights_init"].shape == (5,)
        assert init["weights_init"].sum() == pytest.approx(1.0)
        assert init["means_init"].shape == (5, 2)
        # GaussianMixture validates shapes, symmetry and positive definiteness.
        grown = GaussianMixture(5, covariance_type=ctype, max_iter=2, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gmm.ConvergenceWarning)
            grown.fit(X)
        assert grown.means_.shape == (5, 2)


def test_split_halves_sit_on_the_leading_axis():
    # One elongated Gaussian along x: the split puts two means at ±sqrt(2/pi)·sigma on x.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 2)) * [3.0, 0.5]
    m = GaussianMixture(1, random_state=0).fit(X)
    init = split_parameters(m, X, n_new=1)
    means = init["means_init"][np.argsort(init["means_init"][:, 0])]
    offset = np.sqrt(2 / np.pi) * 3.0
    np.testing.assert_allclose(means, [[-offset, 0], [offset, 0]], atol=0.1)
    var = np.linalg.inv(init["precisions_init"][0])
    np.testing.assert_allclose(np.diag(var), [9 * (1 - 2 / np.pi), 0.25], rtol=0.05)


def test_grow_mixture_keeps_the_better_of_warm_and_cold_with_n_init():
    X = mixture_sample(4, "full", seed=8, n=300, D=2, separation=5.0)
    small = GaussianMixture(2, random_state=0).fit(X)
    one = grow_mixture(small, X, n_components=4, random_state=0)
    several = grow_mixture(small, X, n_components=4, random_state=0, n_init=3)
    assert one.n_components == several.n_components == 4
    assert several.lower_bound_ >= one.lower_bound_ - 1e-9
    with pytest.raises(ValueError, match="larger than the model's 2"):
        grow_mixture(small, X, n_components=2)
    with pytest.raises(ValueError, match="n_candidates"):
        grow_mixture(small, X, n_components=3, n_candidates=0)


# -- API -----------------------------------------------------------------------------------


def test_values_for_plotting_and_json():
    X = mixture_sample(2, "diag", seed=1, n=200, D=2)
    with pytest.warns(FewDistinctPointsWarning, match="left out"):
        sel = quiet_select(
            X[:3], n_components=[1, 2, 3, 5], covariance_types=("diag",), random_state=0
        )
    assert [r["k"] for r in sel.table] == [1, 2, 3]
    sel = quiet_select(
        X, n_components=[4, 1, 2], covariance_types=("diag", "spherical"), random_state=0
    )
    ks, values = sel.values()
    assert ks.tolist() == [1, 2, 4] and list(values) == ["diag", "spherical"]
    for row in sel.table:
        i = ks.tolist().index(row["k"])
        assert values[row["covariance_type"]][i] == row["bic"]
    _, aic = sel.values("aic")
    assert aic["diag"][0] == sel.table[0]["aic"]
    doc = json.loads(json.dumps(sel.to_dict()))
    assert doc["chosen"] == {"k": sel.chosen[0], "covariance_type": sel.chosen[1]}
    assert len(doc["table"]) == 6

    from segment.outputs.plots import plot_criterion

    fig = plot_criterion(ks, values, chosen=sel.chosen, criterion="BIC")
    assert len(fig.axes[0].get_lines()) == 2


def test_same_seed_same_selection_and_callback():
    X = mixture_sample(3, "spherical", seed=6, n=200, D=2)
    calls = []
    a = quiet_select(
        X,
        n_components=range(1, 5),
        random_state=7,
        callback=lambda k, t, i, v: calls.append((k, t, i)),
    )
    b = quiet_select(X, n_components=range(1, 5), random_state=7)
    assert a.table == b.table
    assert {k for k, _, _ in calls} == {1, 2, 3, 4}
    assert all(t == "full" and i >= 1 for _, t, i in calls)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": []}, "non-empty sequence"),
        ({"n_components": [2, 2]}, "twice"),
        ({"n_components": [0, 1]}, "whole numbers >= 1"),
        ({"n_components": [1.5]}, "whole numbers"),
        ({"covariance_types": ("full", "round")}, "covariance_types must be one of"),
        ({"covariance_types": ()}, "empty"),
        ({"criterion": "mdl"}, "criterion must be one of"),
        ({"means_init": [[0, 0]]}, "does not take means_init"),
        ({"callback": 3}, "callback must be callable"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_invalid_arguments(kwargs, match):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=match):
        select_model(X, **kwargs)


def test_no_usable_k_and_bad_data():
    X = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(ValueError, match="only 3 row"):
        select_model(X, n_components=[4, 5])
    # NaN is a missing value (tests/gmm/test_gmm_missing.py); infinity is an error.
    with pytest.raises(ValueError, match="infinity"):
        select_model(np.array([[0.0, np.inf], [1.0, 2.0], [2, 1]]), n_components=[1])
