"""Pool workers end when the process that started them is gone.

A parent killed with SIGKILL cannot stop its workers: they would wait for jobs on their
pipe for ever (each holding its imports, about 140 MB). A daemon thread in every worker
checks twice a second that the parent is still its parent; once it is not, the worker gets
SIGTERM (its handler removes a half-written output and exits), and is ended outright if it
has not exited a few seconds later (e.g. stuck in a long C call that never returns to
Python's signal handler).
"""

import os
import signal
import threading
import time

__all__ = ["watch_parent"]

#: Seconds between two checks of the parent.
POLL = 0.5
#: Seconds a worker has to exit by its SIGTERM handler before it is ended.
GRACE = 5.0


def watch_parent(parent_pid, *, poll=POLL, grace=GRACE):
    """Start a daemon thread that ends this process when ``parent_pid`` is no longer its
    parent (it died: the process was re-parented). Returns the thread."""
    thread = threading.Thread(
        target=_watch, args=(int(parent_pid), poll, grace), name="segment-lifeline", daemon=True
    )
    thread.start()
    return thread


def _watch(parent_pid, poll, grace):
    while os.getppid() == parent_pid:
        time.sleep(poll)
    # To the main thread: a signal taken by this thread would not interrupt the main
    # thread's blocking read of the job pipe, so its handler would never run.
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    time.sleep(grace)
    os._exit(128 + signal.SIGTERM)
