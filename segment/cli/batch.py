"""``segment batch``: segment every image of a folder, with a progress bar per stage."""

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..options import MAX_XY
from .common import err_console, errors_to_exit, fail, out_console, print_json
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
    fit_options,
    number_check,
    parse_regions,
)

XY = Annotated[
    float | None,
    typer.Option(
        "--xy",
        callback=number_check("a weight", 0.0, MAX_XY),
        help="Weight of the pixel position (x, y) as extra features; 0 = colour only. Default: "
        f"{DEFAULT['xy']:g} as for 'segment image', but 0 with --shared-model (a colour then "
        "gets the same label wherever it is, and 8-bit images reduce exactly to one colour "
        "histogram).",
        show_default=False,
    ),
]


def _events(quiet):
    from ..batch.run import BatchEvents

    class Events(BatchEvents):
        """A progress bar over the files of each stage (on a terminal), and every failure
        printed as it happens."""

        def __init__(self):
            self.progress = None
            self.task = None
            if not quiet and err_console.is_terminal:
                self.progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("left"),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[current]}"),
                    console=err_console.console,
                    transient=True,
                )

        def __enter__(self):
            if self.progress is not None:
                self.progress.start()
            return self

        def __exit__(self, *exc):
            if self.progress is not None:
                self.progress.stop()
            return False

        def phase(self, name, total):
            if self.progress is not None:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task(name, total=total, current="")

        def running(self, names):
            if self.task is not None:
                shown = ", ".join(Path(n).name for n in names[:3])
                more = f" +{len(names) - 3}" if len(names) > 3 else ""
                self.progress.update(self.task, current=shown + more)

        def advance(self, name, error=None):
            if self.task is not None:
                self.progress.advance(self.task)
            if error:
                fail(f"{name}: {error}")

        def iteration(self, iteration, objective):
            if self.task is not None:
                self.progress.update(
                    self.task, completed=iteration, current=f"log-lik {objective:.4f}"
                )

    return Events()


def _summary_line(result):
    c = result.counts
    parts = [f"{c['ok']} ok", f"{c['failed']} failed", f"{c['skipped']} skipped"]
    if c["interrupted"]:
        parts.append(f"{c['interrupted']} not done")
    done = c["ok"] + c["failed"]
    rate = f", {done / result.seconds:.2f} images/s" if done and result.seconds > 0 else ""
    return f"{', '.join(parts)} in {result.seconds:.1f} s{rate}; report: {result.report_csv}"


EPILOG = (
    "Examples:\n\n"
    "  segment batch photos/ -o out/ -k 6 --recursive\n\n"
    "  segment batch scans/ -o out/ --glob '*.tif' --workers 2 --resume\n\n"
    "  segment batch frames/ -o out/ --shared-model --sample-per-image 50000\n\n"
    "  segment batch photos/ -o out/ --scheduler tcp://10.0.0.5:8786"
)


def batch_cmd(
    in_dir: Annotated[
        Path, typer.Argument(help="Folder of images to segment.", show_default=False)
    ],
    k: K_SPEC = DEFAULT["k"],
    out_dir: OUT_DIR = DEFAULT["out_dir"],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Include images in subfolders.")
    ] = False,
    glob: Annotated[
        str | None,
        typer.Option(
            "--glob",
            metavar="PATTERN",
            help="Only files whose name matches this shell pattern, ignoring case (e.g. "
            "'*.png'; with a '/', matched against the path below IN_DIR). Default: every "
            "image type Pillow reads.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--workers",
            min=1,
            help="Worker processes (default: the number of cores); 1 = in this process. "
            "With --scheduler local, the number of Dask workers.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Skip inputs whose outputs are complete, unchanged and made with the same "
            "options (as their model file records); redo the others.",
        ),
    ] = False,
    shared_model: Annotated[
        bool,
        typer.Option(
            "--shared-model",
            help="Fit one mixture to the pixels of all images (saved as "
            "OUT_DIR/shared.model.json) and label every image with it: the same colour gets "
            "the same label everywhere.",
        ),
    ] = False,
    sample_per_image: Annotated[
        int | None,
        typer.Option(
            "--sample-per-image",
            min=1,
            metavar="N",
            help="With --shared-model: fit on a random sample of N pixels per image (the "
            "same sample for the same --seed).",
            show_default=False,
        ),
    ] = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="With --shared-model: fit it by one pass of online (stepwise) EM, each image "
            "read once (in a random order fixed by --seed), instead of EM's passes over all "
            "pixels.",
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Run on Dask: a scheduler address (tcp://HOST:8786), or 'local' for a cluster "
            "on this machine. Needs the dask extra.",
            show_default=False,
        ),
    ] = None,
    covariance: COV = DEFAULT["covariance"],
    space: SPACE = DEFAULT["space"],
    xy: XY = None,
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
    """Segment every image of a folder; the output tree mirrors the input tree.

    Each image gets the outputs of 'segment image' in the mirrored folder. A file that
    cannot be read or segmented is reported and the batch goes on. OUT_DIR/report.csv and
    OUT_DIR/report.json list every input with its status (ok, failed, skipped,
    interrupted), error and figures; they are kept current while the batch runs. Exit
    status: 0 when every input succeeded, 1 when any failed, 130 / 143 when interrupted
    (Ctrl-C / SIGTERM: no partial output is left, and --resume continues).
    """
    from ..batch.run import run_batch

    options = fit_options(
        k=k,
        covariance=covariance,
        space=space,
        xy=(0.0 if shared_model else DEFAULT["xy"]) if xy is None else xy,
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
    with errors_to_exit(), _events(quiet) as events:
        result = run_batch(
            in_dir,
            out_dir,
            options,
            recursive=recursive,
            pattern=glob,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            plots=plots,
            all_frames=all_frames,
            max_pixels=max_pixels,
            soft=soft,
            masks=masks,
            shared_model=shared_model,
            sample_per_image=sample_per_image,
            scheduler=scheduler,
            events=events,
            online=online,
            animate=animate,
        )
    if json_:
        print_json(
            {
                "counts": result.counts,
                "interrupted_by": None
                if result.interrupted_by is None
                else signal.Signals(result.interrupted_by).name,
                "seconds": result.seconds,
                "report": {"csv": str(result.report_csv), "json": str(result.report_json)},
                "shared_model": None if result.shared_model is None else str(result.shared_model),
                "rows": result.rows,
            }
        )
    if result.interrupted_by is not None:
        name = signal.Signals(result.interrupted_by).name
        fail(f"interrupted by {name}: {_summary_line(result)}; run again with --resume.")
    elif not quiet and not json_:
        out_console.print(_summary_line(result), markup=False)
    raise typer.Exit(result.exit_code)
