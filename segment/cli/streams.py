"""Standard output that may fail, and Python warnings, as one line each.

A command whose stdout is a full disk (``> /dev/full``), a closed pipe or a broken
terminal must say so in one line, not as an "internal error" or as the interpreter's
"Exception ignored" at exit. And a warning from a library (numpy's overflow, Pillow's
metadata, scikit-image's division) must not print its two lines of source: it becomes one
note on stderr, as the README promises.
"""

import contextlib
import os
import sys

from .common import note

__all__ = ["GuardedStream", "StdoutError", "silence_stdout", "warning_as_note"]


class StdoutError(Exception):
    """Writing to standard output failed (not a broken pipe: that one ends quietly)."""

    def __init__(self, err):
        why = err.strerror or type(err).__name__
        super().__init__(
            f"cannot write to standard output ({why}); free some space or send the output "
            "elsewhere."
        )


class GuardedStream:
    """``sys.stdout`` whose write and flush failures are :class:`StdoutError` (remembered in
    ``failed``); everything else is the real stream's."""

    def __init__(self, stream):
        self._stream = stream
        self.failed = False

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            self.failed = True
            raise
        except OSError as err:
            self.failed = True
            raise StdoutError(err) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def silence_stdout():
    """Point the standard output at /dev/null, so that the interpreter's own flush at exit
    does not fail a second time (Python's advice for broken pipes)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)


def warning_as_note(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning``: one note line (what and where), no source line."""
    where = os.path.basename(str(filename))
    note(f"{' '.join(str(message).split())} ({category.__name__} in {where}:{lineno})")
