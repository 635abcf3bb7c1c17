"""Where the jobs run: this process, a pool of spawned worker processes (a dead worker's job
is retried once), or a Dask cluster. Every engine has ``imap(fn, jobs, events)`` and
``abort()``."""

import contextlib
import multiprocessing
import os
import signal
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from .. import interrupts
from ..errors import SegmentError
from .jobs import failure_row
from .lifeline import watch_parent
from .scheduler import check_scheduler

#: Seconds to reach a Dask scheduler and hear it answer: the README promises an answer
#: within 10 s of the start, and the imports take the rest.
DASK_CONNECT_TIMEOUT = 8.0


DASK_MISSING = "--scheduler needs the dask extra: pip install 'dask[distributed]'"


WORKER_DIED = (
    "the worker process died while processing it (killed, out of memory, or a crash in a "
    "library); run again with --resume to retry it."
)


class InlineEngine:
    """Jobs one after another in this process (``--workers 1``)."""

    description = "in this process"
    slots = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, fn, jobs, events):
        for job in jobs:
            events.running([job.rel])
            yield job, fn(job)

    def abort(self):
        pass


_IN_JOB = False


class _Terminated(BaseException):
    """SIGTERM in a pool worker during a job: unwinds it (removing the temp file being
    written) before the worker exits."""


def _on_worker_sigterm(signum, frame):
    if _IN_JOB:
        raise _Terminated
    os._exit(128 + signum)


def _worker_init(parent_pid):
    # The parent decides when to stop (a terminal's Ctrl-C reaches the whole process group)
    # and then sends SIGTERM. Both were blocked while this process was started, so that a
    # signal arriving before these handlers existed waits for them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # A parent killed with SIGKILL cannot send SIGTERM: the worker watches for itself.
    watch_parent(parent_pid)


def _in_worker(fn, job):
    global _IN_JOB
    _IN_JOB = True
    try:
        return fn(job)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_JOB = False


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM (delivered afterwards) while a worker is started."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: One BLAS thread per worker process: N workers on N cores, not N x N threads.
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _retry(job):
    # The first attempt may have written part of the job's outputs: they are replaced.
    return replace(job, overwrite=True)


class PoolEngine:
    """A process pool (spawned processes: no inherited threads or locks)."""

    def __init__(self, workers):
        self.workers = workers
        self.slots = workers
        self.description = f"{workers} worker processes"
        self._executor = None
        self._inflight = {}
        self._saved_env = {}
        self._others = set()  # child processes that were there before the pool
        self._workers = set()  # the pool's worker processes seen so far

    def __enter__(self):
        for name in _BLAS_ENV:
            self._saved_env[name] = os.environ.get(name)
            os.environ.setdefault(name, "1")
        self._others = set(multiprocessing.active_children())
        self._executor = self._new_executor()
        return self

    def __exit__(self, *exc):
        try:
            self._executor.shutdown(wait=True, cancel_futures=True)
        finally:
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return False

    def _new_executor(self):
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )

    def imap(self, fn, jobs, events):
        """Yield ``(job, fn(job))`` as jobs finish, with at most one job per worker in
        flight (so "running" is what really runs). A job whose worker died is retried once
        in a new pool, then reported failed."""
        pending = deque((job, 0) for job in jobs)
        inflight = self._inflight
        while pending or inflight:
            broken = False
            while pending and len(inflight) < self.slots:
                job, attempt = pending.popleft()
                try:
                    with _signals_held():  # a worker may be started here
                        future = self._executor.submit(_in_worker, fn, job)
                    self._note_workers()
                except BrokenProcessPool:  # a worker died since the last results
                    pending.appendleft((job, attempt))
                    broken = True
                    break
                inflight[future] = (job, attempt)
            if not broken:
                events.running([job.rel for job, _ in inflight.values()])
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                interrupts.check()
                for future in sorted(done, key=lambda f: inflight[f][0].index):
                    result = self._result(future, pending)
                    broken |= result is None
                    if result is not None:
                        yield result
            if broken:
                # Every job still in flight ends (a result, or the same failure): collect
                # them, then start a new pool.
                _, hung = wait(list(inflight), timeout=60.0)
                for future in hung:
                    yield inflight.pop(future)[0], failure_row(WORKER_DIED)
                for future in sorted(inflight, key=lambda f: inflight[f][0].index):
                    result = self._result(future, pending)
                    if result is not None:
                        yield result
                self._executor.shutdown(wait=True)
                self._executor = self._new_executor()

    def _note_workers(self):
        """Remember the pool's worker processes (started on demand, at a submit), from
        multiprocessing's public list of this process's children: :meth:`abort` stops them
        without reaching into the executor."""
        self._workers.update(p for p in multiprocessing.active_children() if p not in self._others)

    def _result(self, future, pending):
        """``(job, result)`` of a finished future; None when its worker died and the job
        goes back to ``pending`` for a second attempt."""
        job, attempt = self._inflight.pop(future)
        try:
            return job, future.result()
        except BrokenProcessPool:
            if attempt == 0:
                pending.appendleft((_retry(job), 1))
                return None
            return job, failure_row(WORKER_DIED)
        except Exception as err:
            return job, failure_row(f"internal error ({type(err).__name__}: {err}).")

    def abort(self):
        """Stop now: cancel queued jobs, SIGTERM the workers (each removes the file it was
        writing), and kill any that has not exited after a few seconds."""
        executor = self._executor
        if executor is None:
            return
        for future in self._inflight:
            future.cancel()
        self._note_workers()
        processes = [p for p in self._workers if p.is_alive()]
        for p in processes:
            with contextlib.suppress(Exception):
                p.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 10.0
        for p in processes:
            with contextlib.suppress(Exception):
                p.join(max(0.1, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
        self._inflight.clear()


def import_distributed():
    try:
        import distributed
    except ImportError:
        raise SegmentError(DASK_MISSING) from None
    return distributed


class DaskEngine:
    """Jobs on a Dask cluster: a running scheduler's address, ``"local"`` (a LocalCluster of
    ``workers`` processes on this machine), or a ``distributed.Client`` given by the caller
    (not closed here)."""

    def __init__(self, scheduler, workers):
        self.scheduler = scheduler
        self.workers = workers
        self.client = None
        self._cluster = None
        self._own_client = False
        self._inflight = {}

    def __enter__(self):
        try:
            self._connect()
        except BaseException:  # a failed or interrupted start: leave nothing running
            self.__exit__()
            raise
        threads = sum(self.client.nthreads().values()) or 1
        self.slots = max(2, 2 * threads)
        where = (
            "local cluster"
            if self._cluster is not None
            else getattr(self.client.scheduler, "address", "scheduler")
        )
        self.description = f"Dask ({where}, {threads} threads)"
        return self

    def _connect(self):
        distributed = import_distributed()
        if not isinstance(self.scheduler, str):
            self.client = self.scheduler
            return
        import logging

        self._own_client = True
        try:
            if self.scheduler == "local":
                import dask

                # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off
                # glibc's adaptive mmap threshold: every large numpy temporary then costs
                # fresh pages (15x the page faults, 3x the system time of the local pool).
                # A None unsets it (read when the nannies are made).
                unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
                with dask.config.set(unset_trim), _environ_restored():
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=":0",  # any free port: two clusters must not clash
                        silence_logs=logging.ERROR,
                    )
                self.client = distributed.Client(self._cluster, set_as_default=False)
            else:
                # Asked first, under a deadline: a Client would wait for ever on an HTTP
                # server and print a traceback at exit for one that sends garbage.
                left = check_scheduler(self.scheduler, DASK_CONNECT_TIMEOUT)
                self.client = distributed.Client(
                    self.scheduler, timeout=f"{left:.1f}s", set_as_default=False
                )
            interrupts.check()
        except (OSError, TimeoutError, ValueError) as err:
            raise SegmentError(
                f"cannot connect to the Dask scheduler at {self.scheduler} "
                f"({' '.join(str(err).split())}); start one with 'dask scheduler' and "
                "'dask worker ADDRESS', or check the address."
            ) from None

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            if self._own_client and self.client is not None:
                self.client.close()
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close()
        return False

    def imap(self, fn, jobs, events):
        distributed = import_distributed()
        pending = deque(jobs)
        inflight = self._inflight
        tag = uuid.uuid4().hex[:12]
        done = distributed.as_completed(loop=self.client.loop)

        def submit():
            job = pending.popleft()
            future = self.client.submit(fn, job, key=f"segment-batch-{tag}-{job.index}")
            inflight[future.key] = (job, future)
            done.add(future)

        while pending and len(inflight) < self.slots:
            submit()
        events.running([job.rel for job, _ in inflight.values()])
        for future in done:
            job, _ = inflight.pop(future.key)
            try:
                result = future.result()
            except Exception as err:  # KilledWorker, lost connection, ...
                result = failure_row(f"the Dask task failed ({type(err).__name__}: {err}).")
            future.release()
            if pending:
                submit()
            events.running([j.rel for j, _ in inflight.values()])
            yield job, result

    def abort(self):
        with contextlib.suppress(Exception):
            self.client.cancel([f for _, f in self._inflight.values()])
        self._inflight.clear()


@contextlib.contextmanager
def _environ_restored():
    """Undo what a block does to ``os.environ``: in-process Dask nannies write their
    workers' variables into their own process before spawning them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def make_engine(workers, scheduler, n_jobs):
    if scheduler is not None:
        return DaskEngine(scheduler, workers)
    workers = min(workers, max(1, n_jobs))
    return InlineEngine() if workers <= 1 else PoolEngine(workers)


def default_workers():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
