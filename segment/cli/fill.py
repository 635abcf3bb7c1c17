"""``segment fill``: missing or masked pixels replaced by their conditional mean."""

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from .common import err_console, errors_to_exit, out_console, print_json, progress_display
from .params import DEFAULT, JSON, MAX_ITER, MAX_PIXELS, OVERWRITE, QUIET, SEED, TOL, Covariance

EPILOG = (
    "Examples:\n\n"
    "  segment fill dem.tif -o dem.filled.tif\n\n"
    "  segment fill photo.png --mask scratches.png -o photo.filled.png -k 64 --xy 3\n\n"
    "  segment fill scan.tif --mask dust.png --xy 0 -o scan.filled.tif --overwrite"
)


def fill_cmd(
    path: Annotated[Path, typer.Argument(help="Image to fill.", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Output .png, or .tif/.tiff (keeps float and 16-bit values).",
            show_default=False,
            dir_okay=False,
        ),
    ],
    mask: Annotated[
        Path | None,
        typer.Option(
            "--mask",
            help="Image of the same size whose non-black pixels are to be filled.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=256, help="Mixture components.")] = 8,
    covariance: Annotated[
        Covariance, typer.Option("-c", "--covariance", help="Covariance structure (not auto).")
    ] = Covariance.full,
    xy: Annotated[
        float,
        typer.Option(
            "--xy",
            min=0.0,
            help="Weight of the pixel position as features: a pixel with no value is filled "
            "from its position; 0 = from its other channels only.",
        ),
    ] = 1.0,
    sample: Annotated[
        int,
        typer.Option("--sample", min=0, help="Fit on a sample of this many pixels; 0 = all."),
    ] = 250_000,
    seed: SEED = DEFAULT["seed"],
    max_iter: MAX_ITER = DEFAULT["max_iter"],
    tol: TOL = DEFAULT["tol"],
    overwrite: OVERWRITE = DEFAULT["overwrite"],
    max_pixels: MAX_PIXELS = DEFAULT["max_pixels"],
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Fill missing or masked pixels with their conditional mean under a Gaussian mixture.

    Missing: NaN (no-data) values of float images, per channel, and fully transparent
    pixels; --mask adds the pixels to in-paint. A mixture is fitted to what is observed
    (missing values marginalised, exact EM) and each missing value becomes its expectation
    given the pixel's observed channels and, with --xy > 0, its position.
    """
    from ..errors import SegmentError
    from ..fill import fill_file

    progress = progress_display(quiet)
    with errors_to_exit(), progress or contextlib.nullcontext():
        if covariance == Covariance.auto:
            raise SegmentError("segment fill needs one covariance structure; auto is not offered.")
        on_iteration = None
        if progress is not None:
            task = progress.add_task(f"EM {path.name}", total=None)

            def on_iteration(i, v):
                progress.update(task, completed=i)

        s = fill_file(
            path,
            output,
            mask_path=mask,
            k=k,
            covariance=covariance.value,
            xy=xy,
            sample=sample,
            seed=seed,
            max_iter=max_iter,
            tol=tol,
            overwrite=overwrite,
            max_pixels=max_pixels,
            on_iteration=on_iteration,
        )
    if json_:
        print_json(s)
    elif not quiet:
        out_console.print(
            f"[bold]{s['output']}[/bold]  filled {s['filled_pixels']} pixel(s) "
            f"({s['filled_values']} value(s); {s['missing_pixels']} missing, "
            f"{s['masked_pixels']} masked) with k={s['k']}  {s['seconds']:.2f} s"
        )
        if s["converged"] is False:
            err_console.print("  note: EM did not converge within --max-iter.", markup=False)
