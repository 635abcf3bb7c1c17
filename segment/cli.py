"""The ``segment`` command line. Commands declare options and call one library function;
every :class:`SegmentError` becomes one line on stderr and exit status 1 (usage errors are
Typer's, status 2). No traceback reaches the user."""

import os

# The per-chunk matrix products of EM are small: a multi-threaded BLAS only synchronises its
# threads (and oversubscribes the cores when batch runs several workers). Set before numpy
# is imported; the user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib
import json
import math
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import __version__
from .errors import SegmentError

app = typer.Typer(
    name="segment",
    help="Segment and colour-quantise images with Gaussian mixture models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class Covariance(StrEnum):
    full = "full"
    tied = "tied"
    diag = "diag"
    tied_diag = "tied_diag"
    spherical = "spherical"
    auto = "auto"


class Space(StrEnum):
    rgb = "rgb"
    lab = "lab"


class Init(StrEnum):
    kmeans = "kmeans"
    kmeanspp = "k-means++"
    random = "random"
    random_from_data = "random_from_data"


# -- shared options ---------------------------------------------------------------------

OUT_DIR = Annotated[
    Path,
    typer.Option(
        "-o", "--out-dir", help="Folder for the outputs (created if missing).", file_okay=False
    ),
]
COV = Annotated[
    Covariance,
    typer.Option(
        "-c",
        "--covariance",
        help="Covariance structure of each component; auto = the one of lowest BIC.",
    ),
]


def parse_k(value):
    """``-k``: a number, ``LOW:HIGH`` or ``auto`` (2:16) → (k, (low, high) or None)."""
    text = str(value).strip().lower()
    try:
        if text == "auto":
            return 16, (2, 16)
        if ":" in text:
            low, high = (int(v) for v in text.split(":"))
            if not 1 <= low <= high <= 256:
                raise ValueError
            return high, (low, high)
        k = int(text)
        if not 1 <= k <= 65535:
            raise ValueError
        return k, None
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a number of components from 1 to 65535, a range LOW:HIGH "
            "(1 <= LOW <= HIGH <= 256) or 'auto'.",
            param_hint="'-k'",
        ) from None


K_SPEC = Annotated[
    str,
    typer.Option(
        "-k",
        "--k",
        help="Number of mixture components (segments / colours), or LOW:HIGH, or auto "
        "(= 2:16): then k is chosen by BIC and NAME.bic.png shows the criterion. BIC on "
        "millions of pixels favours the most components of the range.",
    ),
]
SPACE = Annotated[Space, typer.Option("--space", help="Colour space of the features.")]
XY = Annotated[
    float,
    typer.Option(
        "--xy",
        min=0.0,
        help="Weight of the pixel position (x, y) as extra features, which makes segments "
        "spatially compact; 0 = colour only (then the fit is on distinct colours, exact and "
        "fastest).",
    ),
]
SEED = Annotated[
    int,
    typer.Option("--seed", min=0, help="Random seed: the same seed gives byte-identical outputs."),
]
MAX_ITER = Annotated[int, typer.Option("--max-iter", min=1, help="Maximum EM iterations.")]
TOL = Annotated[
    float,
    typer.Option(
        "--tol", min=0.0, help="Stop when the mean log-likelihood per pixel changes less than this."
    ),
]
INIT = Annotated[Init, typer.Option("--init", help="Initialisation of EM.")]
RESTARTS = Annotated[
    int, typer.Option("--restarts", min=1, help="Number of initialisations; the best fit is kept.")
]
PRIOR = Annotated[
    bool,
    typer.Option(
        "--prior/--no-prior",
        help="MAP fit with a conjugate prior (Fraley & Raftery 2007) instead of maximum "
        "likelihood.",
    ),
]
MEMORY = Annotated[
    float,
    typer.Option("--memory-mib", help="Working-memory budget of the EM's per-chunk work, in MiB."),
]
PLOTS = Annotated[
    bool, typer.Option("--plots/--no-plots", help="Write the log-likelihood and density plots.")
]
OVERWRITE = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
ALL_FRAMES = Annotated[
    bool,
    typer.Option(
        "--all-frames",
        help="Process every frame of animated / multi-page files (default: the first).",
    ),
]
MAX_PIXELS = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Refuse images with more pixels than this (default: Pillow's "
        "decompression-bomb limit, about 89 million).",
    ),
]
SMOOTH = Annotated[
    float | None,
    typer.Option(
        "--smooth",
        min=0.0,
        max=100.0,
        help="Smooth the responsibilities over neighbouring pixels (Gaussian sigma in pixels) "
        "before labels are taken; 0 = pixel-wise labels. Default: image diagonal / 600.",
        show_default=False,
    ),
]
MIN_REGION = Annotated[
    int | None,
    typer.Option(
        "--min-region",
        min=0,
        help="Merge connected regions smaller than this many pixels into their neighbours; "
        "0 = keep all. Default: 1/100 of the image.",
        show_default=False,
    ),
]
MERGE = Annotated[
    float,
    typer.Option(
        "--merge",
        min=0.0,
        help="Merge neighbouring segments whose colours differ by less than this CIELAB ΔE "
        "(e.g. 8), for surfaces that position features split; 0 = off.",
    ),
]
SAMPLE = Annotated[
    int | None,
    typer.Option(
        "--sample",
        min=0,
        help="Fit on a uniform sample of this many pixels, then polish with 2 EM passes over "
        "all pixels; 0 = fit on every pixel. Default: distinct colours of 8-bit images "
        "(exact), else a sample of 1,000,000 pixels.",
        show_default=False,
    ),
]
SOFT = Annotated[
    bool,
    typer.Option(
        "--soft",
        help="Also write NAME.soft.png (responsibility-weighted colours), NAME.uncertainty.png "
        "(entropy of the responsibilities), NAME.outliers.png (poorly explained pixels) and "
        "NAME.overlay.png (segment boundaries on the photo).",
    ),
]
MASKS = Annotated[
    bool, typer.Option("--masks", help="Also write one mask per segment (NAME.mask03.png ...).")
]
QUIET = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")]
JSON = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


def fit_options(*, k, covariance, space, init, restarts, memory_mib, **rest):
    """The FitOptions of the command-line options shared by 'image' and 'batch', validated
    (a bad combination is one line and status 1)."""
    from .options import FitOptions

    k, k_range = parse_k(k)
    options = FitOptions(
        k=k,
        k_range=k_range,
        covariance_type=covariance.value,
        space=space.value,
        init=init.value,
        n_init=restarts,
        chunk_mib=memory_mib,
        **rest,
    )
    with _errors_to_exit():
        options.validate()
    return options


def _version(value: bool):
    if value:
        out_console.print(f"segment {__version__}")
        raise typer.Exit()


@app.callback(help="Segment and colour-quantise images with Gaussian mixture models fitted by EM.")
def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
):
    pass


# -- reporting ----------------------------------------------------------------------------


def _fail(message):
    # One line whatever the message holds (file names may contain newlines).
    text = "".join(ch if ch.isprintable() else "?" for ch in str(message))
    err_console.print(f"segment: error: {text}", markup=False)


@contextlib.contextmanager
def _errors_to_exit():
    """Turn the failures a user can meet into one line and a status, never a traceback."""
    try:
        yield
    except SegmentError as err:
        _fail(err)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was left.")
        raise typer.Exit(130) from None
    except MemoryError:
        _fail("out of memory; try a smaller --memory-mib, fewer components, or a smaller image.")
        raise typer.Exit(1) from None


def _progress(quiet):
    if quiet or not err_console.is_terminal:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("iter {task.completed:>3.0f}"),
        TextColumn("{task.fields[value]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _fmt(v, spec):
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def _print_summary(s):
    conv = "converged" if s.get("converged", True) else "not converged"
    parts = [
        f"[bold]{s['input']}[/bold]" + (f" frame {s['frame']}" if s.get("frame") else ""),
        f"k={s['k']}",
    ]
    if "iterations" in s:
        parts.append(f"{s['iterations']} iterations ({conv})")
    parts += [
        f"log-lik/pixel={_fmt(s['log_likelihood'], '.4f')}",
        f"BIC={_fmt(s['bic'], '.6g')}",
        f"PSNR={_fmt(s['psnr_db'], '.2f')} dB",
        f"{s['seconds']:.2f} s",
    ]
    out_console.print("  ".join(parts))
    for note in s.get("notes", []):
        err_console.print(f"  note: {note}", markup=False)


def _json_out(obj):
    from .outputs import jsonable

    sys.stdout.write(json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n")


def _run_files(paths, work, *, quiet, as_json, progress_label):
    """Run ``work(path, on_iteration)`` over files; a failing file does not stop the rest."""
    from .pipeline import stems_for

    with _errors_to_exit():
        stems = stems_for(paths)
    results, failed = [], 0
    progress = _progress(quiet)
    for path, stem in zip(paths, stems, strict=True):
        try:
            with progress or contextlib.nullcontext():
                on_iteration = None
                if progress is not None:
                    task = progress.add_task(f"{progress_label} {path.name}", total=None, value="")

                    def on_iteration(i, v, task=task):
                        progress.update(task, completed=i, value=f"log-lik {v:.4f}")

                summaries = work(path, stem, on_iteration)
        except SegmentError as err:
            _fail(err)
            failed += 1
            continue
        except MemoryError:
            _fail(f"{path}: out of memory; try a smaller --memory-mib or fewer components.")
            failed += 1
            continue
        except KeyboardInterrupt:
            _fail("interrupted; no partial output was left.")
            raise typer.Exit(130) from None
        for s in summaries:
            results.append(s)
            if not quiet and not as_json:
                _print_summary(s)
    if as_json:
        _json_out(results)
    if failed:
        raise typer.Exit(1)


# -- commands -------------------------------------------------------------------------------


@app.command(
    "image",
    epilog=(
        "Examples:\n\n"
        "  segment image photo.jpg -k 6 -o out/\n\n"
        "  segment image images/*.png --space lab --xy 1 -o out/ --overwrite\n\n"
        "  segment image scan.tif -k 12 --covariance diag --no-plots --json"
    ),
)
def image_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files to segment.", show_default=False)
    ],
    k: K_SPEC = "10",
    out_dir: OUT_DIR = Path("segmented"),
    covariance: COV = Covariance.full,
    space: SPACE = Space.rgb,
    xy: XY = 1.0,
    seed: SEED = 0,
    max_iter: MAX_ITER = 100,
    tol: TOL = 1e-3,
    init: INIT = Init.kmeans,
    restarts: RESTARTS = 1,
    prior: PRIOR = False,
    smooth: SMOOTH = None,
    min_region: MIN_REGION = None,
    merge: MERGE = 0.0,
    sample: SAMPLE = None,
    memory_mib: MEMORY = 64.0,
    plots: PLOTS = True,
    overwrite: OVERWRITE = False,
    all_frames: ALL_FRAMES = False,
    max_pixels: MAX_PIXELS = None,
    soft: SOFT = False,
    masks: MASKS = False,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Segment images with a Gaussian mixture fitted to their pixels.

    For each NAME.EXT write into OUT_DIR: NAME.segmented.png (a distinct colour per
    segment), NAME.quantized.png (each pixel its segment's mean colour), NAME.labels.png
    (label map), NAME.loglik.png and NAME.density.png (plots) and NAME.model.json
    (parameters, options, figures).
    """
    from .pipeline import segment_file

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
        )

    _run_files(paths, work, quiet=quiet, as_json=json_, progress_label="EM")


@app.command(
    "apply",
    epilog=(
        "Examples:\n\n"
        "  segment apply --model out/photo.model.json other.jpg -o out2/\n\n"
        "  segment apply -m series.model.json frames/*.png -o labelled/ --no-plots"
    ),
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
    from .pipeline import apply_file, load_model_file

    with _errors_to_exit():
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
        )

    _run_files(paths, work, quiet=quiet, as_json=json_, progress_label="apply")


@app.command(
    "quantize",
    epilog=(
        "Examples:\n\n"
        "  segment quantize photo.png -k 16 -o photo.q16.png\n\n"
        "  segment quantize photo.png --quality 35 -o photo.q.png\n\n"
        "  segment quantize photo.png --max-delta-e 2 --dither -o photo.q.png\n\n"
        "  segment quantize logo.png -k 4 -o small.png --overwrite --json"
    ),
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
            help="Target PSNR in dB: use the smallest number of colours that reaches it.",
            show_default=False,
        ),
    ] = None,
    max_delta_e: Annotated[
        float | None,
        typer.Option(
            "--max-delta-e",
            min=0.0,
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
    space: SPACE = Space.rgb,
    seed: SEED = 0,
    max_iter: MAX_ITER = 100,
    tol: TOL = 1e-3,
    overwrite: OVERWRITE = False,
    max_pixels: MAX_PIXELS = None,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Colour-quantise an image into a palette PNG.

    The palette is the means of a Gaussian mixture fitted to the pixels, refined to the
    least squared error; each pixel takes its nearest palette colour. Reports the PSNR,
    SSIM, mean ΔE (CIEDE2000) and the size ratio against the input.
    """
    from .quantize import quantize_file

    progress = _progress(quiet)
    with _errors_to_exit(), progress or contextlib.nullcontext():
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
        _json_out(s)
    elif not quiet:
        ratio = "-" if s["size_ratio"] is None else f"{s['size_ratio']:.3f}"
        for t in s["search"] or ():
            out_console.print(
                f"  k={t['k']:<3d} PSNR={_fmt(t['psnr_db'], '.2f')} dB  "
                f"ΔE={_fmt(t['delta_e'], '.2f')}  {'reached' if t['reached'] else '-'}",
                markup=False,
            )
        out_console.print(
            f"[bold]{s['output']}[/bold]  {s['colours_used']} colours (k={s['k']})  "
            f"PSNR={_fmt(s['psnr_db'], '.2f')} dB  SSIM={_fmt(s['ssim'], '.4f')}  "
            f"ΔE={_fmt(s['delta_e'], '.2f')}  size {s['output_bytes']} / {s['input_bytes']} "
            f"bytes = {ratio}  {s['seconds']:.2f} s"
        )
        for note in s["notes"]:
            err_console.print(f"  note: {note}", markup=False)


def _ignore_value(text):
    """``--ignore``: a grey label (``0``) or a colour (``255,255,255``)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = None
    if values is None or len(values) not in (1, 3) or min(values) < 0:
        raise SegmentError(
            f"--ignore takes a label (e.g. 0) or a colour R,G,B (e.g. 255,255,255); got {text!r}."
        )
    return values[0] if len(values) == 1 else tuple(values)


@app.command(
    "compare",
    epilog=(
        "Examples:\n\n"
        "  segment compare out/photo.labels.png truth/photo.png\n\n"
        "  segment compare out/photo.labels.png truth/photo.png --connected --ignore 0 --json"
    ),
)
def compare_cmd(
    segmentation: Annotated[
        Path, typer.Argument(help="Label map to judge, e.g. NAME.labels.png.", show_default=False)
    ],
    truth: Annotated[
        Path,
        typer.Argument(
            help="Ground-truth label map of the same image: grey values or colours as labels.",
            show_default=False,
        ),
    ],
    connected: Annotated[
        bool,
        typer.Option(
            "--connected/--no-connected",
            help="Count each connected region as its own segment (as region benchmarks such "
            "as BSDS do) instead of each label.",
        ),
    ] = False,
    ignore: Annotated[
        str | None,
        typer.Option(
            "--ignore",
            help="Leave out the pixels where the truth has this label (grey value, e.g. 0) "
            "or colour (R,G,B).",
            show_default=False,
        ),
    ] = None,
    max_pixels: MAX_PIXELS = None,
    json_: JSON = False,
):
    """Agreement of a segmentation with a ground truth.

    Prints the variation of information (bits; its false-split and false-merge parts) and
    the adapted Rand error with its precision and recall (scikit-image's metrics), and the
    number of segments of each map. 0 means identical partitions; label numbers need not
    match.
    """
    from .compare import compare_files

    with _errors_to_exit():
        r = compare_files(
            segmentation,
            truth,
            connected=connected,
            ignore=_ignore_value(ignore),
            max_pixels=max_pixels,
        )
    if json_:
        _json_out(r)
        return
    unit = "regions" if r["connected"] else "segments"
    out_console.print(
        f"VI={r['variation_of_information']:.4f} bits (false splits "
        f"{r['false_splits']:.4f}, false merges {r['false_merges']:.4f})  "
        f"adapted Rand error={r['adapted_rand_error']:.4f} (precision "
        f"{r['rand_precision']:.4f}, recall {r['rand_recall']:.4f})  "
        f"{r['segments']} {unit} vs {r['truth_segments']} in the truth  "
        f"{r['pixels']} pixels"
        + (f" ({r['ignored_pixels']} ignored)" if r["ignored_pixels"] else ""),
        markup=False,
    )


_terminated = []


def _terminate(signum, frame):
    _terminated.append(signum)
    raise KeyboardInterrupt


def main(argv=None):
    """Entry point of the ``segment`` script: one line on stderr for any error, never a
    traceback; status 2 for usage errors, 1 for other failures, 130 when interrupted."""
    command = typer.main.get_command(app)
    # SIGTERM (kill, a scheduler's timeout) stops like Ctrl-C: temporary files are removed.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = command.main(args=argv, prog_name="segment", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.TyperException as err:  # Typer's (vendored click's) parsing errors
        code = getattr(err, "exit_code", 2)
        ctx = getattr(err, "ctx", None)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if type(err).__name__ != "NoArgsIsHelpError":  # that one has printed the help
            where = f" (see '{ctx.command_path} --help')" if ctx is not None and code == 2 else ""
            _fail(f"{message}{where}")
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted.")
        code = 130
    except BrokenPipeError:
        code = 1
    except Exception as err:  # a bug: still one line, and a non-zero status
        _fail(f"internal error ({type(err).__name__}: {err}); please report it.")
        code = 1
    if _terminated and code == 130:
        code = 143  # the convention for SIGTERM
    sys.exit(code)


# 'segment batch' lives in its own module; importing it registers the command on ``app``.
from . import batch_cli  # noqa: F401
