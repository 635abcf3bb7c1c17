"""``segment apply``: segment images with a saved model, without fitting."""

from pathlib import Path
from typing import Annotated

import typer

from .common import errors_to_exit, run_files
from .params import ALL_FRAMES, JSON, MASKS, MAX_PIXELS, OUT_DIR, OVERWRITE, PLOTS, QUIET, SOFT

EPILOG = (
    "Examples:\n\n"
    "  segment apply --model out/photo.model.json other.jpg -o out2/\n\n"
    "  segment apply -m series.model.json frames/*.png -o labelled/ --no-plots"
)


def apply_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Image files to label.", show_default=False)],
    model: Annotated[
        Path,
        typer.Option(
            "-m",
            "--model",
            help="A NAME.model.json written by 'segment image'.",
            show_default=False,
        ),
    ],
    out_dir: OUT_DIR = Path("segmented"),
    plots: PLOTS = True,
    overwrite: OVERWRITE = False,
    all_frames: ALL_FRAMES = False,
    max_pixels: MAX_PIXELS = None,
    soft: SOFT = False,
    masks: MASKS = False,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Segment images with a saved model, without fitting.

    The same colour gets the same label in every image; the outputs are those of
    'segment image' (without the log-likelihood plot).
    """
    from ..outputs.model_file import load_model_file
    from ..outputs.plot_process import plot_worker
    from ..pipeline import apply_file

    with errors_to_exit():
        gm, options, _ = load_model_file(model)

    def work(path, stem, on_iteration):
        return apply_file(
            gm,
            options,
            path,
            out_dir,
            stem=stem,
            overwrite=overwrite,
            plots=plots,
            all_frames=all_frames,
            max_pixels=max_pixels,
            inputs=[*paths, model],
            soft=soft,
            masks=masks,
            plot_worker=worker,
        )

    with plot_worker(plots) as worker:
        run_files(paths, work, quiet=quiet, as_json=json_, progress_label="apply")
