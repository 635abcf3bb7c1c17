"""``segment quantize``: colour-quantise an image into a palette PNG."""

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    err_console,
    errors_to_exit,
    fmt_number,
    out_console,
    print_json,
    progress_display,
)
from .params import (
    DEFAULT,
    JSON,
    MAX_ITER,
    MAX_PIXELS,
    OVERWRITE,
    QUIET,
    SEED,
    SPACE,
    TOL,
    number_check,
)

EPILOG = (
    "Examples:\n\n"
    "  segment quantize photo.png -k 16 -o photo.q16.png\n\n"
    "  segment quantize photo.png --quality 35 -o photo.q.png\n\n"
    "  segment quantize photo.png --max-delta-e 2 --dither -o photo.q.png\n\n"
    "  segment quantize logo.png -k 4 -o small.png --overwrite --json"
)


def quantize_cmd(
    path: Annotated[Path, typer.Argument(help="Image file to quantise.", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Output palette PNG.", show_default=False, dir_okay=False
        ),
    ],
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            "--k",
            min=1,
            max=256,
            help="Number of colours (1–256); default 16. With --quality or --max-delta-e, "
            "the largest number tried (default 256).",
            show_default=False,
        ),
    ] = None,
    quality: Annotated[
        float | None,
        typer.Option(
            "--quality",
            callback=number_check("a PSNR in dB", 0.0, above=True),
            help="Target PSNR in dB: use the smallest number of colours that reaches it.",
            show_default=False,
        ),
    ] = None,
    max_delta_e: Annotated[
        float | None,
        typer.Option(
            "--max-delta-e",
            callback=number_check("a finite colour difference", 0.0),
            help="Target mean colour difference (CIEDE2000 ΔE; about 1 is just noticeable): "
            "use the smallest number of colours that reaches it.",
            show_default=False,
        ),
    ] = None,
    dither: Annotated[
        bool,
        typer.Option(
            "--dither/--no-dither",
            help="Floyd–Steinberg error diffusion onto the palette (smoother gradients, "
            "lower PSNR).",
        ),
    ] = False,
    space: SPACE = DEFAULT["space"],
    seed: SEED = DEFAULT["seed"],
    max_iter: MAX_ITER = DEFAULT["max_iter"],
    tol: TOL = DEFAULT["tol"],
    overwrite: OVERWRITE = DEFAULT["overwrite"],
    max_pixels: MAX_PIXELS = DEFAULT["max_pixels"],
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Colour-quantise an image into a palette PNG.

    The palette is the means of a Gaussian mixture fitted to the pixels, refined to the
    least squared error; each pixel takes its nearest palette colour. Reports the PSNR,
    SSIM, mean ΔE (CIEDE2000) and the size ratio against the input.
    """
    from ..quantize.run import quantize_file

    progress = progress_display(quiet)
    with errors_to_exit(), progress or contextlib.nullcontext():
        on_iteration = None
        if progress is not None:
            task = progress.add_task(f"EM {path.name}", total=None, value="")

            def on_iteration(i, v):
                progress.update(task, completed=i, value=f"log-lik {v:.4f}")

        s = quantize_file(
            path,
            output,
            k=k,
            quality=quality,
            max_delta_e=max_delta_e,
            dither=dither,
            seed=seed,
            space=space.value,
            max_iter=max_iter,
            tol=tol,
            overwrite=overwrite,
            max_pixels=max_pixels,
            on_iteration=on_iteration,
        )
    if json_:
        print_json(s)
    elif not quiet:
        ratio = "-" if s["size_ratio"] is None else f"{s['size_ratio']:.3f}"
        for t in s["search"] or ():
            out_console.print(
                f"  k={t['k']:<3d} PSNR={fmt_number(t['psnr_db'], '.2f')} dB  "
                f"ΔE={fmt_number(t['delta_e'], '.2f')}  {'reached' if t['reached'] else '-'}",
                markup=False,
            )
        out_console.print(
            f"[bold]{s['output']}[/bold]  {s['colours_used']} colours (k={s['k']})  "
            f"PSNR={fmt_number(s['psnr_db'], '.2f')} dB  SSIM={fmt_number(s['ssim'], '.4f')}  "
            f"ΔE={fmt_number(s['delta_e'], '.2f')}  size {s['output_bytes']} / {s['input_bytes']} "
            f"bytes = {ratio}  {s['seconds']:.2f} s"
        )
        for note in s["notes"]:
            err_console.print(f"  note: {note}", markup=False)
