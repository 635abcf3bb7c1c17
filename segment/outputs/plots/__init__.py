"""Figures of a fit, drawn with matplotlib's object API (no pyplot state): the log-likelihood
history and the BIC curve (:mod:`.history`), the mixture over the pixels (:mod:`.density`),
and :func:`save_figure` (:mod:`.common`).

matplotlib takes half a second to import, so it is imported only when a figure is drawn:
the names below load their modules when first used, and :mod:`.specs` (what a figure
shows, computed with numpy) and :mod:`.histograms` never import it. :mod:`.render` turns a
spec into PNG bytes, in this process or in the plot worker (:mod:`.worker`)."""

import importlib

_HOMES = {
    "plot_criterion": "history",
    "plot_density": "density",
    "plot_loglik": "history",
    "save_figure": "common",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
