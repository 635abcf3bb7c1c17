"""Matplotlib figures of a fitted mixture: EM history, density over the data, model choice.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: pyplot keeps a global registry of open figures (a memory leak in long batch
runs, and not thread-safe) and may try to open a window. Every ``plot_*`` function returns
the Figure; :func:`save_figure` writes it as a PNG atomically and frees it.

Artists that tests and other tools look for carry a ``gid``: ``"history"`` (the EM
objective), ``"mixture"`` (a marginal mixture density), ``"component <k>"`` (a weighted
component's marginal density), ``"ellipse <k> <s>sigma"`` (the s-sigma ellipse of component
k in a pair panel), ``"criterion <name>"`` (one covariance type's criterion values).
"""

import itertools
import math
import numbers
from typing import NamedTuple

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from .io import atomic_write
from .palette import default_component_colors

__all__ = [
    "default_component_colors",
    "plot_criterion",
    "plot_density",
    "plot_loglik",
    "save_figure",
]

# Neutral inks shared by all figures, so that the component colours stand out.
_INK = "#222222"
_HISTORY_BLUE = "#1f5fa8"
_RESET_RED = "#b2182b"
_HIST_GREY = "#d4d4d4"

# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _float_array(name, value, ndim, shape_hint):
    """``value`` as a new float64 array with ``ndim`` dimensions, all finite."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers of shape {shape_hint}.") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_hint}; got an array of shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; remove or fill those values.")
    return arr


def _check_rgb(name, value, n, what):
    if value is None:
        return None
    rgb = _float_array(name, value, 2, f"({n}, 3)")
    if rgb.shape != (n, 3):
        raise ValueError(
            f"{name} must have shape ({n}, 3), one RGB colour per {what}; got {rgb.shape}."
        )
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(f"{name} must be RGB values in [0, 1]; divide 8-bit colours by 255.")
    return rgb


def _check_title(title):
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string or None; got {type(title).__name__}.")
    return title


def _check_random_state(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise ValueError(
        "random_state must be None, an int seed or a numpy.random.Generator; "
        f"got {type(random_state).__name__}."
    )


# ---------------------------------------------------------------------------------------
# Figures and saving
# ---------------------------------------------------------------------------------------


def _new_figure(figsize):
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain_number_axis(axis):
    # Matplotlib's default offset notation ("+4.68e0" in a corner) is easily misread as
    # part of the values; large magnitudes get a x10^n multiplier instead.
    formatter = ScalarFormatter(useOffset=False, useMathText=True)
    formatter.set_powerlimits((-3, 5))
    axis.set_major_formatter(formatter)


def save_figure(fig, path, *, overwrite=False, dpi=110):
    """Write ``fig`` as a PNG file atomically, then free the figure's contents.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure, e.g. from :func:`plot_loglik`; it is cleared after a successful write
        (the returned object stays valid but empty), so batch runs do not accumulate
        memory.
    path : str or Path
        Output file; its name must end in ``.png``.
    overwrite : bool, default False
        Replace an existing file.
    dpi : float, default 110
        Resolution; the pixel size is the figure size in inches times ``dpi``.

    Raises
    ------
    TypeError
        If ``fig`` is not a matplotlib Figure.
    ValueError
        If ``path`` does not end in ``.png`` or ``dpi`` is not a positive number.
    SegmentError
        If the file exists (and not ``overwrite``) or cannot be written; nothing is left
        behind and the figure is kept.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}.")
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"save_figure writes PNG; give a file name ending in .png, not {path}.")
    if (
        isinstance(dpi, bool)
        or not isinstance(dpi, numbers.Real)
        or not math.isfinite(dpi)
        or dpi <= 0
    ):
        raise ValueError(f"dpi must be a positive number; got {dpi!r}.")
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with atomic_write(path, overwrite=overwrite) as f:
        fig.savefig(f, format="png", dpi=float(dpi), facecolor="white")
    fig.clear()


# ---------------------------------------------------------------------------------------
# EM history
# ---------------------------------------------------------------------------------------


def _check_history(history):
    y = _float_array("history", history, 1, "(n_iterations,)")
    if y.size == 0:
        raise ValueError("history is empty; it needs the objective of at least one iteration.")
    return y


def _check_resets(reset_iterations, n):
    try:
        resets = np.array(reset_iterations, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError("reset_iterations must be a sequence of iteration numbers.") from None
    if resets.size and (
        not np.isfinite(resets).all()
        or (resets != np.round(resets)).any()
        or resets.min() < 1
        or resets.max() > n
    ):
        raise ValueError(
            f"reset_iterations must be whole iteration numbers between 1 and {n} "
            f"(the length of history); got {resets.tolist()}."
        )
    return np.unique(resets.astype(int))


def _marker_size(n):
    # Markers that stay separate: big for a few iterations, tiny for hundreds.
    if n <= 30:
        return 5.0
    if n <= 100:
        return 3.0
    return 1.8


def _status_text(y, n, converged, n_resets):
    parts = [f"final value {y[-1]:.6g}"]
    iterations = f"{n} iteration{'s' if n != 1 else ''}"
    if converged is True:
        parts.append(f"converged after {iterations}")
    elif converged is False:
        parts.append(f"not converged (stopped after {iterations})")
    else:
        parts.append(iterations)
    if n_resets:
        parts.append(f"{n_resets} component reset{'s' if n_resets != 1 else ''}")
    return "  ·  ".join(parts)


def plot_loglik(
    history,
    *,
    reset_iterations=(),
    converged=None,
    title=None,
    ylabel="mean log-likelihood per pixel",
):
    """Line plot of the EM objective over the iterations.

    Parameters
    ----------
    history : array-like of shape (n,)
        The objective after iterations 1..n (``GaussianMixture.history_``).
    reset_iterations : sequence of int, default ()
        Iterations after which a collapsed component was reset
        (``GaussianMixture.reset_iterations_``); each gets a dotted vertical line.
    converged : bool or None, default None
        Whether EM met its tolerance; shown beside the final value. None shows nothing.
    title : str, optional
        Figure title; default "EM convergence".
    ylabel : str, default "mean log-likelihood per pixel"
        Label of the y axis.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; its first line (gid ``"history"``) holds x = 1..n and y = ``history``.

    Raises
    ------
    ValueError
        If ``history`` is not a non-empty 1-D finite array, or a reset iteration is outside
        1..n.
    """
    y = _check_history(history)
    n = y.size
    resets = _check_resets(reset_iterations, n)
    if converged is not None and not isinstance(converged, bool | np.bool_):
        raise ValueError(f"converged must be True, False or None; got {converged!r}.")
    title = _check_title(title)
    if not isinstance(ylabel, str):
        raise ValueError(f"ylabel must be a string; got {type(ylabel).__name__}.")

    fig = _new_figure((7.0, 4.2))
    ax = fig.add_subplot()
    x = np.arange(1, n + 1)
    ax.plot(
        x,
        y,
        marker="o",
        markersize=_marker_size(n),
        linewidth=1.6,
        color=_HISTORY_BLUE,
        label="EM objective",
        gid="history",
        zorder=3,
    )
    for i, r in enumerate(resets):
        ax.axvline(
            r,
            linestyle=":",
            linewidth=1.4,
            color=_RESET_RED,
            label="component reset" if i == 0 else "_nolegend_",
            zorder=2,
        )
    _mark_final(ax, x, y)

    pad = max(0.5, 0.02 * n)
    ax.set_xlim(1 - pad, n + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    _plain_number_axis(ax.yaxis)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    if y.min() == y.max():
        # One point, or a flat history: matplotlib's default range would be a sliver.
        half = abs(y[0]) * 0.05 if y[0] != 0 else 1.0
        ax.set_ylim(y[0] - half, y[0] + half)
    ax.legend(loc="best", frameon=True, framealpha=0.9, fontsize=9)
    # The status sits under the title, where it can never hide a part of the curve.
    ax.set_title(_status_text(y, n, converged, resets.size), fontsize=9, color="#555555")
    fig.suptitle(title if title is not None else "EM convergence")
    return fig


def _mark_final(ax, x, y):
    """Ring the last point: the value the fit ends with."""
    ax.plot(
        x[-1:],
        y[-1:],
        marker="o",
        markersize=9,
        markerfacecolor="none",
        markeredgecolor=_HISTORY_BLUE,
        markeredgewidth=1.8,
        linestyle="none",
        label="final value",
        clip_on=False,
        zorder=4,
    )


# ---------------------------------------------------------------------------------------
# Density of the mixture over the data
# ---------------------------------------------------------------------------------------

_MAX_SHOWN_FEATURES = 3
_LEGEND_MAX_K = 12
_SIGMAS = (1, 2)


def _check_density_inputs(X, weights, means, covariances, sample_weight):
    X = _float_array("X", X, 2, "(n_samples, n_features)")
    n, D = X.shape
    if n == 0 or D == 0:
        raise ValueError(f"X must have at least one row and one feature; got shape {X.shape}.")
    w = _float_array("weights", weights, 1, "(n_components,)")
    K = w.size
    if K == 0:
        raise ValueError("weights is empty; the mixture needs at least one component.")
    if (w < 0).any() or not np.isclose(w.sum(), 1.0, atol=1e-3):
        raise ValueError(f"weights must be non-negative and sum to 1; they sum to {w.sum():.6g}.")
    w = w / w.sum()
    mu = _float_array("means", means, 2, f"({K}, {D})")
    if mu.shape != (K, D):
        raise ValueError(
            f"means must have shape ({K}, {D}) (n_components, n_features) to match weights "
            f"and X; got {mu.shape}."
        )
    cov = _float_array("covariances", covariances, 3, f"({K}, {D}, {D})")
    if cov.shape != (K, D, D):
        raise ValueError(
            f"covariances must be full matrices of shape ({K}, {D}, {D}); got {cov.shape}. "
            "Convert diag, tied or spherical covariances to full matrices first "
            "(gmm.full_covariances)."
        )
    scale = np.abs(cov).max()
    if not np.allclose(cov, cov.transpose(0, 2, 1), rtol=1e-6, atol=1e-9 * max(scale, 1e-300)):
        raise ValueError("covariances must be symmetric matrices.")
    diag = np.diagonal(cov, axis1=1, axis2=2)
    if (diag <= 0).any():
        raise ValueError(
            "covariances must have positive variances on the diagonal; a component has a "
            "zero or negative variance (add a small regularisation such as reg_covar)."
        )
    sw = None
    if sample_weight is not None:
        sw = _float_array("sample_weight", sample_weight, 1, f"({n},)")
        if sw.shape != (n,):
            raise ValueError(
                f"sample_weight must have shape ({n},), one per row of X; got {sw.shape}."
            )
        if (sw < 0).any() or sw.sum() <= 0:
            raise ValueError("sample_weight must be non-negative with a positive sum.")
    return X, w, mu, cov, sw


def _check_feature_names(feature_names, D):
    if feature_names is None:
        return ("R", "G", "B") if D == 3 else tuple(f"x{d + 1}" for d in range(D))
    if isinstance(feature_names, str):
        raise ValueError("feature_names must be a sequence of strings, e.g. ('R', 'G', 'B').")
    names = tuple(feature_names)
    if len(names) != D or not all(isinstance(s, str) for s in names):
        raise ValueError(f"feature_names must be {D} strings, one per column of X; got {names!r}.")
    return names


def _check_max_points(max_points):
    if (
        isinstance(max_points, bool)
        or not isinstance(max_points, numbers.Integral)
        or max_points < 1
    ):
        raise ValueError(f"max_points must be a positive integer; got {max_points!r}.")
    return int(max_points)


def _scatter_rows(n, sample_weight, max_points, rng):
    """Indices of at most ``max_points`` rows for the scatter panels, in random order (so no
    part of the image is always drawn on top)."""
    m = min(n, max_points)
    if sample_weight is None:
        return rng.permutation(n) if m == n else rng.choice(n, size=m, replace=False)
    # With replacement, rows appear in proportion to their weight (unique colours weighted
    # by their pixel counts look like the pixels themselves).
    return rng.choice(n, size=m, replace=True, p=sample_weight / sample_weight.sum())


def _used_values(column, sample_weight):
    return column if sample_weight is None else column[sample_weight > 0]


def _axis_limits(values):
    """Data range with a 5 % margin; a constant feature gets a small window around it."""
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(lo) * 0.1, 1e-3)
        return lo - span, hi + span
    return lo - 0.05 * span, hi + 0.05 * span


_MAX_BINS = 64
_UNIQUE_LIMIT = 4_000_000


def _histogram_edges(values):
    """Bin edges over the data range, at most 64 bins.

    The number of bins follows the number of distinct values (square-root rule), not the
    number of rows, so unique colours weighted by their counts get the same bins as the
    pixels themselves. Quantised features (8-bit colours: multiples of 1/255) get edges
    half-way between the levels and the same number of levels in every bin; edges at
    arbitrary places would catch 3 levels in one bin and 4 in the next and draw a false
    comb pattern.
    """
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        half = max(abs(lo) * 1e-3, 1e-6)
        return np.array([lo - half, hi + half])
    if values.size > _UNIQUE_LIMIT:
        return np.linspace(lo, hi, _MAX_BINS + 1)
    levels = np.unique(values)
    if levels.size <= 4096:
        step = float(np.min(np.diff(levels)))
        ratio = (levels - lo) / step
        if np.allclose(ratio, np.round(ratio), atol=1e-3):
            n_levels = round((hi - lo) / step) + 1
            per_bin = math.ceil(n_levels / _MAX_BINS)
            n_edges = math.ceil(n_levels / per_bin) + 1
            return lo - step / 2 + per_bin * step * np.arange(n_edges)
    n_bins = int(np.clip(math.sqrt(levels.size), 8, _MAX_BINS))
    return np.linspace(lo, hi, n_bins + 1)


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


def _component_styles(weights):
    """Line width and alpha per component, growing with its weight, so the components that
    explain most pixels dominate the picture; thinner overall for many components, whose
    outlines would otherwise merge into one tangle."""
    rel = np.sqrt(weights / weights.max())
    thinning = min(1.0, math.sqrt(8.0 / weights.size))
    return (0.7 + 1.8 * rel) * thinning, 0.45 + 0.55 * rel


def _draw_pair(ax, points, point_colours, mix, i, j, limits, names):
    """Scatter of features i and j of ``points`` (m, D), then every component's ellipses and
    mean."""
    m = points.shape[0]
    size = float(np.clip(300.0 / math.sqrt(m), 1.0, 16.0))
    alpha = float(np.clip(0.9 - 0.15 * math.log10(m), 0.2, 0.8))
    ax.scatter(
        points[:, i],
        points[:, j],
        s=size,
        c=point_colours,
        alpha=alpha,
        linewidths=0,
        rasterized=True,
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
            ax.add_patch(ellipse)
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


def _draw_marginal(ax, values, sample_weight, mix, d, limits, name):
    """Weighted histogram of ``values`` (feature d of X) under the mixture's marginal
    density and its weighted components."""
    lo, hi = limits
    edges = _histogram_edges(_used_values(values, sample_weight))
    heights, _ = np.histogram(values, bins=edges, weights=sample_weight, density=True)
    centers = mix.means[:, d]
    scales = np.sqrt(mix.covariances[:, d, d])
    x = _density_grid(lo, hi, centers, scales)
    parts = _weighted_normal_pdfs(x, mix.weights, centers, scales)
    mixture = parts.sum(axis=0)
    # The mixture line is drawn first so that it is ax.lines[0]; zorder puts it on top.
    ax.plot(x, mixture, color=_INK, linewidth=2.2, gid="mixture", zorder=4)
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
    ax.stairs(heights, edges, fill=True, color=_HIST_GREY, zorder=1)
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
                color="white" if lum < 0.5 else _INK,
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("mixture weights by component (colour key; numbers are component indices)")


def _style_legend_handles(has_pairs, n_shown, n):
    handles = [
        Patch(facecolor=_HIST_GREY, label="data histogram"),
        Line2D([], [], color=_INK, linewidth=2.2, label="mixture density"),
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
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markersize=4,
                markerfacecolor="#999999",
                markeredgewidth=0,
                label=f"samples ({n_shown:,} of {n:,})" if n_shown < n else "samples",
            ),
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
    max_points=20000,
    random_state=0,
    title=None,
):
    """The fitted mixture drawn over the data: pair projections and marginal densities.

    Top row, one panel per pair of the first three features (three panels for D >= 3, one
    for D = 2, none for D = 1): the sample as small points in their own colours, and each
    component's 1- and 2-sigma ellipses of its projected covariance (solid and dashed,
    thicker and more opaque for larger weights) with its mean. Bottom row, one panel per
    feature (the first three): the weighted histogram of X (density), the mixture's marginal
    density sum_k w_k N(x | mu_kd, Sigma_kdd) as a thick line and each weighted component as
    a thin line. A bar of the weights in the component colours serves as the colour key.

    Parameters
    ----------
    X : array-like of shape (n, D)
        Feature rows, e.g. a sample of an image's pixels; histograms use all rows, the
        scatter panels at most ``max_points``.
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
        weighted, and scatter rows are drawn with probability proportional to weight.
    max_points : int, default 20000
        Most rows drawn in each scatter panel.
    random_state : None, int or numpy.random.Generator, default 0
        Seed of the scatter subsample.
    title : str, optional
        Figure title; default names K, D and n.

    Returns
    -------
    fig : matplotlib.figure.Figure
        In each marginal panel ``lines[0]`` (gid ``"mixture"``) is the mixture density and
        the lines with gid ``"component <k>"`` the weighted components; the ellipse patches
        carry gid ``"ellipse <k> <s>sigma"``.

    Raises
    ------
    ValueError
        If shapes disagree (the message names the expected shape), values are not finite,
        weights do not sum to 1, covariances are not symmetric with positive variances, or
        colours are outside [0, 1].
    """
    X, w, mu, cov, sw = _check_density_inputs(X, weights, means, covariances, sample_weight)
    n, D = X.shape
    K = w.size
    sample_colours = _check_rgb("sample_colors", sample_colors, n, "row of X")
    if component_colors is None:
        cc = default_component_colors(K)
    else:
        cc = _check_rgb("component_colors", component_colors, K, "component")
    names = _check_feature_names(feature_names, D)
    max_points = _check_max_points(max_points)
    rng = _check_random_state(random_state)
    title = _check_title(title)

    shown = min(D, _MAX_SHOWN_FEATURES)
    pairs = list(itertools.combinations(range(shown), 2))
    limits = [_axis_limits(_used_values(X[:, d], sw)) for d in range(shown)]
    mix = _Mixture(w, mu, cov, cc, *_component_styles(w))
    rows = _scatter_rows(n, sw, max_points, rng) if pairs else np.arange(0)
    point_colours = "#8a8a8a" if sample_colours is None else sample_colours[rows]

    fig, pair_axes, marginal_axes, key_ax = _density_layout(shown, len(pairs))
    for ax, (i, j) in zip(pair_axes, pairs, strict=True):
        _draw_pair(ax, X[rows], point_colours, mix, i, j, limits, names)
    for d, ax in enumerate(marginal_axes):
        _draw_marginal(ax, X[:, d], sw, mix, d, limits[d], names[d])
    _draw_weight_key(key_ax, w, cc)

    handles = _style_legend_handles(bool(pairs), rows.size, n)
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 4 if shown < 3 else 7),
        frameon=False,
        fontsize=9,
    )
    if title is None:
        title = f"Gaussian mixture density: K = {K} component{'s' if K != 1 else ''}, {n:,} samples"
        if D > _MAX_SHOWN_FEATURES:
            title += f" (features 1–{_MAX_SHOWN_FEATURES} of {D} shown)"
    fig.suptitle(title)
    return fig


def _density_layout(shown, n_pairs):
    """Figure and axes: pair panels on top, marginals below, the weight key at the bottom."""
    n_cols = shown
    width = {1: 6.0, 2: 8.5, 3: 12.5}[shown]
    height_ratios = ([1.25] if n_pairs else []) + [1.0, 0.13]
    height = {1: 4.2, 2: 8.6, 3: 9.6}[shown]
    fig = _new_figure((width, height))
    grid = fig.add_gridspec(len(height_ratios), n_cols, height_ratios=height_ratios)
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
    return fig, pair_axes, marginal_axes, key_ax


# ---------------------------------------------------------------------------------------
# Model selection
# ---------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "h")


def _check_ks(ks):
    k = _float_array("ks", ks, 1, "(n_k,)")
    if k.size == 0:
        raise ValueError("ks is empty; give the numbers of components that were fitted.")
    if (k != np.round(k)).any() or k.min() < 1:
        raise ValueError(f"ks must be positive whole numbers of components; got {list(ks)}.")
    if (np.diff(k) <= 0).any():
        raise ValueError(f"ks must be strictly increasing; got {list(ks)}; sort them first.")
    return k.astype(int)


def _check_criterion_values(values, ks):
    if not isinstance(values, dict) or not values:
        raise ValueError(
            "values must be a non-empty dict {covariance_type: criterion values, one per k}."
        )
    series = {}
    for name, seq in values.items():
        try:
            v = np.array(seq, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"values[{name!r}] must be a sequence of numbers.") from None
        if v.shape != ks.shape:
            raise ValueError(
                f"values[{name!r}] must have {ks.size} values, one per k in ks; got shape "
                f"{v.shape}."
            )
        if np.isinf(v).any():
            raise ValueError(
                f"values[{name!r}] contains infinity; use NaN for models that were not fitted."
            )
        series[str(name)] = v
    return series


def _check_chosen(chosen, ks, series):
    if chosen is None:
        return None
    try:
        k, name = chosen
    except (TypeError, ValueError):
        raise ValueError(
            f"chosen must be a pair (k, covariance_type), e.g. (8, 'full'); got {chosen!r}."
        ) from None
    name = str(name)
    if name not in series or k not in ks:
        raise ValueError(
            f"chosen {chosen!r} is not among the plotted models: k must be in {ks.tolist()} "
            f"and the covariance type one of {list(series)}."
        )
    index = int(np.flatnonzero(ks == k)[0])
    value = series[name][index]
    if not np.isfinite(value):
        raise ValueError(f"chosen {chosen!r} has no criterion value (NaN); choose a fitted model.")
    return int(k), name, float(value)


def plot_criterion(ks, values, *, chosen=None, criterion="BIC", title=None):
    """Model-selection plot: the information criterion against K, one line per covariance
    type.

    Parameters
    ----------
    ks : array-like of int, shape (n_k,)
        Numbers of components, strictly increasing.
    values : dict of str to array-like of shape (n_k,)
        Criterion value per k for each covariance type; NaN where the model was not fitted
        (the line has a gap there).
    chosen : tuple (k, covariance_type), optional
        The selected model, marked with a star.
    criterion : str, default "BIC"
        Name of the criterion, shown in the y label; lower must be better.
    title : str, optional
        Figure title; default "Model selection by <criterion>".

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; its i-th line (gid ``"criterion <name>"``) holds x = ``ks`` and y =
        the i-th series of ``values``, in dict order.

    Raises
    ------
    ValueError
        If ``ks`` is not strictly increasing positive integers, a series has the wrong
        length or contains infinity, or ``chosen`` is not a plotted, fitted model.
    """
    k = _check_ks(ks)
    series = _check_criterion_values(values, k)
    chosen = _check_chosen(chosen, k, series)
    if not isinstance(criterion, str) or not criterion:
        raise ValueError(f"criterion must be a non-empty string such as 'BIC'; got {criterion!r}.")
    title = _check_title(title)

    fig = _new_figure((7.0, 4.4))
    ax = fig.add_subplot()
    colours = default_component_colors(len(series))
    for i, (name, v) in enumerate(series.items()):
        ax.plot(
            k,
            v,
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=5,
            linewidth=1.6,
            color=colours[i],
            label=name,
            gid=f"criterion {name}",
            zorder=3,
        )
    if chosen is not None:
        ck, cname, cvalue = chosen
        ax.scatter(
            [ck],
            [cvalue],
            marker="*",
            s=260,
            facecolor="#ffd21f",
            edgecolors=_INK,
            linewidths=1.0,
            label=f"chosen: K = {ck}, {cname}",
            zorder=5,
        )
    if k.size <= 20:
        ax.set_xticks(k)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Room beyond the end points so that a chosen model at either end is not cut in half.
    pad = max(0.6, 0.04 * float(k[-1] - k[0]))
    ax.set_xlim(k[0] - pad, k[-1] + pad)
    _plain_number_axis(ax.yaxis)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion} (lower is better)")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(title="covariance type", loc="best", frameon=True, framealpha=0.9, fontsize=9)
    ax.set_title(title if title is not None else f"Model selection by {criterion}")
    return fig
