"""The plot worker's loop (started by :class:`segment.outputs.plot_process.PlotWorker`):
read a request (a ticket and the specs of some figures) from stdin, answer with the
ticket and the PNG bytes of every figure, or the error met, on stdout; end at the end of
stdin. It writes no file."""

import os
import pickle
import signal

from ..plot_process import read_message, write_message


def _sendable(err):
    """``err`` if it survives pickling, else a RuntimeError with the same text."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def main():
    # The main process decides when to stop, and ends this one (it is in its own session,
    # but a signal sent to the group of the main process must not kill it half-way either).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers go to the original stdout; anything a library prints (to fd 1) goes nowhere.
    answers = os.fdopen(os.dup(1), "wb")
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    # The import this process is started early for: matplotlib, while the main process
    # decodes and fits.
    from .render import render

    while True:
        message = read_message(requests)
        if message is None:
            return
        ticket, jobs = pickle.loads(message)
        try:
            answer = (ticket, True, {kind: render(kind, spec) for kind, spec in jobs})
        except Exception as err:
            answer = (ticket, False, _sendable(err))
        try:
            write_message(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the main process is gone
            return
