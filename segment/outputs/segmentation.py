"""Writing one segmentation: the label images (segmented, quantized, labels), the soft
outputs and masks, the plots, and last the model file."""

from ..features import FEATURE_NAMES
from ..soft import overlay, soft_maps
from .files import write_bytes, write_json, write_labels_png, write_palette_png
from .model_file import image_input, model_document, output_record, segmented_palette
from .plot_process import PlotJob


def plot_specs(seg, paths):
    """The specs (:mod:`.plots.specs`) of the figures of ``seg`` that ``paths`` asks for
    (kind -> spec, in the order they are written)."""
    from .plots.specs import criterion_spec, density_spec, loglik_spec

    specs = {}
    if "loglik" in paths and len(getattr(seg.model, "history_", ())):
        specs["loglik"] = loglik_spec(seg.model)
    if "density" in paths:
        d = seg.data
        specs["density"] = density_spec(
            seg.model,
            X=d.X,
            rgb=d.rgb,
            weight=d.weight,
            space=d.space,
            palette=seg.quantized_palette,
        )
    if "bic" in paths and seg.selection is not None:
        specs["bic"] = criterion_spec(seg.selection)
    return specs


def start_plots(seg, paths, worker=None):
    """The :class:`.plot_process.PlotJob` of the figures of ``seg``: handed to ``worker``
    (a :class:`.plot_process.PlotWorker`) now, to be drawn while this process makes the
    labels; drawn when written without one."""
    return PlotJob(plot_specs(seg, paths), worker)


def write_segmentation(
    seg, paths, *, image, options, overwrite, figures, write_model=True, plots=None
):
    """Write the images, plots and (last) the model file of a segmentation; ``plots`` is
    the figures' :class:`.plot_process.PlotJob` if :func:`start_plots` was called."""
    labels = seg.label_image()
    visible = seg.data.visible
    write_palette_png(
        paths["segmented"],
        labels,
        segmented_palette(seg.k),
        visible,
        overwrite=overwrite,
        flat=True,
    )
    # The quantised colours are means of the input's pixel values, so they are in the
    # input's colour space: its ICC profile says which (the display colours are sRGB).
    write_palette_png(
        paths["quantized"],
        labels,
        seg.quantized_palette,
        visible,
        icc_profile=getattr(image, "icc_profile", None),
        overwrite=overwrite,
        flat=True,
    )
    write_labels_png(paths["labels"], labels, seg.k, visible, overwrite=overwrite)
    del labels
    _write_soft(seg, paths, overwrite)
    if plots is None:
        plots = start_plots(seg, paths)
    for kind, png in plots.pngs().items():
        write_bytes(paths[kind], png, overwrite=overwrite)
    if "em" in paths and getattr(seg, "recorder", None) is not None:
        save_animation(seg, paths["em"], overwrite)
    if write_model:
        doc = model_document(
            seg.model,
            input=image_input(image, seg.data.shape),
            options=options,
            space=seg.data.space,
            xy=seg.data.xy,
            palette=seg.quantized_palette,
            figures=figures,
            selection=seg.selection,
        )
        # What --resume checks before it trusts these outputs (see segment.batch.resume).
        doc["outputs"] = output_record(paths["model"])
        write_json(paths["model"], doc, overwrite=overwrite)


def _write_soft(seg, paths, overwrite):
    from .files import write_image_png, write_mask_png

    visible = seg.data.visible
    if "soft" in paths:
        maps = soft_maps(seg)
        for kind in ("soft", "uncertainty", "outliers"):
            write_image_png(paths[kind], maps[kind], visible, overwrite=overwrite)
        del maps
        write_image_png(
            paths["overlay"],
            overlay(seg.data, seg.label_image()),
            visible,
            overwrite=overwrite,
        )
    labels = seg.label_image()
    for kind, path in paths.items():
        if kind.startswith("mask"):
            write_mask_png(path, labels == int(kind[4:]), overwrite=overwrite)


def save_loglik_plot(model, path, overwrite):
    """NAME.loglik.png: the EM objective of ``model`` per iteration."""
    from .plots.render import render
    from .plots.specs import loglik_spec

    write_bytes(path, render("loglik", loglik_spec(model)), overwrite=overwrite)


def save_density_plot(model, path, *, X, rgb, weight, space, palette, overwrite):
    """NAME.density.png: ``model`` over its feature rows ``X`` (coloured ``rgb``, weighted
    by ``weight``), components in their ``palette`` colours."""
    from .plots.render import render
    from .plots.specs import density_spec

    spec = density_spec(model, X=X, rgb=rgb, weight=weight, space=space, palette=palette)
    write_bytes(path, render("density", spec), overwrite=overwrite)


#: Pixels drawn in the animation (a weighted sample: the picture, not the fit, needs them).
ANIMATION_POINTS = 3000


def save_animation(seg, path, overwrite):
    """NAME.em.gif: the recorded EM iterations, then the fitted (sorted) mixture."""
    import numpy as np

    from gmm import full_covariances

    from .animation import write_em_gif

    m, d = seg.model, seg.data
    K, D = m.means_.shape
    w = np.asarray(d.weight if d.weight is not None else np.ones(len(d.X)), dtype=np.float64)
    rng = np.random.default_rng(0)
    n = min(ANIMATION_POINTS, int(np.count_nonzero(w)))
    idx = rng.choice(len(d.X), size=n, replace=False, p=w / w.sum())
    final = (
        m.weights_,
        m.means_[:, :3],
        full_covariances(m.covariance_type, m.covariances_, K, D)[:, :3, :3],
    )
    write_em_gif(
        path,
        np.asarray(d.X[idx, :3], dtype=np.float64),
        np.clip(np.asarray(d.rgb[idx], dtype=np.float64), 0.0, 1.0),
        seg.recorder,
        final,
        names=FEATURE_NAMES[d.space],
        overwrite=overwrite,
    )
