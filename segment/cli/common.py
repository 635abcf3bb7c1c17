"""What the commands share at run time: the consoles, one-line errors and exit statuses,
the progress display, and the per-file loop of ``image`` and ``apply``."""

import contextlib
import json
import math
import sys

import typer

from ..errors import SegmentError


class LazyConsole:
    """A rich ``Console`` made when first used (any attribute is the console's): importing
    rich costs tens of milliseconds of start-up, which a command that prints nothing
    (``segment quantize --quiet``) need not pay."""

    def __init__(self, **settings):
        self._settings = settings
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._settings)
        return self._console

    def __getattr__(self, name):
        if name.startswith("_"):  # own attributes not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.console, name)


err_console = LazyConsole(stderr=True, highlight=False, soft_wrap=True)


out_console = LazyConsole(highlight=False, soft_wrap=True)


#: Error lines printed by this process (main() says "interrupted" if nothing else did).
FAILURES = []


def fail(message):
    # One line whatever the message holds (file names may contain newlines).
    text = "".join(ch if ch.isprintable() else "?" for ch in str(message))
    FAILURES.append(text)
    err_console.print(f"segment: error: {text}", markup=False)


def note(message):
    """One line on stderr that is not an error (a figure left undefined, a skipped part)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(message))
    err_console.print(f"note: {text}", markup=False)


@contextlib.contextmanager
def errors_to_exit():
    """Turn the failures a user can meet into one line and a status, never a traceback."""
    try:
        yield
    except SegmentError as err:
        fail(err)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        fail("interrupted; no partial output was left.")
        raise typer.Exit(130) from None
    except MemoryError:
        fail("out of memory; try a smaller --memory-mib, fewer components, or a smaller image.")
        raise typer.Exit(1) from None


def progress_display(quiet):
    if quiet or not err_console.is_terminal:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("iter {task.completed:>3.0f}"),
        TextColumn("{task.fields[value]}"),
        TimeElapsedColumn(),
        console=err_console.console,
        transient=True,
    )


def fmt_number(v, spec):
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
    if s.get("regions") is not None:
        parts.append(f"{s['regions']} regions")
    if "iterations" in s:
        parts.append(f"{s['iterations']} iterations ({conv})")
    parts += [
        f"log-lik/pixel={fmt_number(s['log_likelihood'], '.4f')}",
        f"BIC={fmt_number(s['bic'], '.6g')}",
        f"PSNR={fmt_number(s['psnr_db'], '.2f')} dB",
        f"{s['seconds']:.2f} s",
    ]
    out_console.print("  ".join(parts))
    for note in s.get("notes", []):
        err_console.print(f"  note: {note}", markup=False)


def print_json(obj):
    from ..outputs.files import jsonable

    sys.stdout.write(json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n")


def run_files(paths, work, *, quiet, as_json, progress_label):
    """Run ``work(path, on_iteration)`` over files; a failing file does not stop the rest."""
    from ..outputs.stems import stems_for

    with errors_to_exit():
        stems = stems_for(paths)
    results, failed = [], 0
    progress = progress_display(quiet)
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
            fail(err)
            failed += 1
            continue
        except MemoryError:
            fail(f"{path}: out of memory; try a smaller --memory-mib or fewer components.")
            failed += 1
            continue
        except KeyboardInterrupt:
            fail("interrupted; no partial output was left.")
            raise typer.Exit(130) from None
        for s in summaries:
            results.append(s)
            if not quiet and not as_json:
                _print_summary(s)
    if as_json:
        print_json(results)
    if failed:
        raise typer.Exit(1)
