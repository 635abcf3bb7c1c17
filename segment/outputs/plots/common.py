"""What the figures share: colours, a new Agg figure, :func:`figure_png` and
:func:`save_figure` (the argument checks are in :mod:`.specs`).

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: pyplot keeps a global registry of open figures (a memory leak in long batch
runs, and not thread-safe) and may try to open a window. Every ``plot_*`` function returns
the Figure; :func:`save_figure` writes it as a PNG atomically and frees it.

Artists that tests and other tools look for carry a ``gid``: ``"history"`` (the EM
objective), ``"mixture"`` (a marginal mixture density), ``"component <k>"`` (a weighted
component's marginal density), ``"ellipse <k> <s>sigma"`` (the s-sigma ellipse of component
k in a pair panel), ``"criterion <name>"`` (one covariance type's criterion values).
"""

import io
import math
import numbers

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from ..files import write_bytes

# Neutral inks shared by all figures, so that the component colours stand out.
INK = "#222222"


HISTORY_BLUE = "#1f5fa8"


RESET_RED = "#b2182b"


HIST_GREY = "#d4d4d4"


def new_figure(figsize, layout="constrained"):
    fig = Figure(figsize=figsize, dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


_SUPERSCRIPT = str.maketrans("-\N{MINUS SIGN}0123456789", "⁻⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class _PlainFormatter(ScalarFormatter):
    """Numbers as plain text, and the multiplier of large magnitudes as "×10ⁿ".

    The tick labels are not mathtext (``useMathText``): it sets up a TeX-like parser and
    lays out every label through it, a tenth of a second per figure for the same look."""

    def get_offset(self):
        offset = super().get_offset()  # "1e6" when the labels are scaled (no offsets here)
        if offset.startswith("1e"):
            return "×10" + offset[2:].translate(_SUPERSCRIPT)
        return offset


def plain_number_axis(axis):
    # Matplotlib's default offset notation ("+4.68e0" in a corner) is easily misread as
    # part of the values; large magnitudes get a x10^n multiplier instead.
    formatter = _PlainFormatter(useOffset=False, useMathText=False)
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
    write_bytes(path, figure_png(fig, dpi=dpi, free=False), overwrite=overwrite)
    free_figure(fig)


def figure_png(fig, *, dpi=110, free=True):
    """The PNG file of ``fig`` as bytes (what :func:`save_figure` writes), and the figure
    freed unless ``free`` is False."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # zlib level 3: nearly level 6's size (figures are mostly flat colour) at 2/3 the time
    fig.savefig(
        buf, format="png", dpi=float(dpi), facecolor="white", pil_kwargs={"compress_level": 3}
    )
    if free:
        free_figure(fig)
    return buf.getvalue()


def free_figure(fig):
    """Drop the contents of ``fig`` (the object stays valid but empty)."""
    # Removing the axes frees the figure's contents; Figure.clear() would first reset every
    # axes (rebuilding its ticks), which cost as much as drawing them.
    for ax in tuple(fig.axes):
        fig.delaxes(ax)
    for artists in (fig.legends, fig.texts, fig.images, fig.lines, fig.patches, fig.artists):
        artists.clear()
