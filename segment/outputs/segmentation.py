"""Writing one segmentation: the label images (segmented, quantized, labels), the soft
outputs and masks, the plots, and last the model file."""

import numpy as np

from ..features import FEATURE_NAMES
from ..soft import overlay, soft_maps
from .files import write_json, write_labels_png, write_palette_png
from .model_file import image_input, model_document, output_record, segmented_palette


def write_segmentation(seg, paths, *, image, options, overwrite, figures, write_model=True):
    """Write the images, plots and (last) the model file of a segmentation."""
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
    if "loglik" in paths and len(getattr(seg.model, "history_", ())):
        save_loglik_plot(seg.model, paths["loglik"], overwrite)
    if "density" in paths:
        d = seg.data
        save_density_plot(
            seg.model,
            paths["density"],
            X=d.X,
            rgb=d.rgb,
            weight=d.weight,
            space=d.space,
            palette=seg.quantized_palette,
            overwrite=overwrite,
        )
    if "bic" in paths and seg.selection is not None:
        _plot_bic(seg.selection, paths["bic"], overwrite)
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
    from .plots import plot_loglik, save_figure

    m = model
    fig = plot_loglik(
        m.history_,
        reset_iterations=m.reset_iterations_,
        converged=m.converged_,
        ylabel="mean log-likelihood per pixel"
        + (" (log-posterior)" if m.prior_ is not None else ""),
    )
    save_figure(fig, path, overwrite=overwrite)


def _plot_bic(selection, path, overwrite):
    from .plots import plot_criterion, save_figure

    ks, values = selection.values()
    fig = plot_criterion(ks, values, chosen=selection.chosen, criterion="BIC")
    save_figure(fig, path, overwrite=overwrite)


def save_density_plot(model, path, *, X, rgb, weight, space, palette, overwrite):
    """NAME.density.png: ``model`` over its feature rows ``X`` (coloured ``rgb``, weighted
    by ``weight``), components in their ``palette`` colours."""
    from gmm import full_covariances

    from .plots import plot_density, save_figure

    m = model
    K, D = m.means_.shape
    cov = full_covariances(m.covariance_type, m.covariances_, K, D)[:, :3, :3]
    X = X[:, :3]
    # Pixels missing a channel (NaN) have no point in a colour projection: they are shown
    # by the fitted density only.
    complete = ~np.isnan(X).any(axis=1)
    if not complete.all():
        X, rgb = X[complete], rgb[complete]
        weight = None if weight is None else weight[complete]
    rows = (
        f"{len(X):,} pixels"
        if weight is None
        else f"{weight.sum():,.0f} pixels, {len(X):,} distinct colours"
    )
    fig = plot_density(
        X,
        m.weights_,
        m.means_[:, :3],
        cov,
        sample_colors=rgb,
        component_colors=palette / 255.0,
        feature_names=FEATURE_NAMES[space],
        sample_weight=weight,
        title=f"Gaussian mixture density: K = {K} component{'s' if K != 1 else ''}, {rows}",
    )
    save_figure(fig, path, overwrite=overwrite)


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
