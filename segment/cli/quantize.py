"""``segment quantize``: colour-quantise images into palette PNGs.

pngquant's conventions: several inputs (``--ext`` or ``-o DIR``), ``--quality MIN-MAX``
(exit 99 and nothing written when MIN cannot be reached), ``--speed``,
``--skip-if-larger`` (exit 98), ``--posterize``, ``--strip``, ``--palette FILE``.
"""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SegmentError
from .common import err_console, fail, fmt_number, out_console, print_json
from .params import JSON, MAX_PIXELS, OVERWRITE, QUIET, SEED, Space, number_check

EXIT_STATUSES = "0 done, 1 error, 2 bad command line, 98 skipped (larger), 99 quality too low"


def _quality_value(value):
    """``--quality`` parsed at the command line: a bad value is a malformed command line
    (status 2, the option named), as for every option value."""
    from ..quantize.quantizer import parse_quality

    try:
        return parse_quality(value)
    except SegmentError as err:
        raise typer.BadParameter(str(err)) from None


def _print(s, figures):
    ratio = "-" if s["size_ratio"] is None else f"{s['size_ratio']:.3f}"
    for t in s["search"] or ():
        extra = f"  ΔE={fmt_number(t['delta_e'], '.2f')}" if "delta_e" in t else ""
        out_console.print(
            f"  k={t['k']:<3d} PSNR={fmt_number(t['psnr_db'], '.2f')} dB{extra}  "
            f"{'reached' if t['reached'] else '-'}",
            markup=False,
        )
    extra = (
        f"  SSIM={fmt_number(s['ssim'], '.4f')}  ΔE={fmt_number(s['delta_e'], '.2f')}"
        if figures
        else ""
    )
    out_console.print(
        f"{s['output']}  {s['colours_used']} colours (k={s['k']})  "
        f"PSNR={fmt_number(s['psnr_db'], '.2f')} dB{extra}  size {s['output_bytes']} / "
        f"{s['input_bytes']} bytes = {ratio}  {s['seconds']:.2f} s",
        markup=False,
    )
    for note in s["notes"]:
        err_console.print(f"  note: {note}", markup=False)


EPILOG = (
    "Examples:\n\n"
    "  segment quantize photo.png -k 16 -o photo.q16.png\n\n"
    "  segment quantize *.png --ext .q.png --quality 30-40\n\n"
    "  segment quantize shots/*.jpg -o small/ -k 64 --dither 0.5 --skip-if-larger\n\n"
    "  segment quantize frame.png --palette logo-colours.png -o frame.p.png\n\n"
    f"Exit status: {EXIT_STATUSES}."
)


def quantize_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files to quantise.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Output PNG (one input) or folder; default: beside each input, with --ext.",
            show_default=False,
        ),
    ] = None,
    ext: Annotated[
        str | None,
        typer.Option(
            "--ext",
            help="Output name = input name without its extension + EXT (default .q.png; "
            ".png inside an -o folder).",
            show_default=False,
        ),
    ] = None,
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
        str | None,
        typer.Option(
            "--quality",
            callback=_quality_value,
            help="PSNR target in dB, MAX or MIN-MAX (pngquant's form; our scale is PSNR): "
            "the fewest colours reaching MAX; below MIN even with -k colours, nothing is "
            "written and the exit status is 99.",
            show_default=False,
        ),
    ] = None,
    max_delta_e: Annotated[
        float | None,
        typer.Option(
            "--max-delta-e",
            callback=number_check("a finite colour difference", 0.0),
            help="Target mean colour difference (CIEDE2000 ΔE; about 1 is just noticeable): "
            "use the fewest colours that reach it.",
            show_default=False,
        ),
    ] = None,
    dither: Annotated[
        float,
        typer.Option(
            "--dither",
            callback=number_check("a dithering level", 0.0, 1.0),
            help="Error diffusion LEVEL 0–1, applied only in smooth areas (0: none; "
            "0.5 is a good start).",
        ),
    ] = 0.0,
    speed: Annotated[
        int,
        typer.Option("--speed", min=1, max=10, help="1 slowest and best … 10 fastest."),
    ] = 4,
    posterize: Annotated[
        int,
        typer.Option(
            "--posterize", min=0, max=4, help="Bits of precision taken off the palette colours."
        ),
    ] = 0,
    palette: Annotated[
        Path | None,
        typer.Option(
            "--palette",
            help="Map onto this palette, in its order (a palette PNG's entries, or the "
            "colours of an image with at most 256).",
            show_default=False,
        ),
    ] = None,
    strip: Annotated[
        bool, typer.Option("--strip", help="Do not copy the ICC profile, EXIF and DPI.")
    ] = False,
    skip_if_larger: Annotated[
        bool,
        typer.Option(
            "--skip-if-larger",
            help="Write nothing (exit status 98) when the result is larger than the input.",
        ),
    ] = False,
    figures: Annotated[
        bool,
        typer.Option("--figures", help="Also compute SSIM and the mean ΔE2000 (slower)."),
    ] = False,
    space: Annotated[
        Space,
        typer.Option(
            "--space",
            help="rgb: the histogram quantiser; lab: the Gaussian-mixture palette fitted in "
            "CIELAB (slower; one input, no pngquant options).",
        ),
    ] = Space.rgb,
    seed: SEED = 0,
    max_iter: Annotated[
        int | None,
        typer.Option(
            "--max-iter", min=0, help="Lloyd iterations (default: by --speed).", show_default=False
        ),
    ] = None,
    tol: Annotated[
        float,
        typer.Option(
            "--tol", min=0.0, help="Stop when the squared error falls by less than this fraction."
        ),
    ] = 1e-4,
    overwrite: OVERWRITE = False,
    max_pixels: MAX_PIXELS = None,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Colour-quantise images into palette PNGs.

    The palette is fitted to the image's colour histogram (variance splits, then Lloyd
    iterations: the least squared error); each pixel takes its nearest palette colour, or
    with --dither an error-diffused one in smooth areas. Prints the PSNR and the size
    against the input (--figures adds SSIM and mean ΔE).
    """
    from ..quantize.files import OutputLarger, output_paths, quantize_file
    from ..quantize.quantizer import QualityTooLow, read_palette

    if space == Space.lab:
        _quantize_lab(
            paths,
            output,
            k,
            quality,
            max_delta_e,
            dither,
            seed,
            overwrite,
            max_pixels,
            quiet,
            json_,
            figures,
        )
        return
    try:
        q = quality  # parsed by _quality_value
        pal = read_palette(palette) if palette is not None else None
        outs = output_paths(paths, output, ext)
    except SegmentError as err:
        fail(err)
        raise typer.Exit(1) from None
    results, statuses = [], []
    for path, out in zip(paths, outs, strict=True):
        try:
            s = quantize_file(
                path,
                out,
                k=k,
                quality=q,
                max_delta_e=max_delta_e,
                dither=dither,
                speed=speed,
                seed=seed,
                max_iter=max_iter,
                tol=tol,
                posterize=posterize,
                palette=pal,
                strip=strip,
                skip_if_larger=skip_if_larger,
                figures=figures,
                overwrite=overwrite,
                max_pixels=max_pixels,
            )
        except (QualityTooLow, OutputLarger) as err:
            fail(err)
            statuses.append(err.exit_code)
            continue
        except SegmentError as err:
            fail(err)
            statuses.append(1)
            continue
        except MemoryError:
            fail(f"{path}: out of memory; try a smaller image.")
            statuses.append(1)
            continue
        except KeyboardInterrupt:
            fail("interrupted; no partial output was left.")
            raise typer.Exit(130) from None
        results.append(s)
        if not quiet and not json_:
            _print(s, figures)
    if json_:
        print_json(results if len(paths) > 1 else (results[0] if results else []))
    if statuses:
        # An error outranks a refused quality, which outranks a skipped file.
        raise typer.Exit(1 if 1 in statuses else max(statuses))


def _quantize_lab(
    paths,
    output,
    k,
    quality,
    max_delta_e,
    dither,
    seed,
    overwrite,
    max_pixels,
    quiet,
    json_,
    figures,
):
    """``--space lab``: the mixture palette of :mod:`segment.quantize.run` (one input)."""
    from ..quantize.run import quantize_file_mixture
    from .common import errors_to_exit

    with errors_to_exit():
        if len(paths) != 1 or output is None or output.suffix.lower() != ".png":
            raise SegmentError("--space lab takes one input and -o OUTPUT.png.")
        q = quality
        s = quantize_file_mixture(
            paths[0],
            output,
            k=k,
            quality=None if q is None else q[1],
            max_delta_e=max_delta_e,
            dither=dither > 0,
            seed=seed,
            space="lab",
            overwrite=overwrite,
            max_pixels=max_pixels,
        )
    s["dither"] = float(dither)
    if json_:
        print_json(s)
    elif not quiet:
        _print(s, True)
