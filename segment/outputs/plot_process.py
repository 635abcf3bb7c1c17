"""Drawing the plots of ``segment image`` in a worker process, off the critical path.

The plots take about a second and a half of one core (importing matplotlib, then drawing),
and the label stage after the fit keeps the main process busy with work that holds the GIL:
a second process draws them meanwhile. :func:`plot_worker` starts it at the start of the
command, so that its imports overlap the decoding and the fit; once a fit is done,
:class:`PlotJob` sends it the specs of the figures (:mod:`.plots.specs`: the history, the
model's parameters and small histograms, never the pixels), and the main process takes the
PNG bytes when it writes the outputs, after the labels. The files are written by the main
process, atomically and in the image's group, as for every other output, so the worker
never leaves anything on disk.

Both ways draw with :func:`.plots.render.render` from the same spec: the bytes are the
same. The plots are drawn here instead when there is no worker: one CPU only, ``--no-plots``
(nothing to draw), inside a pool worker or a Dask worker (``segment batch`` already keeps
the cores busy), ``SEGMENT_PLOT_WORKER=0`` in the environment, the process could not be
started, or it died (an error the worker met while drawing is raised here instead, as if
the drawing had been done here).

The worker runs in its own session: a Ctrl-C in the terminal reaches only the main
process, which ends the worker (and waits for it) as it unwinds. A main process killed
outright closes the worker's pipes: the worker ends at its next read or write.
"""

import contextlib
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["PlotJob", "PlotWorker", "plot_worker", "read_message", "write_message"]

#: Environment variable: "0" draws the plots in the main process.
ENV_SWITCH = "SEGMENT_PLOT_WORKER"

_HEADER = struct.Struct(">Q")

#: Seconds an idle worker has to exit after its request pipe is closed.
_EXIT_GRACE = 2.0

#: Seconds the main process waits for the figures of one request (they take about one; a
#: stuck worker is ended and the figures are drawn here).
ANSWER_TIMEOUT = 120.0


def write_message(stream, payload):
    """Write one length-prefixed message (bytes) to a binary stream and flush it."""
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_message(stream):
    """The next message of a binary stream, or None at its end (also a truncated one)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_wanted():
    """Whether drawing in a worker process can help here (see the module's docstring)."""
    if os.environ.get(ENV_SWITCH, "").strip() == "0":
        return False
    if _cpus() < 2:
        return False
    # A process pool's or Dask's worker: the other cores have jobs of their own.
    return multiprocessing.parent_process() is None and not _in_dask_task()


def _in_dask_task():
    distributed = sys.modules.get("distributed")  # never imported here for this check
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except Exception:  # ValueError outside a task; anything from an odd release
        return False
    return True


class PlotWorker:
    """A started worker process (see :func:`plot_worker`): :meth:`submit` sends the specs of
    some figures, :meth:`result` returns their PNG bytes."""

    def __init__(self, process):
        self._process = process
        self._tickets = 0
        self._taken = 0  # tickets below this were answered (or given up)
        self._sender = None
        self._gone = False

    @classmethod
    def start(cls):
        """A new worker, or None if the process cannot be started."""
        import segment

        try:
            # The worker imports this very package, wherever it was found.
            root = str(Path(segment.__file__).resolve().parent.parent)
            code = (
                f"import sys; sys.path.insert(0, {root!r}); "
                "from segment.outputs.plots.worker import main; main()"
            )
            process = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except (OSError, TypeError, ValueError, subprocess.SubprocessError):
            return None
        return cls(process)

    @property
    def pid(self):
        return self._process.pid

    def submit(self, specs):
        """Send ``specs`` (kind -> spec) to be drawn; returns the ticket for :meth:`result`.

        The request is written by a thread: a pipe holds 64 KiB, and the worker may still be
        importing matplotlib when the fit is done."""
        ticket = self._tickets
        self._tickets += 1
        if self._gone:
            return ticket
        payload = pickle.dumps((ticket, list(specs.items())), protocol=pickle.HIGHEST_PROTOCOL)
        self._join_sender()
        self._sender = threading.Thread(
            target=self._send, args=(payload,), name="segment-plot-request", daemon=True
        )
        self._sender.start()
        return ticket

    def _send(self, payload):
        try:
            write_message(self._process.stdin, payload)
        except (OSError, ValueError):  # the worker is gone (or was ended)
            self._gone = True

    def _join_sender(self):
        if self._sender is not None:
            self._sender.join()
            self._sender = None

    def result(self, ticket):
        """The PNG bytes (kind -> bytes) of the request ``ticket``; None if the worker is
        gone (the caller draws them itself). An error the worker met is raised here."""
        # A stuck worker is ended: the request's write and the read below then end too, and
        # the figures are drawn here.
        watchdog = threading.Timer(ANSWER_TIMEOUT, self._process.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            self._join_sender()
            while not self._gone:
                try:
                    message = read_message(self._process.stdout)
                    got, ok, value = pickle.loads(message) if message is not None else (0,) * 3
                except Exception:  # a broken pipe or answer: the worker cannot be trusted
                    message = None
                if message is None:
                    self._gone = True
                    break
                if got < ticket:  # drawn for a segmentation that failed after sending it
                    continue
                if ok:
                    return value
                raise value
        finally:
            watchdog.cancel()
            self._taken = max(self._taken, ticket + 1)
        return None

    def close(self, *, abort=False):
        """End the worker and wait for it: at once with ``abort``, else by closing its
        request pipe (it exits when idle), ending it if it does not exit soon."""
        process = self._process
        # Figures nobody will take (their segmentation failed) are not waited for.
        abort = abort or self._taken < self._tickets
        sender = self._sender
        if sender is not None and not abort:
            sender.join(timeout=_EXIT_GRACE)
            abort = sender.is_alive()
        if abort:
            process.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()
            try:
                process.wait(timeout=_EXIT_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        if self._sender is not None:  # it fails once the worker is gone
            self._sender.join(timeout=1.0)
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        self._gone = True


@contextlib.contextmanager
def plot_worker(enabled=True):
    """A :class:`PlotWorker` for the duration of the block, or None when the plots are to be
    drawn in this process (``enabled`` False, or see the module's docstring). The worker is
    ended when the block ends; at once if it ends by an exception (Ctrl-C included)."""
    worker = PlotWorker.start() if enabled and worker_wanted() else None
    if worker is None:
        yield None
        return
    try:
        yield worker
    except BaseException:
        worker.close(abort=True)
        raise
    worker.close()


class PlotJob:
    """The figures of one segmentation, ``specs`` (kind -> spec): sent to ``worker`` at once
    if there is one, else drawn here when :meth:`pngs` is called."""

    def __init__(self, specs, worker=None):
        self.specs = specs
        self._worker = worker if specs else None
        self._ticket = self._worker.submit(specs) if self._worker is not None else None

    def pngs(self):
        """The PNG bytes of every figure (kind -> bytes), in the order of ``specs``."""
        if self._worker is not None:
            done = self._worker.result(self._ticket)
            if done is not None:
                return done
        from .plots.render import render

        return {kind: render(kind, spec) for kind, spec in self.specs.items()}
