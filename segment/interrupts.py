"""Ctrl-C (or SIGTERM) that must not get lost (the CLI and segment batch record it here).

Python raises the KeyboardInterrupt of a signal handler wherever the main thread is; when
that is a weakref callback or a ``__del__`` run by the garbage collector (often, while a
big package such as distributed is being imported), the exception is printed as
"Exception ignored" and dropped, and the command carries on as if nothing had happened.
The handler therefore also records the signal here, and the places that wait (connecting
to a scheduler, waiting for the pool) call :func:`check`, which raises it again.
"""

import sys

__all__ = ["Interrupted", "check", "record", "reset"]

_pending = []


class Interrupted(KeyboardInterrupt):
    """A recorded SIGINT or SIGTERM (``signum``), raised again by :func:`check`."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def record(signum):
    _pending.append(signum)


def reset():
    _pending.clear()


def check():
    """Raise :class:`Interrupted` if a signal was recorded (and perhaps swallowed)."""
    if _pending:
        raise Interrupted(_pending[0])


def quiet_unraisable(unraisable, _default=sys.unraisablehook):
    """``sys.unraisablehook`` that drops interrupts (they are recorded and raised again)
    and leaves everything else to Python's hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    _default(unraisable)
