"""The mixture over the data (:func:`plot_density`): pair panels of the first features with
the samples and each component's ellipses, and marginal panels with the histogram, the
mixture density and its weighted components."""

import math
from typing import NamedTuple

import numpy as np
from matplotlib import patheffects
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch

from .common import HIST_GREY, INK, new_figure
from .specs import density_panels

_SIGMAS = (1, 2)


def _density_grid(lo, hi, centers, scales):
    """Evaluation points over [lo, hi]: a uniform grid plus dense points within 6 sigma of
    each component, so narrow components are resolved and the curves integrate right."""
    local = (centers[:, None] + scales[:, None] * np.linspace(-6.0, 6.0, 121)).ravel()
    local = local[(local > lo) & (local < hi)]
    return np.unique(np.concatenate([np.linspace(lo, hi, 801), local]))


def _weighted_normal_pdfs(x, weights, centers, scales):
    """(K, len(x)) array of w_k N(x | mu_k, sigma_k^2)."""
    z = (x[None, :] - centers[:, None]) / scales[:, None]
    return weights[:, None] * np.exp(-0.5 * z * z) / (scales[:, None] * math.sqrt(2.0 * math.pi))


def _ellipse_geometry(cov2, n_sigma):
    """Full width, height and angle (degrees) of the n-sigma ellipse of a 2x2 covariance:
    semi-axes n_sigma * sqrt(eigenvalues), the width along the largest eigenvector."""
    eigvals, eigvecs = np.linalg.eigh(cov2)
    eigvals = np.clip(eigvals, 0.0, None)
    major = eigvecs[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0]))
    return (
        2.0 * n_sigma * math.sqrt(eigvals[1]),
        2.0 * n_sigma * math.sqrt(eigvals[0]),
        angle,
    )


class _Mixture(NamedTuple):
    """The validated mixture with its drawing style, passed to the panel functions."""

    weights: np.ndarray  # (K,), sums to 1
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)
    colours: np.ndarray  # (K, 3)
    linewidths: np.ndarray  # (K,)
    alphas: np.ndarray  # (K,)


def _draw_pair(ax, grid, mix, i, j, limits, names):
    """The 2-D histogram image ``grid`` (rgba, x edges, y edges) of features i and j, then
    every component's ellipses and mean."""
    rgba, x_edges, y_edges = grid
    ax.imshow(
        rgba,
        extent=(x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]),
        origin="lower",
        interpolation="nearest",
        aspect="auto",
        gid="data histogram",
        zorder=1,
    )
    mu, cc = mix.means, mix.colours
    # Heavy components first, so small ones stay visible on top of them.
    for k in np.argsort(-mix.weights, kind="stable"):
        sub = mix.covariances[k][np.ix_((i, j), (i, j))]
        for n_sigma in _SIGMAS:
            width, height, angle = _ellipse_geometry(sub, n_sigma)
            # The 2-sigma outline is the context, the 1-sigma one the shape: keep it lighter.
            outer = n_sigma > 1
            lw = mix.linewidths[k] * (0.7 if outer else 1.0)
            ellipse = Ellipse(
                (mu[k, i], mu[k, j]),
                width,
                height,
                angle=angle,
                fill=False,
                edgecolor=cc[k],
                linewidth=lw,
                linestyle="--" if outer else "-",
                alpha=mix.alphas[k] * (0.8 if outer else 1.0),
                gid=f"ellipse {k} {n_sigma}sigma",
                zorder=3,
            )
            # A white halo keeps the outline visible over pixels of the same colour.
            ellipse.set_path_effects(
                [patheffects.withStroke(linewidth=lw + 1.4, foreground="white")]
            )
            # add_artist, not add_patch: the limits are set below, and updating the data
            # limits from every ellipse's path cost more than drawing it.
            ax.add_artist(ellipse)
    ax.scatter(
        mu[:, i],
        mu[:, j],
        marker="X",
        s=20.0 + 35.0 * min(1.0, math.sqrt(8.0 / mu.shape[0])),
        c=cc,
        edgecolors="white",
        linewidths=0.9,
        zorder=4,
    )
    ax.set_xlim(limits[i])
    ax.set_ylim(limits[j])
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_box_aspect(1)
    ax.locator_params(nbins=6)


def _draw_marginal(ax, histogram, mix, d, limits, name):
    """The weighted histogram (heights, edges) of feature d under the mixture's marginal
    density and its weighted components."""
    lo, hi = limits
    heights, edges = histogram
    centers = mix.means[:, d]
    scales = np.sqrt(mix.covariances[:, d, d])
    x = _density_grid(lo, hi, centers, scales)
    parts = _weighted_normal_pdfs(x, mix.weights, centers, scales)
    mixture = parts.sum(axis=0)
    # The mixture line is drawn first so that it is ax.lines[0]; zorder puts it on top.
    ax.plot(x, mixture, color=INK, linewidth=2.2, gid="mixture", zorder=4)
    for k in range(mix.weights.size):
        ax.plot(
            x,
            parts[k],
            color=mix.colours[k],
            linewidth=1.1,
            alpha=float(mix.alphas[k]),
            gid=f"component {k}",
            zorder=3,
        )
    ax.stairs(heights, edges, fill=True, color=HIST_GREY, zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.08 * max(float(heights.max()), float(mixture.max())))
    ax.set_xlabel(name)
    ax.set_ylabel("density")


def _draw_weight_key(ax, w, cc):
    """A bar of the mixture weights in the component colours: the colour key, readable for
    any K because each label is written only where its segment is wide enough."""
    left = np.concatenate([[0.0], np.cumsum(w)[:-1]])
    ax.barh(0, w, left=left, height=1.0, color=cc, edgecolor="white", linewidth=0.6)
    # A label needs about 0.065 in per digit at 8 pt plus some padding; the key spans most
    # of the figure's width.
    key_inches = 0.9 * ax.get_figure().get_size_inches()[0]
    for k in range(w.size):
        if w[k] * key_inches >= 0.065 * len(str(k)) + 0.06:
            lum = float(np.dot(cc[k], (0.2126, 0.7152, 0.0722)))
            ax.text(
                left[k] + w[k] / 2,
                0,
                str(k),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if lum < 0.5 else INK,
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("mixture weights by component (colour key; numbers are component indices)")


def _style_legend_handles(has_pairs):
    handles = [
        Patch(facecolor=HIST_GREY, label="data histogram"),
        Line2D([], [], color=INK, linewidth=2.2, label="mixture density"),
        Line2D([], [], color="#777777", linewidth=1.1, label="weighted components"),
    ]
    if has_pairs:
        handles += [
            Line2D([], [], color="#777777", linewidth=1.6, label="1σ ellipse"),
            Line2D([], [], color="#777777", linewidth=1.6, linestyle="--", label="2σ ellipse"),
            Line2D(
                [],
                [],
                marker="X",
                linestyle="none",
                markersize=8,
                markerfacecolor="#777777",
                markeredgecolor="white",
                label="component mean",
            ),
            Patch(facecolor="#999999", label="data (mean colour; fainter = fewer)"),
        ]
    return handles


def plot_density(
    X,
    weights,
    means,
    covariances,
    *,
    sample_colors=None,
    component_colors=None,
    feature_names=None,
    sample_weight=None,
    bins=128,
    title=None,
):
    """The fitted mixture drawn over the data: pair projections and marginal densities.

    Top row, one panel per pair of the first three features (three panels for D >= 3, one
    for D = 2, none for D = 1): the data as a weighted 2-D histogram (each cell in the mean
    colour of its rows, more opaque where more weight falls, on a log scale), and each
    component's 1- and 2-sigma ellipses of its projected covariance (solid and dashed,
    thicker and more opaque for larger weights) with its mean. Bottom row, one panel per
    feature (the first three): the weighted histogram of X (density), the mixture's marginal
    density sum_k w_k N(x | mu_kd, Sigma_kdd) as a thick line and each weighted component as
    a thin line. A bar of the weights in the component colours serves as the colour key.

    Parameters
    ----------
    X : array-like of shape (n, D)
        Feature rows: an image's distinct colours (with their pixel counts as
        ``sample_weight``) or a sample of its pixels. Every row enters the histograms; the
        cost grows with the rows, and nothing is drawn per row.
    weights : array-like of shape (K,)
        Mixture weights, non-negative, summing to 1.
    means : array-like of shape (K, D)
    covariances : array-like of shape (K, D, D)
        Full covariance matrices (convert other covariance types first).
    sample_colors : array-like of shape (n, 3), optional
        RGB in [0, 1] for each row of X (the pixels' own colours); grey if None.
    component_colors : array-like of shape (K, 3), optional
        RGB in [0, 1] per component; default :func:`default_component_colors`.
    feature_names : sequence of D str, optional
        Axis labels; default ("R", "G", "B") for D = 3, else "x1" .. "xD".
    sample_weight : array-like of shape (n,), optional
        Non-negative row weights (e.g. pixel counts of unique colours): histograms are
        weighted.
    bins : int, default 128
        Most cells along each axis of a pair panel's 2-D histogram (fewer for few
        distinct values, and a whole number of levels per cell for quantised features).
    title : str, optional
        Figure title; default names K, D and n.

    Returns
    -------
    fig : matplotlib.figure.Figure
        In each marginal panel ``lines[0]`` (gid ``"mixture"``) is the mixture density and
        the lines with gid ``"component <k>"`` the weighted components; the ellipse patches
        carry gid ``"ellipse <k> <s>sigma"``, the 2-D histogram image of a pair panel gid
        ``"data histogram"``.

    Raises
    ------
    ValueError
        If shapes disagree (the message names the expected shape), values are not finite,
        weights do not sum to 1, covariances are not symmetric with positive variances, or
        colours are outside [0, 1].
    """
    return draw_density(
        density_panels(
            X,
            weights,
            means,
            covariances,
            sample_colors=sample_colors,
            component_colors=component_colors,
            feature_names=feature_names,
            sample_weight=sample_weight,
            bins=bins,
            title=title,
        )
    )


def draw_density(panels):
    """The figure of :func:`plot_density` from its data (:func:`.specs.density_panels`)."""
    p = panels
    mix = _Mixture(
        p["weights"], p["means"], p["covariances"], p["colours"], p["linewidths"], p["alphas"]
    )
    pairs, limits, names = p["pairs"], p["limits"], p["names"]
    shown = len(p["marginals"])
    fig, pair_axes, marginal_axes, key_ax, legend_y = _density_layout(shown, len(pairs))
    for ax, (i, j), grid in zip(pair_axes, pairs, p["pair_images"], strict=True):
        _draw_pair(ax, grid, mix, i, j, limits, names)
    for d, ax in enumerate(marginal_axes):
        _draw_marginal(ax, p["marginals"][d], mix, d, limits[d], names[d])
    _draw_weight_key(key_ax, mix.weights, mix.colours)

    handles = _style_legend_handles(bool(pairs))
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, legend_y),
        ncols=min(len(handles), 4 if shown < 3 else 7),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(p["title"])
    return fig


#: Margins and gaps of the density figure, in inches: fixed, because a layout engine
#: (constrained or tight) measures every tick label of every panel, which cost more than
#: drawing the figure.
_LEFT, _RIGHT, _TOP, _BOTTOM, _ROW_GAP, _COL_GAP = 0.9, 0.25, 0.55, 0.95, 0.65, 0.95


def _density_layout(shown, n_pairs):
    """Figure and axes: pair panels on top, marginals below, the weight key at the bottom;
    and the height (figure fraction) of the legend under the key."""
    n_cols = shown
    width = {1: 6.0, 2: 8.5, 3: 12.5}[shown]
    height_ratios = ([1.25] if n_pairs else []) + [1.0, 0.13]
    height = {1: 4.2, 2: 8.6, 3: 9.6}[shown]
    fig = new_figure((width, height), layout=None)
    rows = len(height_ratios)
    cell_w = (width - _LEFT - _RIGHT - (n_cols - 1) * _COL_GAP) / n_cols
    cell_h = (height - _TOP - _BOTTOM - (rows - 1) * _ROW_GAP) / rows
    grid = fig.add_gridspec(
        rows,
        n_cols,
        height_ratios=height_ratios,
        left=_LEFT / width,
        right=1 - _RIGHT / width,
        bottom=_BOTTOM / height,
        top=1 - _TOP / height,
        wspace=_COL_GAP / cell_w,
        hspace=_ROW_GAP / cell_h,
    )
    row = 0
    pair_axes = []
    if n_pairs:
        if n_pairs == 1:
            pair_axes = [fig.add_subplot(grid[0, :])]
        else:
            pair_axes = [fig.add_subplot(grid[0, c]) for c in range(n_pairs)]
        row = 1
    marginal_axes = [fig.add_subplot(grid[row, c]) for c in range(shown)]
    key_ax = fig.add_subplot(grid[row + 1, :])
    return fig, pair_axes, marginal_axes, key_ax, 0.05 / height
