"""Curves of a fit: the EM objective per iteration (:func:`plot_loglik`) and a model
selection criterion per number of components (:func:`plot_criterion`)."""

import numpy as np
from matplotlib.ticker import MaxNLocator

from ...color import default_component_colors
from .common import HISTORY_BLUE, INK, RESET_RED, new_figure, plain_number_axis
from .specs import check_title, float_array


def _check_history(history):
    y = float_array("history", history, 1, "(n_iterations,)")
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
    title = check_title(title)
    if not isinstance(ylabel, str):
        raise ValueError(f"ylabel must be a string; got {type(ylabel).__name__}.")

    # Fixed margins (inches): a layout engine measuring the tick labels cost more than the
    # drawing. The y tick labels are at most 7 characters (the multiplier sits on top).
    width, height = 7.0, 4.2
    fig = new_figure((width, height), layout=None)
    fig.subplots_adjust(
        left=1.0 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.65 / height
    )
    ax = fig.add_subplot()
    x = np.arange(1, n + 1)
    ax.plot(
        x,
        y,
        marker="o",
        markersize=_marker_size(n),
        linewidth=1.6,
        color=HISTORY_BLUE,
        label="EM objective",
        gid="history",
        zorder=3,
    )
    for i, r in enumerate(resets):
        ax.axvline(
            r,
            linestyle=":",
            linewidth=1.4,
            color=RESET_RED,
            label="component reset" if i == 0 else "_nolegend_",
            zorder=2,
        )
    _mark_final(ax, x, y)

    pad = max(0.5, 0.02 * n)
    ax.set_xlim(1 - pad, n + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    plain_number_axis(ax.yaxis)
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
        markeredgecolor=HISTORY_BLUE,
        markeredgewidth=1.8,
        linestyle="none",
        label="final value",
        clip_on=False,
        zorder=4,
    )


_MARKERS = ("o", "s", "^", "D", "v", "P", "h")


def _check_ks(ks):
    k = float_array("ks", ks, 1, "(n_k,)")
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
    title = check_title(title)

    fig = new_figure((7.0, 4.4))
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
            edgecolors=INK,
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
    plain_number_axis(ax.yaxis)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion} (lower is better)")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(title="covariance type", loc="best", frameon=True, framealpha=0.9, fontsize=9)
    ax.set_title(title if title is not None else f"Model selection by {criterion}")
    return fig
