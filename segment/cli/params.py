"""The options the commands share, as annotated types, with their defaults: those of the
fit come from :class:`segment.options.FitOptions`, the one source of both the library and
the command line."""

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ..options import MAX_XY, FitOptions
from .common import errors_to_exit


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


def number_check(what, low, high=None, *, also=(), above=False):
    """A Typer callback refusing what is not a finite number from ``low`` to ``high``
    (``above``: greater than ``low``) or one of ``also``. A bad value is a malformed command
    line: status 2, as for every bad option value, with the option named (Typer adds
    "Invalid value for '--x'"); NaN and infinities are bad values, never a range error."""

    def check(value):
        if value is None or value in also:
            return value
        low_ok = value > low if above else value >= low
        if math.isfinite(value) and low_ok and (high is None or value <= high):
            return value
        bound = f"from {_num(low)} to {_num(high)}" if high is not None else f">= {_num(low)}"
        bound = f"> {_num(low)}" if above else bound
        extra = "".join(f" or {_num(a)}" for a in also)
        raise typer.BadParameter(f"{_num(value)} is not {what} {bound}{extra}")

    return check


def _num(v):
    return str(int(v)) if math.isfinite(v) and v == int(v) and abs(v) < 1e15 else f"{v:g}"


#: Defaults of the options 'image' and 'batch' share (and 'quantize', where it has them):
#: those of FitOptions for the fit, the one source of both the library and the command.
FIT_DEFAULTS = FitOptions()
DEFAULT = {
    "k": str(FIT_DEFAULTS.k),
    "covariance": Covariance(FIT_DEFAULTS.covariance_type),
    "space": Space(FIT_DEFAULTS.space),
    "xy": FIT_DEFAULTS.xy,
    "seed": FIT_DEFAULTS.seed,
    "max_iter": FIT_DEFAULTS.max_iter,
    "tol": FIT_DEFAULTS.tol,
    "init": Init(FIT_DEFAULTS.init),
    "restarts": FIT_DEFAULTS.n_init,
    "prior": FIT_DEFAULTS.prior,
    "smooth": FIT_DEFAULTS.smooth,
    "min_region": FIT_DEFAULTS.min_region,
    "merge": FIT_DEFAULTS.merge,
    "regions": "auto",
    "sample": FIT_DEFAULTS.sample,
    "memory_mib": FIT_DEFAULTS.chunk_mib,
    "out_dir": Path("segmented"),
    "plots": True,
    "overwrite": False,
    "all_frames": False,
    "max_pixels": None,
    "soft": False,
    "masks": False,
}

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
        callback=number_check("a weight", 0.0, MAX_XY),
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
        "--tol",
        callback=number_check("a finite number", 0.0),
        help="Stop when the mean log-likelihood per pixel changes less than this.",
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
    typer.Option(
        "--memory-mib",
        callback=number_check("a number of MiB", 1 / 16, float(1 << 20)),
        help="Working-memory budget of the EM's per-chunk work, in MiB.",
    ),
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
        callback=number_check("a number of pixels", 0.0, 100.0),
        help="Smooth the responsibilities over neighbouring pixels (Gaussian sigma in pixels) "
        "before labels are taken; 0 = pixel-wise labels. Default: image diagonal / 1200 "
        "(at least 0.5) when regions are merged, diagonal / 600 (at least 1) with "
        "--regions off.",
        show_default=False,
    ),
]


MIN_REGION = Annotated[
    int | None,
    typer.Option(
        "--min-region",
        min=0,
        help="Merge connected regions smaller than this many pixels into their neighbours; "
        "0 = keep all. Default: 1/500 of the image (1/100 with --regions off).",
        show_default=False,
    ),
]


MERGE = Annotated[
    float,
    typer.Option(
        "--merge",
        callback=number_check("a finite colour difference", 0.0),
        help="Merge neighbouring segments whose colours differ by less than this CIELAB ΔE "
        "(e.g. 8), for surfaces that position features split; 0 = off.",
    ),
]


REGIONS = Annotated[
    str,
    typer.Option(
        "--regions",
        help="Merge the mixture's connected regions while that shortens the description of "
        "the image (bits of each region's pixels under its own Gaussian plus bits of the "
        "borders): 'auto' stops by itself, N cuts the same merge hierarchy at N regions, "
        "'off' keeps the mixture's labels (plain colour clustering, e.g. with --xy 0 -k 6).",
    ),
]


def parse_regions(value):
    """'auto' -> None, 'off' -> 0, 'N' -> N (>= 1); anything else: one line, status 2."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text in ("off", "0"):
        return 0
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise typer.BadParameter(
        f"expected auto, off or a whole number of regions >= 1; got {value!r}.",
        param_hint="--regions",
    )


SAMPLE = Annotated[
    int | None,
    typer.Option(
        "--sample",
        callback=number_check("a number of pixels", 1000, also=(0,)),
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
    with errors_to_exit():
        options.validate()
    return options
