"""``segment binary``: cluster black-and-white images with a Bernoulli mixture."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SegmentError
from .common import err_console, errors_to_exit, out_console, print_json
from .params import JSON, MAX_ITER, MAX_PIXELS, OUT_DIR, OVERWRITE, QUIET, RESTARTS, SEED

THRESHOLD = Annotated[
    str,
    typer.Option(
        "--threshold",
        help="How images with more than two grey levels become black and white: 'otsu' "
        "(Otsu's threshold per image) or a grey level in (0, 1); darker is ink.",
    ),
]


EPILOG = (
    "Examples:\n\n"
    "  segment binary tests/data/digits/png -k 10 -o digits-out/\n\n"
    "  segment binary scans/ -k 5 --threshold 0.6 --restarts 5 -o out/ --json"
)


def binary_cmd(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder of black-and-white images of one size.", show_default=False),
    ],
    k: Annotated[int, typer.Option("-k", min=1, help="Number of clusters.")] = 10,
    out_dir: OUT_DIR = Path("binary"),
    threshold: THRESHOLD = "otsu",
    seed: SEED = 0,
    restarts: RESTARTS = 5,
    max_iter: MAX_ITER = 200,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Write the log-likelihood plot.")
    ] = True,
    overwrite: OVERWRITE = False,
    max_pixels: MAX_PIXELS = None,
    quiet: QUIET = False,
    json_: JSON = False,
):
    """Cluster black-and-white images (glyphs, digits, icons) with a Bernoulli mixture.

    Writes into OUT_DIR: means.png (each cluster's mean image, by decreasing weight),
    clusters.csv (each file's cluster and responsibility), loglik.png and model.json.
    """
    from ..batch.discover import find_inputs
    from ..binary import cluster_folder, parse_threshold

    with errors_to_exit():
        cut = parse_threshold(threshold)
        if not folder.is_dir():
            raise SegmentError(f"{folder} is not a folder; give a folder of images.")
        paths = find_inputs(folder)
        summary = cluster_folder(
            folder,
            paths,
            out_dir,
            k=k,
            threshold=cut,
            seed=seed,
            restarts=restarts,
            max_iter=max_iter,
            plots=plots,
            overwrite=overwrite,
            max_pixels=max_pixels,
        )
    if json_:
        print_json(summary)
    elif not quiet:
        how = "Otsu's threshold" if cut == "otsu" else f"grey level {cut:g}"
        out_console.print(
            f"[bold]{folder}[/bold]  {summary['images']} images of "
            f"{summary['shape'][1]}×{summary['shape'][0]}  k={k}  "
            f"{summary['iterations']} iterations "
            f"({'converged' if summary['converged'] else 'not converged'})  "
            f"log-lik/image={summary['log_likelihood']:.3f}  "
            f"thresholded: {summary['thresholded']} ({how})  {summary['seconds']:.2f} s"
        )
        out_console.print(f"  cluster sizes: {summary['cluster_sizes']}")
        for note in summary["notes"]:
            err_console.print(f"  note: {note}", markup=False)
