"""Tests of segment.outputs.plots: the numbers drawn are checked against independent references
(scipy.stats.norm, an eigen-decomposition, the inputs themselves), not just "it runs"."""

import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, StepPatch
from PIL import Image
from scipy import stats
from skimage.color import rgb2lab

from segment.color import default_component_colors
from segment.errors import SegmentError
from segment.outputs.files import TEMP_PREFIX
from segment.outputs.plots import (
    plot_criterion,
    plot_density,
    plot_loglik,
    save_figure,
)
from segment.outputs.plots.histograms import (
    bin_index,
    density_image,
    feature_edges,
    pair_histogram,
)

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _random_mixture(rng, K, D, spread=3.0):
    """Weights (K,), means (K, D) and random SPD covariances (K, D, D)."""
    weights = rng.dirichlet(np.full(K, 2.0))
    means = rng.normal(scale=spread, size=(K, D))
    A = rng.normal(size=(K, D, D))
    covariances = A @ A.transpose(0, 2, 1) / D + 0.2 * np.eye(D)
    return weights, means, covariances


def _sample_mixture(rng, n, weights, means, covariances):
    labels = rng.choice(weights.size, size=n, p=weights)
    X = np.empty((n, means.shape[1]))
    for k in range(weights.size):
        rows = labels == k
        X[rows] = rng.multivariate_normal(means[k], covariances[k], size=rows.sum())
    return X


def _by_gid(artists, gid):
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist with gid {gid!r}, found {len(found)}"
    return found[0]


def _pair_axes(fig):
    """Axes with ellipses (the top row), keyed by their (x label, y label)."""
    return {
        (ax.get_xlabel(), ax.get_ylabel()): ax
        for ax in fig.axes
        if any(isinstance(p, Ellipse) for p in ax.patches)
    }


def _marginal_axes(fig):
    return [ax for ax in fig.axes if any(line.get_gid() == "mixture" for line in ax.lines)]


def _mass_inside(lo, hi, weights, centers, scales):
    return float(
        np.sum(
            weights * (stats.norm.cdf(hi, centers, scales) - stats.norm.cdf(lo, centers, scales))
        )
    )


def _assert_inside_figure(fig):
    """Every axes with its labels and tick labels lies within the figure (nothing clipped)."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    page = fig.bbox
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)
        assert box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1, ax
        assert box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1, ax


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ---------------------------------------------------------------------------------------
# Palette
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [1, 2, 8, 12, 20, 21, 32, 64])
def test_palette_shape_range_and_prefix(K):
    colours = default_component_colors(K)
    assert colours.shape == (K, 3)
    assert colours.dtype == np.float64
    assert colours.min() >= 0.0 and colours.max() <= 1.0
    # Prefix-stable: the segment image and the plots agree whatever K each one uses.
    np.testing.assert_array_equal(default_component_colors(64)[:K], colours)
    np.testing.assert_array_equal(default_component_colors(K), colours)


@pytest.mark.parametrize(("K", "min_distance"), [(8, 0.25), (12, 0.25), (20, 0.18), (32, 0.12)])
def test_palette_colours_are_pairwise_distinct(K, min_distance):
    colours = default_component_colors(K)
    d = np.linalg.norm(colours[:, None] - colours[None, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > min_distance
    lab = rgb2lab(colours[None])[0]
    dlab = np.linalg.norm(lab[:, None] - lab[None, :], axis=-1)
    np.fill_diagonal(dlab, np.inf)
    assert dlab.min() > 10.0
    # Neighbours in the list (adjacent segment indices) are clearly different.
    assert np.linalg.norm(np.diff(lab, axis=0), axis=1).min() > 20.0


def test_palette_has_no_near_white_or_near_black():
    lightness = rgb2lab(default_component_colors(64)[None])[0][:, 0]
    assert lightness.min() > 30.0
    assert lightness.max() < 88.0


def test_palette_returns_a_private_copy():
    colours = default_component_colors(4)
    colours[:] = 0.0
    assert default_component_colors(4).max() > 0.0


@pytest.mark.parametrize("K", [0, -3, 2.5, True, "8", None])
def test_palette_rejects_bad_k(K):
    with pytest.raises(ValueError, match="K must be a positive integer"):
        default_component_colors(K)


# ---------------------------------------------------------------------------------------
# plot_loglik
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        [4.2],
        np.linspace(-3.0, 2.0, 300) - np.exp(-np.arange(300) / 10.0),
        -1.234e7 + np.cumsum(np.r_[0.0, 1e5 * np.exp(-np.arange(40) / 5.0)]),
    ],
    ids=["one-point", "300-points", "huge-negative"],
)
def test_loglik_line_holds_history_exactly(history):
    fig = plot_loglik(history)
    assert isinstance(fig, Figure)
    line = fig.axes[0].get_lines()[0]
    assert line.get_gid() == "history"
    n = len(history)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, n + 1))
    np.testing.assert_array_equal(line.get_ydata(), np.asarray(history, dtype=np.float64))
    _assert_inside_figure(fig)


def test_loglik_marks_resets_at_their_iterations():
    history = np.r_[np.linspace(1.0, 2.0, 10), np.linspace(1.8, 2.5, 10)]
    fig = plot_loglik(history, reset_iterations=[10, 15])
    ax = fig.axes[0]
    resets = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in resets) == [10, 15]
    for line in resets:
        assert line.get_xdata()[0] == line.get_xdata()[1]  # vertical
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count("component reset") == 1
    assert "2 component resets" in ax.get_title()


@pytest.mark.parametrize(
    ("converged", "expected"),
    [(True, "converged after 3 iterations"), (False, "not converged"), (None, "3 iterations")],
)
def test_loglik_states_final_value_and_convergence(converged, expected):
    fig = plot_loglik([1.0, 1.5, 1.625], converged=converged)
    status = fig.axes[0].get_title()
    assert "final value 1.625" in status
    assert expected in status
    if converged is True:
        assert "not converged" not in status


def test_loglik_labels_and_integer_ticks():
    fig = plot_loglik(np.linspace(0, 1, 7), ylabel="objective", title="Run 3")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlabel() == "EM iteration"
    assert ax.get_ylabel() == "objective"
    assert fig.get_suptitle() == "Run 3"
    ticks = ax.get_xticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_loglik_does_not_modify_input():
    history = np.array([1.0, 2.0, 3.0])
    resets = [2]
    plot_loglik(history, reset_iterations=resets)
    np.testing.assert_array_equal(history, [1.0, 2.0, 3.0])
    assert resets == [2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"history": []}, "history is empty"),
        ({"history": [[1.0, 2.0]]}, r"history must have shape \(n_iterations,\)"),
        ({"history": [1.0, np.nan]}, "NaN or infinity"),
        ({"history": [1.0, 2.0], "reset_iterations": [3]}, "between 1 and 2"),
        ({"history": [1.0, 2.0], "reset_iterations": [1.5]}, "whole iteration numbers"),
        ({"history": [1.0], "converged": "yes"}, "converged must be"),
    ],
)
def test_loglik_validation(kwargs, match):
    history = kwargs.pop("history")
    with pytest.raises(ValueError, match=match):
        plot_loglik(history, **kwargs)


# ---------------------------------------------------------------------------------------
# plot_density: numbers
# ---------------------------------------------------------------------------------------


def test_density_single_component_matches_scipy_norm(rng):
    mu, sd = 0.4, 0.12
    X = rng.normal(mu, sd, size=(3000, 1))
    fig = plot_density(X, [1.0], [[mu]], [[[sd**2]]])
    (ax,) = _marginal_axes(fig)
    mixture = ax.get_lines()[0]
    assert mixture.get_gid() == "mixture"
    x, y = np.asarray(mixture.get_xdata()), np.asarray(mixture.get_ydata())
    np.testing.assert_allclose(y, stats.norm.pdf(x, mu, sd), rtol=1e-12, atol=1e-300)
    # The curve spans exactly the axis range and integrates to ~1 over it.
    assert (x[0], x[-1]) == pytest.approx(ax.get_xlim())
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=5e-3)
    component = _by_gid(ax.get_lines(), "component 0")
    np.testing.assert_allclose(component.get_ydata(), y)


def test_density_marginals_integrate_to_one(rng):
    weights, means, covariances = _random_mixture(rng, K=5, D=3)
    X = _sample_mixture(rng, 4000, weights, means, covariances)
    fig = plot_density(X, weights, means, covariances)
    axes = _marginal_axes(fig)
    assert len(axes) == 3
    for d, ax in enumerate(axes):
        lines = ax.get_lines()
        x = np.asarray(lines[0].get_xdata())
        y = np.asarray(lines[0].get_ydata())
        lo, hi = ax.get_xlim()
        scales = np.sqrt(covariances[:, d, d])
        expected = _mass_inside(lo, hi, weights, means[:, d], scales)
        # The trapezoid rule on the plotted grid recovers the exact mass on the range ...
        assert np.trapezoid(y, x) == pytest.approx(expected, abs=2e-4)
        # ... which is all but a sliver of 1 for a range that covers the data.
        assert expected == pytest.approx(1.0, abs=1e-2)
        # The mixture is the sum of the weighted components, each a scaled normal pdf.
        parts = [_by_gid(lines, f"component {k}") for k in range(weights.size)]
        np.testing.assert_allclose(sum(p.get_ydata() for p in parts), y, rtol=1e-10)
        for k, part in enumerate(parts):
            np.testing.assert_allclose(
                part.get_ydata(),
                weights[k] * stats.norm.pdf(x, means[k, d], scales[k]),
                rtol=1e-10,
                atol=1e-300,
            )


def test_density_resolves_a_narrow_component(rng):
    # A component 1000x narrower than the axis range still integrates to its weight.
    X = np.r_[rng.normal(0.5, 0.2, 2000), rng.normal(0.9, 1e-3, 500)][:, None]
    weights = np.array([0.8, 0.2])
    fig = plot_density(X, weights, [[0.5], [0.9]], [[[0.04]], [[1e-6]]])
    (ax,) = _marginal_axes(fig)
    narrow = _by_gid(ax.get_lines(), "component 1")
    assert np.trapezoid(narrow.get_ydata(), narrow.get_xdata()) == pytest.approx(0.2, rel=1e-3)


@pytest.mark.parametrize("n_sigma", [1, 2])
def test_density_ellipses_match_eigendecomposition(n_sigma):
    cov = np.array([[4.0, 1.5], [1.5, 1.0]])
    mean = np.array([1.0, -2.0])
    X = np.random.default_rng(0).multivariate_normal(mean, cov, size=500)
    fig = plot_density(X, [1.0], [mean], [cov], feature_names=("u", "v"))
    ((labels, ax),) = _pair_axes(fig).items()
    assert labels == ("u", "v")
    ellipse = _by_gid(ax.patches, f"ellipse 0 {n_sigma}sigma")
    eigvals = np.linalg.eigvalsh(cov)
    semi_axes = sorted([ellipse.width / 2, ellipse.height / 2])
    np.testing.assert_allclose(semi_axes, n_sigma * np.sqrt(eigvals), rtol=1e-12)
    np.testing.assert_allclose(ellipse.center, mean)
    # Rebuild the covariance from width, height and angle: it must be n_sigma^2 * cov.
    t = math.radians(ellipse.angle)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    rebuilt = R @ np.diag([(ellipse.width / 2) ** 2, (ellipse.height / 2) ** 2]) @ R.T
    np.testing.assert_allclose(rebuilt, n_sigma**2 * cov, rtol=1e-10, atol=1e-12)


def test_density_ellipses_are_projections_of_each_pair(rng):
    weights, means, covariances = _random_mixture(rng, K=4, D=3)
    X = _sample_mixture(rng, 1000, weights, means, covariances)
    fig = plot_density(X, weights, means, covariances, feature_names=("a", "b", "c"))
    panels = _pair_axes(fig)
    assert set(panels) == {("a", "b"), ("a", "c"), ("b", "c")}
    names = "abc"
    for (xname, yname), ax in panels.items():
        i, j = names.index(xname), names.index(yname)
        for k in range(weights.size):
            sub = covariances[k][np.ix_((i, j), (i, j))]
            ellipse = _by_gid(ax.patches, f"ellipse {k} 2sigma")
            t = math.radians(ellipse.angle)
            R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
            rebuilt = R @ np.diag([ellipse.width**2, ellipse.height**2]) / 4 @ R.T
            np.testing.assert_allclose(rebuilt, 4 * sub, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(ellipse.center, means[k, [i, j]])


def test_density_heavier_components_are_drawn_bolder():
    weights = np.array([0.7, 0.25, 0.05])
    means = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    covariances = np.tile(np.eye(2), (3, 1, 1))
    X = np.random.default_rng(1).normal(size=(300, 2))
    ax = next(iter(_pair_axes(plot_density(X, weights, means, covariances)).values()))
    widths = [_by_gid(ax.patches, f"ellipse {k} 1sigma").get_linewidth() for k in range(3)]
    assert widths[0] > widths[1] > widths[2]


def test_density_histogram_is_weighted_like_repeated_rows(rng):
    X = rng.normal(size=(400, 2))
    counts = rng.integers(0, 5, size=400)
    model = ([1.0], [[0.0, 0.0]], [np.eye(2)])
    weighted = _marginal_axes(plot_density(X, *model, sample_weight=counts))
    repeated = _marginal_axes(plot_density(np.repeat(X, counts, axis=0), *model))
    for a, b in zip(weighted, repeated, strict=True):
        (sa,) = [p for p in a.patches if isinstance(p, StepPatch)]
        (sb,) = [p for p in b.patches if isinstance(p, StepPatch)]
        np.testing.assert_allclose(sa.get_data().values, sb.get_data().values, rtol=1e-12)
        np.testing.assert_allclose(sa.get_data().edges, sb.get_data().edges, rtol=1e-12)
        # density=True: the bars have unit area.
        values, edges = sa.get_data().values, sa.get_data().edges
        assert np.sum(values * np.diff(edges)) == pytest.approx(1.0)


def test_density_histogram_of_8bit_levels_has_no_comb():
    # Every 8-bit level equally often: every bin must be equally high, whatever the margin.
    levels = np.arange(256, dtype=np.float32) / 255
    X = np.repeat(levels, 3)[:, None]
    (ax,) = _marginal_axes(plot_density(X, [1.0], [[0.5]], [[[0.08]]]))
    (patch,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    values, edges = patch.get_data().values, patch.get_data().edges
    np.testing.assert_allclose(values, values[0], rtol=1e-9)
    # Edges sit half-way between levels, so float rounding cannot move a level across one.
    np.testing.assert_allclose(edges * 255 - 0.5, np.round(edges * 255 - 0.5), atol=1e-6)


# ---------------------------------------------------------------------------------------
# plot_density: layout, sampling, inputs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("D", "K", "n_pairs", "n_marginals"),
    [(1, 8, 0, 1), (2, 8, 1, 2), (3, 1, 3, 3), (3, 8, 3, 3), (3, 32, 3, 3), (5, 8, 3, 3)],
)
def test_density_panels_for_dimensions_and_components(rng, D, K, n_pairs, n_marginals):
    weights, means, covariances = _random_mixture(rng, K, D)
    X = _sample_mixture(rng, 600, weights, means, covariances)
    fig = plot_density(X, weights, means, covariances)
    assert len(_pair_axes(fig)) == n_pairs
    assert len(_marginal_axes(fig)) == n_marginals
    assert len(fig.axes) == n_pairs + n_marginals + 1  # + the weight key
    for ax in _pair_axes(fig).values():
        assert sum(isinstance(p, Ellipse) for p in ax.patches) == 2 * K
    for ax in _marginal_axes(fig):
        assert len(ax.get_lines()) == K + 1
    # The legend explains the styles only; components are in the colour key, not listed.
    (legend,) = fig.legends
    assert len(legend.get_texts()) <= 7
    if D == 5:
        assert "features 1–3 of 5" in fig.get_suptitle()


def test_density_with_many_components_keeps_labels_inside():
    rng = np.random.default_rng(3)
    weights, means, covariances = _random_mixture(rng, 32, 3)
    X = _sample_mixture(rng, 2000, weights, means, covariances)
    fig = plot_density(X, weights, means, covariances, feature_names=("L*", "a*", "b*"))
    _assert_inside_figure(fig)
    key = fig.axes[-1]
    labels = {t.get_text() for t in key.texts}
    assert labels <= {str(k) for k in range(32)}
    # The heaviest component is wide enough for its number.
    assert str(int(np.argmax(weights))) in labels


def test_density_axis_limits_cover_the_data_with_a_margin(rng):
    X = rng.uniform([0.0, 10.0], [1.0, 30.0], size=(500, 2))
    fig = plot_density(X, [1.0], [[0.5, 20.0]], [np.diag([0.1, 30.0])])
    for d, ax in enumerate(_marginal_axes(fig)):
        lo, hi = ax.get_xlim()
        span = X[:, d].max() - X[:, d].min()
        assert lo == pytest.approx(X[:, d].min() - 0.05 * span)
        assert hi == pytest.approx(X[:, d].max() + 0.05 * span)


def _histogram_image(ax):
    (image,) = [im for im in ax.images if im.get_gid() == "data histogram"]
    return image


def _naive_cells(x, y, x_edges, y_edges, weight, colours):
    """Per-cell weight and weighted mean colour, one row at a time."""
    nx, ny = len(x_edges) - 1, len(y_edges) - 1
    mass = np.zeros((ny, nx))
    total = np.zeros((ny, nx, 3))
    for xi, yi, wi, ci in zip(x, y, weight, colours, strict=True):
        c = min(max(int(np.searchsorted(x_edges, xi, side="right")) - 1, 0), nx - 1)
        r = min(max(int(np.searchsorted(y_edges, yi, side="right")) - 1, 0), ny - 1)
        mass[r, c] += wi
        total[r, c] += wi * ci
    mean = np.divide(total, mass[..., None], out=np.zeros_like(total), where=mass[..., None] > 0)
    return mass, mean


def test_pair_histogram_matches_naive_counts_and_colours(rng):
    x = rng.normal(size=3000)
    y = rng.uniform(-2, 5, size=3000)
    weight = rng.integers(0, 6, size=3000).astype(float)
    colours = rng.uniform(size=(3000, 3))
    x_edges = np.linspace(x.min(), x.max(), 41)
    y_edges = np.linspace(y.min(), y.max(), 23)
    mass, mean = pair_histogram(x, y, x_edges, y_edges, weight, colours)
    expected, _, _ = np.histogram2d(y, x, bins=[y_edges, x_edges], weights=weight)
    np.testing.assert_allclose(mass, expected, rtol=1e-12)
    naive_mass, naive_mean = _naive_cells(x, y, x_edges, y_edges, weight, colours)
    np.testing.assert_allclose(mass, naive_mass, rtol=1e-12)
    np.testing.assert_allclose(mean, naive_mean, rtol=1e-9, atol=1e-12)
    # Unweighted = every weight 1.
    ones, _ = pair_histogram(x, y, x_edges, y_edges)
    np.testing.assert_array_equal(ones, np.histogram2d(y, x, bins=[y_edges, x_edges])[0])


def test_bin_index_agrees_with_numpy_histogram(rng):
    values = np.r_[rng.uniform(-1, 3, size=5000), -1.0, 3.0]
    edges = np.linspace(-1.0, 3.0, 65)
    counts = np.bincount(bin_index(values, edges), minlength=64)
    np.testing.assert_array_equal(counts, np.histogram(values, bins=edges)[0])


def test_feature_edges_of_8bit_levels_hold_whole_levels():
    values = np.repeat(np.arange(256) / 255.0, 2)
    marginal, grid = feature_edges(values, 64, 160)
    for edges, n_bins in ((marginal, 64), (grid, 128)):
        assert len(edges) - 1 == n_bins
        counts = np.bincount(bin_index(values, edges), minlength=n_bins)
        assert (counts == counts[0]).all()


def test_density_image_alpha_follows_the_mass():
    mass = np.array([[0.0, 1.0], [10.0, 1000.0]])
    colour = np.zeros((2, 2, 3))
    colour[1, 1] = [0.2, 0.4, 0.6]
    rgba = density_image(mass, colour)
    assert rgba[0, 0, 3] == 0.0
    assert 0 < rgba[0, 1, 3] < rgba[1, 0, 3] < rgba[1, 1, 3] <= 1.0
    np.testing.assert_allclose(rgba[1, 1, :3], [0.2, 0.4, 0.6])


def test_density_pair_panel_shows_the_weighted_histogram(rng):
    X = rng.uniform(size=(400, 3))
    colours = rng.uniform(size=(400, 3))
    counts = rng.integers(0, 4, size=400)
    model = ([1.0], [[0.5] * 3], [np.eye(3) * 0.1])
    fig = plot_density(X, *model, sample_colors=colours, sample_weight=counts, bins=32)
    ax = _pair_axes(fig)[("R", "G")]
    image = _histogram_image(ax)
    rgba = np.asarray(image.get_array())
    x0, x1, y0, y1 = image.get_extent()
    used = counts > 0
    x_edges = np.linspace(x0, x1, rgba.shape[1] + 1)
    y_edges = np.linspace(y0, y1, rgba.shape[0] + 1)
    assert x0 == pytest.approx(X[used, 0].min()) and x1 == pytest.approx(X[used, 0].max())
    mass, mean = _naive_cells(X[:, 0], X[:, 1], x_edges, y_edges, counts, colours)
    np.testing.assert_array_equal(rgba[..., 3] > 0, mass > 0)
    filled = mass > 0
    np.testing.assert_allclose(rgba[..., :3][filled], mean[filled], atol=1e-9)
    # Weighted rows draw what the repeated rows draw.
    repeated = plot_density(
        np.repeat(X, counts, axis=0),
        *model,
        sample_colors=np.repeat(colours, counts, axis=0),
        bins=32,
    )
    again = np.asarray(_histogram_image(_pair_axes(repeated)[("R", "G")]).get_array())
    np.testing.assert_allclose(again, rgba, atol=1e-9)


def test_density_uses_given_colours(rng):
    X = rng.uniform(size=(200, 3))
    weights = np.array([0.5, 0.5])
    means = np.array([[0.3] * 3, [0.7] * 3])
    covariances = np.tile(0.01 * np.eye(3), (2, 1, 1))
    component_colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    fig = plot_density(
        X, weights, means, covariances, sample_colors=X, component_colors=component_colors
    )
    ax = _pair_axes(fig)[("R", "G")]
    np.testing.assert_allclose(
        _by_gid(ax.patches, "ellipse 1 1sigma").get_edgecolor()[:3], [0.0, 0.0, 1.0]
    )
    # Without colours the histogram is grey.
    grey = plot_density(X, weights, means, covariances)
    rgba = np.asarray(_histogram_image(_pair_axes(grey)[("R", "G")]).get_array())
    filled = rgba[..., 3] > 0
    assert np.ptp(rgba[..., :3][filled]) == 0


def test_density_accepts_float32_and_does_not_modify_inputs(rng):
    weights, means, covariances = _random_mixture(rng, 3, 3)
    X = _sample_mixture(rng, 300, weights, means, covariances).astype(np.float32)
    colours = rng.uniform(size=(300, 3)).astype(np.float32)
    sample_weight = rng.integers(1, 4, size=300)
    inputs = [X, weights, means, covariances, colours, sample_weight]
    before = [a.copy() for a in inputs]
    plot_density(
        X,
        weights.astype(np.float32),
        means,
        covariances,
        sample_colors=colours,
        sample_weight=sample_weight,
    )
    for a, b in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_density_handles_a_constant_feature():
    X = np.c_[np.full(100, 0.5), np.linspace(0, 1, 100)]
    fig = plot_density(X, [1.0], [[0.5, 0.5]], [np.diag([1e-4, 0.1])])
    lo, hi = _marginal_axes(fig)[0].get_xlim()
    assert lo < 0.5 < hi


def _valid_density_args():
    X = np.random.default_rng(0).normal(size=(50, 3))
    return {
        "X": X,
        "weights": np.array([0.5, 0.5]),
        "means": np.zeros((2, 3)),
        "covariances": np.tile(np.eye(3), (2, 1, 1)),
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"X": np.zeros(5)}, r"X must have shape \(n_samples, n_features\)"),
        ({"X": np.zeros((0, 3))}, "at least one row"),
        ({"X": np.full((5, 3), np.inf)}, "X contains NaN or infinity"),
        ({"weights": np.array([0.5, 0.6])}, "sum to 1"),
        ({"weights": np.array([1.5, -0.5])}, "non-negative"),
        ({"means": np.zeros((2, 2))}, r"means must have shape \(2, 3\)"),
        ({"covariances": np.ones((2, 3))}, r"covariances must have shape \(2, 3, 3\)"),
        ({"covariances": np.ones((2, 3, 3, 1))}, r"covariances must have shape \(2, 3, 3\)"),
        ({"covariances": np.ones((2, 2, 2))}, "full matrices of shape"),
        ({"covariances": np.tile([[1, 0.5, 0], [0, 1, 0], [0, 0, 1]], (2, 1, 1))}, "symmetric"),
        ({"covariances": np.tile(np.diag([1.0, 0.0, 1.0]), (2, 1, 1))}, "positive variances"),
        ({"sample_colors": np.zeros((49, 3))}, r"sample_colors must have shape \(50, 3\)"),
        ({"sample_colors": np.full((50, 3), 255.0)}, r"in \[0, 1\]"),
        ({"component_colors": np.zeros((3, 3))}, r"component_colors must have shape \(2, 3\)"),
        ({"feature_names": ("R", "G")}, "feature_names must be 3 strings"),
        ({"feature_names": "RGB"}, "sequence of strings"),
        ({"sample_weight": np.ones(49)}, r"sample_weight must have shape \(50,\)"),
        ({"sample_weight": np.zeros(50)}, "positive sum"),
        ({"bins": 0}, "bins must be a whole number"),
        ({"bins": 2.5}, "bins must be a whole number"),
        ({"title": 3}, "title must be a string"),
    ],
)
def test_density_validation(change, match):
    args = _valid_density_args() | change
    with pytest.raises(ValueError, match=match):
        plot_density(
            args.pop("X"), args.pop("weights"), args.pop("means"), args.pop("covariances"), **args
        )


# ---------------------------------------------------------------------------------------
# plot_criterion
# ---------------------------------------------------------------------------------------


def test_criterion_lines_hold_the_values():
    ks = [1, 2, 4, 8]
    values = {
        "full": [-100.0, -180.0, -220.0, -215.0],
        "diag": [-90.0, -150.0, np.nan, -200.0],
        "spherical": [np.nan, np.nan, np.nan, np.nan],
    }
    fig = plot_criterion(ks, values, criterion="ICL")
    ax = fig.axes[0]
    lines = ax.get_lines()
    for line, (name, v) in zip(lines, values.items(), strict=False):
        assert line.get_gid() == f"criterion {name}"
        assert line.get_label() == name
        np.testing.assert_array_equal(line.get_xdata(), ks)
        np.testing.assert_array_equal(line.get_ydata(), np.asarray(v))
    assert "ICL" in ax.get_ylabel() and "lower is better" in ax.get_ylabel()
    assert ax.get_xlabel() == "number of components K"
    np.testing.assert_array_equal(ax.get_xticks(), ks)


def test_criterion_marks_the_chosen_model():
    ks = np.arange(1, 6)
    values = {"full": [5.0, 3.0, 2.0, 2.5, 2.7], "tied": [5.5, 4.0, 3.0, 2.9, 3.1]}
    fig = plot_criterion(ks, values, chosen=(3, "full"))
    ax = fig.axes[0]
    (marker,) = ax.collections
    np.testing.assert_array_equal(marker.get_offsets(), [[3, 2.0]])
    assert "chosen: K = 3, full" in [t.get_text() for t in ax.get_legend().get_texts()]
    _assert_inside_figure(fig)


def test_criterion_with_huge_values_and_one_k():
    fig = plot_criterion([8], {"full": [-2.345678e7]}, chosen=(8, "full"))
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), [-2.345678e7])
    _assert_inside_figure(fig)


@pytest.mark.parametrize(
    ("ks", "values", "chosen", "match"),
    [
        ([2, 1], {"full": [1.0, 2.0]}, None, "strictly increasing"),
        ([0, 1], {"full": [1.0, 2.0]}, None, "positive whole numbers"),
        ([1.5, 2], {"full": [1.0, 2.0]}, None, "positive whole numbers"),
        ([], {"full": []}, None, "ks is empty"),
        ([1, 2], {}, None, "non-empty dict"),
        ([1, 2], [[1.0, 2.0]], None, "non-empty dict"),
        ([1, 2], {"full": [1.0]}, None, "must have 2 values"),
        ([1, 2], {"full": [1.0, np.inf]}, None, "use NaN"),
        ([1, 2], {"full": [1.0, 2.0]}, (3, "full"), "not among the plotted models"),
        ([1, 2], {"full": [1.0, 2.0]}, (2, "diag"), "not among the plotted models"),
        ([1, 2], {"full": [1.0, np.nan]}, (2, "full"), "no criterion value"),
        ([1, 2], {"full": [1.0, 2.0]}, 2, "pair"),
    ],
)
def test_criterion_validation(ks, values, chosen, match):
    with pytest.raises(ValueError, match=match):
        plot_criterion(ks, values, chosen=chosen)


# ---------------------------------------------------------------------------------------
# save_figure
# ---------------------------------------------------------------------------------------


def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]


def test_save_writes_a_png_and_clears_the_figure(tmp_path):
    fig = plot_loglik([1.0, 2.0, 2.5])
    width, height = fig.get_size_inches()
    path = tmp_path / "loglik.png"
    save_figure(fig, path, dpi=50)
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (round(width * 50), round(height * 50))
        im.load()
    assert fig.axes == []
    assert _leftovers(tmp_path) == []


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"keep me")
    fig = plot_loglik([1.0])
    with pytest.raises(SegmentError, match="already exists"):
        save_figure(fig, path)
    assert path.read_bytes() == b"keep me"
    assert _leftovers(tmp_path) == []
    assert fig.axes  # a failed save keeps the figure for another try
    save_figure(fig, path, overwrite=True)
    with Image.open(path) as im:
        assert im.format == "PNG"
    assert _leftovers(tmp_path) == []


def test_save_into_missing_folder_is_a_segment_error(tmp_path):
    with pytest.raises(SegmentError, match="does not exist"):
        save_figure(plot_loglik([1.0]), tmp_path / "nope" / "plot.png")


@pytest.mark.parametrize(
    ("fig", "path", "dpi", "error", "match"),
    [
        ("not a figure", "a.png", 110, TypeError, "matplotlib Figure"),
        (None, "a.jpg", 110, ValueError, "ending in .png"),
        (None, "a.png", 0, ValueError, "dpi must be a positive number"),
        (None, "a.png", float("nan"), ValueError, "dpi must be a positive number"),
    ],
)
def test_save_validation(tmp_path, fig, path, dpi, error, match):
    fig = plot_loglik([1.0]) if fig is None else fig
    with pytest.raises(error, match=match):
        save_figure(fig, tmp_path / path, dpi=dpi)
    assert os.listdir(tmp_path) == []


def test_figures_render_concurrently_in_threads(tmp_path):
    def work(i):
        history = np.cumsum(np.random.default_rng(i).uniform(size=20))
        save_figure(plot_loglik(history, title=f"run {i}"), tmp_path / f"run{i}.png", dpi=40)
        return i

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 2, 3]
    for i in range(4):
        with Image.open(tmp_path / f"run{i}.png") as im:
            assert im.format == "PNG"


def test_module_does_not_use_pyplot(tmp_path):
    code = (
        "import sys, segment.outputs.plots as p; "
        "p.save_figure(p.plot_loglik([1.0]), sys.argv[1]); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.png")], check=True, timeout=60)
