"""``segment compare``: agreement of a segmentation with a ground truth."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SegmentError
from .common import errors_to_exit, note, out_console, print_json
from .params import JSON, MAX_PIXELS


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


EPILOG = (
    "Examples:\n\n"
    "  segment compare out/photo.labels.png truth/photo.png\n\n"
    "  segment compare out/photo.labels.png truth/photo.png --connected --ignore 0 --json"
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

    Prints the variation of information (bits; its false-split and false-merge parts),
    the adapted Rand error with its precision and recall (scikit-image's metrics), the Rand
    index and the segmentation covering of the truth, and the number of segments of each
    map. 0 means identical partitions; label numbers need not match.
    """
    from ..compare import compare_files

    with errors_to_exit():
        r = compare_files(
            segmentation,
            truth,
            connected=connected,
            ignore=_ignore_value(ignore),
            max_pixels=max_pixels,
        )
    if json_:
        print_json(r)
        return
    unit = "regions" if r["connected"] else "segments"
    out_console.print(
        f"VI={r['variation_of_information']:.4f} bits (false splits "
        f"{r['false_splits']:.4f}, false merges {r['false_merges']:.4f})  "
        f"adapted Rand error={_figure(r['adapted_rand_error'])} (precision "
        f"{_figure(r['rand_precision'])}, recall {_figure(r['rand_recall'])})  "
        f"Rand index={_figure(r['rand_index'])}  covering={r['covering']:.4f}  "
        f"{r['segments']} {unit} vs {r['truth_segments']} in the truth  "
        f"{r['pixels']} pixels"
        + (f" ({r['ignored_pixels']} ignored)" if r["ignored_pixels"] else ""),
        markup=False,
    )
    for name, why in r["undefined"].items():
        note(f"{_NAMES[name]} is undefined (n/a): {why}.")


_NAMES = {
    "adapted_rand_error": "the adapted Rand error",
    "rand_precision": "the Rand precision",
    "rand_recall": "the Rand recall",
    "rand_index": "the Rand index",
}


def _figure(value):
    return "n/a" if value is None else f"{value:.4f}"
