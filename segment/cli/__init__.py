"""The ``segment`` command line: one module per command (``image``, ``apply``, ``quantize``,
``compare``, ``batch``, ``binary``), the options they share in :mod:`.params`, error reporting and
progress in :mod:`.common`, and :mod:`.app`, which composes them into one Typer app. A
command declares its options and calls one library function; every :class:`SegmentError`
becomes one line on stderr and exit status 1 (usage errors are Typer's, status 2)."""

import importlib
import os
import signal
import sys
import types

# The per-chunk matrix products of EM are small: a multi-threaded BLAS only synchronises its
# threads (and oversubscribes the cores when batch runs several workers). Set before numpy
# is imported; the user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _interrupted_while_loading(signum, frame):
    # Nothing is written yet, so there is nothing to clean up: one line and the status of
    # an interrupt, not a traceback from the middle of an import.
    os.write(2, b"segment: error: interrupted.\n")
    os._exit(130)


def main(argv=None):
    """Entry point of the ``segment`` script (see :func:`segment.cli.app.main`)."""
    # A Ctrl-C while the command's modules load (typer, numpy: the first few tenths of a
    # second) stops as a later one does; app.main installs the handlers of a running command.
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    return _app_module().main(argv)


def _app_module():
    """The module :mod:`segment.cli.app` (``segment.cli.app`` is the Typer app: see below)."""
    return importlib.import_module(f"{__name__}.app")


__all__ = ["app", "main"]


def __getattr__(name):
    if name == "app":  # the whole Typer app, built when first asked for (see .app)
        return _app_module().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package, whose ``app`` is the Typer app: loading the submodule ``app`` (by
    ``main``, or ``import segment.cli.app`` in any order) would bind the module's name here
    and hide ``__getattr__``; that binding is dropped."""

    def __setattr__(self, name, value):
        if name == "app" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
