"""What the figures share: argument checks, colours, a new Agg figure, and
:func:`save_figure`.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: pyplot keeps a global registry of open figures (a memory leak in long batch
runs, and not thread-safe) and may try to open a window. Every ``plot_*`` function returns
the Figure; :func:`save_figure` writes it as a PNG atomically and frees it.

Artists that tests and other tools look for carry a ``gid``: ``"history"`` (the EM
objective), ``"mixture"`` (a marginal mixture density), ``"component <k>"`` (a weighted
component's marginal density), ``"ellipse <k> <s>sigma"`` (the s-sigma ellipse of component
k in a pair panel), ``"criterion <name>"`` (one covariance type's criterion values).
"""

import math
import numbers

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from ..files import atomic_write

# Neutral inks shared by all figures, so that the component colours stand out.
INK = "#222222"


HISTORY_BLUE = "#1f5fa8"


RESET_RED = "#b2182b"


HIST_GREY = "#d4d4d4"


def float_array(name, value, ndim, shape_hint):
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


def check_rgb(name, value, n, what):
    if value is None:
        return None
    rgb = float_array(name, value, 2, f"({n}, 3)")
    if rgb.shape != (n, 3):
        raise ValueError(
            f"{name} must have shape ({n}, 3), one RGB colour per {what}; got {rgb.shape}."
        )
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(f"{name} must be RGB values in [0, 1]; divide 8-bit colours by 255.")
    return rgb


def check_title(title):
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string or None; got {type(title).__name__}.")
    return title


def new_figure(figsize, layout="constrained"):
    fig = Figure(figsize=figsize, dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def plain_number_axis(axis):
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
        # zlib level 3: nearly level 6's size (figures are mostly flat colour) at 2/3 the time
        fig.savefig(
            f, format="png", dpi=float(dpi), facecolor="white", pil_kwargs={"compress_level": 3}
        )
    # Removing the axes frees the figure's contents; Figure.clear() would first reset every
    # axes (rebuilding its ticks), which cost as much as drawing them.
    for ax in tuple(fig.axes):
        fig.delaxes(ax)
    for artists in (fig.legends, fig.texts, fig.images, fig.lines, fig.patches, fig.artists):
        artists.clear()
