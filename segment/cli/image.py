"""``segment image``: segment images with a mixture fitted to their pixels."""

from pathlib import Path
from typing import Annotated

import typer

from .common import run_files
from .params import (
    ALL_FRAMES,
    COV,
    DEFAULT,
    INIT,
    JSON,
    K_SPEC,
    MASKS,
    MAX_ITER,
    MAX_PIXELS,
    MEMORY,
    MERGE,
    MIN_REGION,
    OUT_DIR,
    OVERWRITE,
    PLOTS,
    PRIOR,
    QUIET,
    REGIONS,
    RESTARTS,
    SAMPLE,
    SEED,
    SMOOTH,
    SOFT,
    SPACE,
    TOL,
    XY,
    fit_options,
    parse_regions,
)

EPILOG = (
    "Examples:\n\n"
    "  segment image photo.jpg -k 6 -o out/\n\n"
    "  segment image images/*.png --space lab --xy 1 -o out/ --overwrite\n\n"
    "  segment image scan.tif -k 12 --covariance diag --no-plots --json"
)


def image_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files to segment.", show_default=False)
    ],
    k: K_SPEC = DEFAULT["k"],
    out_dir: OUT_DIR = DEFAULT["out_dir"],
    covariance: COV = DEFAULT["covariance"],
    space: SPACE = DEFAULT["space"],
    xy: XY = DEFAULT["xy"],
    seed: SEED = DEFAULT["seed"],
    max_iter: MAX_ITER = DEFAULT["max_iter"],
    tol: TOL = DEFAULT["tol"],
    init: INIT = DEFAULT["init"],
    restarts: RESTARTS = DEFAULT["restarts"],
    prior: PRIOR = DEFAULT["prior"],
    smooth: SMOOTH = DEFAULT["smooth"],
    min_region: MIN_REGION = DEFAULT["min_region"],
    merge: MERGE = DEFAULT["merge"],
    regions: REGIONS = DEFAULT["regions"],
    sample: SAMPLE = DEFAULT["sample"],
    memory_mib: MEMORY = DEFAULT["memory_mib"],
    plots: PLOTS = DEFAULT["plots"],
    overwrite: OVERWRITE = DEFAULT["overwrite"],
    all_frames: ALL_FRAMES = DEFAULT["all_frames"],
    max_pixels: MAX_PIXELS = DEFAULT["max_pixels"],
    soft: SOFT = DEFAULT["soft"],
    masks: MASKS = DEFAULT["masks"],
    animate: Annotated[
        bool,
        typer.Option(
            "--animate",
            help="Also write NAME.em.gif: the mixture's 1σ/2σ ellipses over the pixels' "
            "colours at every EM iteration, with the log-likelihood so far (one k only).",
        ),
    ] = False,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Segment images with a Gaussian mixture fitted to their pixels.

    For each NAME.EXT write into OUT_DIR: NAME.segmented.png (a distinct colour per
    segment), NAME.quantized.png (each pixel its segment's mean colour), NAME.labels.png
    (label map), NAME.loglik.png and NAME.density.png (plots) and NAME.model.json
    (parameters, options, figures).
    """
    from ..outputs.plot_process import plot_worker
    from ..pipeline import segment_file

    options = fit_options(
        k=k,
        covariance=covariance,
        space=space,
        xy=xy,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        init=init,
        restarts=restarts,
        prior=prior,
        memory_mib=memory_mib,
        smooth=smooth,
        min_region=min_region,
        sample=sample,
        merge=merge,
        regions=parse_regions(regions),
    )

    def work(path, stem, on_iteration):
        return segment_file(
            path,
            out_dir,
            options,
            stem=stem,
            overwrite=overwrite,
            plots=plots,
            all_frames=all_frames,
            max_pixels=max_pixels,
            on_iteration=on_iteration,
            inputs=paths,
            soft=soft,
            masks=masks,
            animate=animate,
            plot_worker=worker,
        )

    # Started now: its imports overlap the decoding and the fit (see plot_process).
    with plot_worker(plots) as worker:
        run_files(paths, work, quiet=quiet, as_json=json_, progress_label="EM")
