"""The Typer app: the commands of the modules beside this one, ``--version``, and
:func:`main`, the entry point that turns every error into one line and an exit status."""

import importlib
import signal
import sys
import warnings
from typing import Annotated

import typer

from .. import interrupts
from .coercion import lean_coercion
from .common import FAILURES, fail, out_console
from .streams import GuardedStream, StdoutError, silence_stdout, warning_as_note

#: The commands, each in the module of this package of the same name, which defines
#: ``<name>_cmd`` and ``EPILOG`` and knows nothing of the app. A command line that names a
#: command imports only that command's module (start-up time: the others bring rich's
#: progress bars and more).
COMMANDS = ("image", "apply", "quantize", "compare", "batch", "fill", "binary")


def _typer(**settings):
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
        **settings,
    )


def _register(typer_app, name):
    module = importlib.import_module(f"{__package__}.{name}")
    typer_app.command(name, epilog=module.EPILOG)(getattr(module, f"{name}_cmd"))


def _version(value: bool):
    if value:
        from .. import __version__

        out_console.print(f"segment {__version__}")
        raise typer.Exit()


def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
):
    pass


_WHOLE = []


def _whole_app():
    """The whole Typer app (every command), built once."""
    if not _WHOLE:
        whole = _typer(
            name="segment",
            help="Segment and colour-quantise images with Gaussian mixture models.",
            no_args_is_help=True,
        )
        whole.callback(
            help="Segment and colour-quantise images with Gaussian mixture models fitted by EM."
        )(_main)
        for name in COMMANDS:
            _register(whole, name)
        _WHOLE.append(whole)
    return _WHOLE[0]


def __getattr__(name):
    # ``app`` is built when first asked for: the entry point builds only the command named
    # on the command line.
    if name == "app":
        return _whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_terminated = []


def _terminate(signum, frame):
    _terminated.append(signum)
    interrupts.record(signum)
    raise KeyboardInterrupt


def _interrupt(signum, frame):
    # Recorded too: raised inside a garbage-collector callback (during a big import), the
    # KeyboardInterrupt would be swallowed; the waits raise it again (segment.interrupts).
    interrupts.record(signum)
    raise KeyboardInterrupt


def _command_for(argv):
    """The click command to run and its name: only the command named first on the command
    line when there is one (importing and building every command costs more start-up than
    ``segment quantize`` spends on a small image), else the whole app."""
    name = argv[0] if argv else None
    if name not in COMMANDS:
        return lean_coercion(typer.main.get_command(_whole_app())), "segment"
    single = _typer()
    _register(single, name)
    return lean_coercion(typer.main.get_command(single)), f"segment {name}"


def main(argv=None):
    """Entry point of the ``segment`` script: one line on stderr for any error, never a
    traceback; status 2 for usage errors, 1 for other failures, 130 when interrupted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command, prog = _command_for(argv)
    if prog != "segment":
        argv = argv[1:]
    # SIGTERM (kill, a scheduler's timeout) stops like Ctrl-C: temporary files are removed.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = interrupts.quiet_unraisable
    guarded = sys.stdout = GuardedStream(sys.stdout)
    warnings.showwarning = warning_as_note
    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False)
        code = result if isinstance(result, int) else 0
        guarded.flush()  # now, not at exit: a full disk is one line, not a traceback
    except StdoutError as err:
        fail(str(err))
        code = 1
    except typer.TyperException as err:  # Typer's (vendored click's) parsing errors
        code = getattr(err, "exit_code", 2)
        ctx = getattr(err, "ctx", None)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if type(err).__name__ != "NoArgsIsHelpError":  # that one has printed the help
            where = f" (see '{ctx.command_path} --help')" if ctx is not None and code == 2 else ""
            fail(f"{message}{where}")
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted.")
        code = 130
    except BrokenPipeError:
        code = 1
    except Exception as err:  # a bug: still one line, and a non-zero status
        fail(f"internal error ({type(err).__name__}: {err}); please report it.")
        code = 1
    if code == 130 and not FAILURES:  # Typer turns an early Ctrl-C into a silent 130
        fail("interrupted.")
    if _terminated and code == 130:
        code = 143  # the convention for SIGTERM
    if guarded.failed:
        silence_stdout()
    sys.exit(code)
