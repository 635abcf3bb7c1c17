"""The work of ``segment image`` and ``segment apply`` on one file, one function each
(quantisation is :mod:`segment.quantize.run`, folders :mod:`segment.batch`). The CLI only
parses options and calls these.

``segment_file`` is: load (:mod:`.imageio`) → pixel features (:mod:`.features`) → fit
(:mod:`.fit`) → labels (:mod:`.labels`, :mod:`.regions`) → outputs (:mod:`.outputs`). The
outputs of an image are written as one atomic group: all of them or none;
``NAME.model.json`` lands last, so its presence marks a complete set (batch ``--resume``
relies on that).
"""

import time
import warnings
from pathlib import Path

import numpy as np

from .errors import SegmentError
from .features import NOTHING_TO_SEGMENT, pixel_data
from .fit import figures_of, fit_data, segmentation_of
from .imageio.image import Image
from .imageio.read import iter_frames, load_image
from .mdl import DEFAULTS, FEATURE_SETTINGS, MERGE_SETTINGS, data_features, describe_regions
from .options import FitOptions, default_smooth
from .outputs.files import atomic_group
from .outputs.model_file import ImageInfo
from .outputs.paths import check_outputs, make_dir, output_paths
from .outputs.segmentation import start_plots, write_segmentation


def frames(path, all_frames, max_pixels):
    if all_frames:
        yield from iter_frames(path, max_pixels=max_pixels)
    else:
        yield load_image(path, max_pixels=max_pixels)


def segment_file(
    path,
    out_dir,
    options,
    *,
    stem=None,
    overwrite=False,
    plots=True,
    all_frames=False,
    max_pixels=None,
    on_iteration=None,
    inputs=(),
    soft=False,
    masks=False,
    animate=False,
    plot_worker=None,
):
    """Segment one file (each of its frames with ``all_frames``) and write its outputs.

    ``soft`` adds the soft, uncertainty, outliers and overlay images; ``masks`` one mask
    image per component; ``animate`` NAME.em.gif, EM's iterations drawn over the colours
    (not with a range of k, where many fits compete). ``plot_worker``
    (:func:`segment.outputs.plot_process.plot_worker`) draws the plots while the labels
    are made.

    Returns
    -------
    list of dict
        One summary per frame: the figures, the outputs written and the seconds taken.
    """
    options.validate()

    def fit(data, path, fitted):
        recorder = None
        if animate and not options.selects:
            from .outputs.animation import EMRecorder

            recorder = EMRecorder(options.covariance_type, [0, 1, 2], then=on_iteration)
        seg = fit_data(data, options, recorder or on_iteration, where=path)
        seg.recorder = recorder
        fitted(seg)
        figures = figures_of(seg)
        if animate and recorder is None:
            figures["notes"] = [
                *figures.get("notes", []),
                "no animation: k was chosen among several fits (give one k for --animate).",
            ]
        return seg, figures

    return _each_frame(
        path,
        out_dir,
        options,
        fit,
        stem=stem,
        overwrite=overwrite,
        plots=plots,
        all_frames=all_frames,
        max_pixels=max_pixels,
        inputs=inputs,
        soft=soft,
        masks=masks,
        animate=animate and not options.selects,
        plot_worker=plot_worker,
    )


def _each_frame(
    path,
    out_dir,
    options,
    segment,
    *,
    stem,
    overwrite,
    plots,
    all_frames,
    max_pixels,
    inputs,
    skip=(),
    soft=False,
    masks=False,
    animate=False,
    plot_worker=None,
):
    """The loop shared by the commands: per frame, check the outputs, make the features,
    release the decoded pixels, ``segment(data, path, fitted)`` -> (Segmentation, figures)
    (calling ``fitted(seg)`` once the model is fitted, before the labels), write."""
    path = Path(path)
    stem = stem or path.stem
    out_dir = Path(out_dir)
    make_dir(out_dir)
    summaries = []
    skipped = []  # notes on frames with nothing to segment, for the next (or last) summary
    n_frames = 0
    for image in frames(path, all_frames, max_pixels):
        n_frames = image.n_frames
        if all_frames and image.alpha is not None and not image.alpha.any():
            skipped.append(f"frame {image.frame}: {NOTHING_TO_SEGMENT}; skipped.")
            continue
        t0 = time.perf_counter()
        info = ImageInfo.of(image)
        frame_stem = stem if not all_frames or info.n_frames == 1 else f"{stem}.f{info.frame:03d}"
        max_k = options.k_range[1] if options.k_range else options.k
        paths = output_paths(
            out_dir,
            frame_stem,
            plots=plots,
            soft=soft,
            masks=max_k if masks else 0,
            selection=options.selects,
            animate=animate,
        )
        for kind in skip:
            paths.pop(kind, None)
        check_outputs(paths.values(), [path, *inputs], overwrite=overwrite)
        data = pixel_data(image, **options.data_kwargs())
        image_notes = list(getattr(image, "notes", ()))
        del image  # the features (or colour keys) carry all that is needed from here
        plot_jobs = []  # the figures' PlotJob, started by ``fitted``

        def fitted(seg, paths=paths, plot_jobs=plot_jobs):
            plot_jobs.append(start_plots(seg, paths, plot_worker))

        seg, figures = segment(data, path, fitted)
        image_notes, skipped = skipped + image_notes, []
        if image_notes:
            figures["notes"] = image_notes + list(figures.get("notes", []))
        # k may have been lowered (fewer distinct colours): no masks of absent components
        paths = {
            k: v for k, v in paths.items() if not (k.startswith("mask") and int(k[4:]) >= seg.k)
        }
        with atomic_group():  # all outputs of the image, or none
            write_segmentation(
                seg,
                paths,
                image=info,
                options=options,
                overwrite=overwrite,
                figures=figures,
                plots=plot_jobs[0] if plot_jobs else None,
            )
        summaries.append(
            {
                "input": str(path),
                "frame": info.frame,
                **figures,
                "seconds": time.perf_counter() - t0,
                "outputs": {k: str(v) for k, v in paths.items()},
            }
        )
    if skipped and not summaries:
        raise SegmentError(f"{path}: {NOTHING_TO_SEGMENT} (in all {n_frames} frames).")
    if skipped:
        summaries[-1]["notes"] = list(summaries[-1].get("notes", [])) + skipped
    return summaries


def apply_file(
    model,
    options,
    path,
    out_dir,
    *,
    stem=None,
    overwrite=False,
    plots=True,
    all_frames=False,
    max_pixels=None,
    inputs=(),
    soft=False,
    masks=False,
    plot_worker=None,
):
    """Label an image with a saved model (no fitting) and write its outputs (the density
    plot drawn by ``plot_worker`` while the labels are made, as in :func:`segment_file`)."""

    def label(data, path, fitted):
        if data.X.shape[1] != model.means_.shape[1]:
            raise SegmentError(
                f"{path}: the model expects {model.means_.shape[1]} features but "
                f"this image gives {data.X.shape[1]}."
            )
        seg = segmentation_of(model, data, (), options)
        fitted(seg)
        psnr_db = seg.psnr()
        loglik, bic = seg.loglik_and_bic()
        return seg, {
            "k": int(seg.k),
            "regions": seg.n_regions,
            "log_likelihood": loglik,
            "bic": bic,
            "psnr_db": psnr_db,
            "pixels": data.n_pixels,
        }

    return _each_frame(
        path,
        out_dir,
        options,
        label,
        stem=stem,
        overwrite=overwrite,
        plots=plots,
        all_frames=all_frames,
        max_pixels=max_pixels,
        inputs=inputs,
        skip=("loglik", "bic"),
        soft=soft,
        masks=masks,
        plot_worker=plot_worker,
    )


def segment_regions(pixels, *, visible=None, seed=0, n_regions=None, **settings):
    """Segment an (H, W, 3) image (uint8, or float in [0, 1]) into regions.

    ``settings`` override :data:`segment.mdl.DEFAULTS`: the region method of
    ``segment image`` on an array, without files (benchmarks and tests use it).
    Returns labels (H, W) int32, -1 where invisible.
    """
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; use {sorted(DEFAULTS)}.")
    opts = {**DEFAULTS, **settings}
    pixels = np.asarray(pixels)
    smooth = opts["smooth"]
    if smooth is None:
        smooth = default_smooth(pixels.shape[:2], regions=True)
    image = Image(
        pixels=pixels,
        alpha=visible,
        path=Path("array"),
        format="array",
        mode="RGB",
        frame=0,
        n_frames=1,
    )
    options = FitOptions(
        k=opts["k"],
        xy=0.0,
        space=opts["mixture_space"],
        smooth=smooth,
        min_region=0,
        regions=0,
        seed=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = fit_data(pixel_data(image, **options.data_kwargs()), options)
    labels = seg.label_image()
    feats = data_features(
        seg.data, space=opts["feature_space"], **{k: opts[k] for k in FEATURE_SETTINGS}
    )
    out, _ = describe_regions(
        labels,
        seg.k,
        feats,
        visible=visible,
        n_regions=n_regions,
        **{k: opts[k] for k in MERGE_SETTINGS},
    )
    return out
