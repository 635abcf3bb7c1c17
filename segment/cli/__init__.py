"""The ``segment`` command line: one module per command (``image``, ``apply``, ``quantize``,
``compare``, ``batch``, ``binary``), the options they share in :mod:`.params`, error reporting and
progress in :mod:`.common`, and :mod:`.app`, which composes them into one Typer app. A
command declares its options and calls one library function; every :class:`SegmentError`
becomes one line on stderr and exit status 1 (usage errors are Typer's, status 2)."""

import os

# The per-chunk matrix products of EM are small: a multi-threaded BLAS only synchronises its
# threads (and oversubscribes the cores when batch runs several workers). Set before numpy
# is imported; the user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from .app import main

# Importing the submodule bound its name here; ``segment.cli.app`` is the Typer app instead.
globals().pop("app", None)

__all__ = ["app", "main"]


def __getattr__(name):
    if name == "app":  # the whole Typer app, built when first asked for (see .app)
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
