"""A figure's PNG bytes from its spec (:mod:`.specs`): the one drawing path of the plots of a
segmentation, whether they are drawn in this process or in the plot worker."""

from .common import figure_png
from .density import draw_density
from .history import plot_criterion, plot_loglik

#: How each kind of figure is drawn from its spec.
_DRAW = {
    "loglik": lambda spec: plot_loglik(**spec),
    "density": draw_density,
    "bic": lambda spec: plot_criterion(**spec),
}

KINDS = tuple(_DRAW)


def render(kind, spec):
    """The PNG file (bytes) of the figure ``kind`` (one of :data:`KINDS`) of ``spec``."""
    return figure_png(_DRAW[kind](spec))
