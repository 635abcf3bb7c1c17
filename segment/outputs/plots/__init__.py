"""Figures of a fit, drawn with matplotlib's object API (no pyplot state): the log-likelihood
history and the BIC curve (:mod:`.history`), the mixture over the pixels (:mod:`.density`),
and :func:`save_figure` (:mod:`.common`). Imported only when a plot is written: matplotlib
takes half a second to import."""

from .common import save_figure
from .density import plot_density
from .history import plot_criterion, plot_loglik

__all__ = ["plot_criterion", "plot_density", "plot_loglik", "save_figure"]
