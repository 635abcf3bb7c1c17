"""The odd-file runner: ``segment image`` on every file of ``tests/data/odd`` (and under
injected faults), each run a process of its own, and the judge of what it left.

How files are run: ``python -m segment`` spends most of a second importing numpy, scipy and
matplotlib, which for 165 files is minutes of CPU. By default a driver process imports
``segment`` once and forks one child per run; the child runs ``segment/__main__.py`` exactly
as ``python -m segment`` does (runpy, the same argv, stdout and stderr on real files, the
real exit status or signal), so every run is still a process of its own. ``exec`` mode starts
a fresh interpreter per run instead; the tests check that both give the same results.

Used by ``tests/segment/test_reliability*.py`` (:func:`run_jobs`, :func:`judge`,
:func:`validate_outputs`) and by ``benchmarks/reliability_table.py`` (the tables). It imports
only the standard library at the top, so that the forked children start from a clean
interpreter plus ``segment``.
"""

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import resource
import runpy
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


ODD = ROOT / "tests" / "data" / "odd"


NOT_IMAGES = frozenset({"INDEX.tsv", "LICENSE.md", "PngSuite.LICENSE", "make_extra.py"})


TEMP_PREFIX = ".segment-tmp-"  # segment.outputs.files.TEMP_PREFIX (not imported: see the docstring)


OUTPUT_KINDS = ("segmented", "quantized", "labels", "loglik", "density", "model")


PLOT_KINDS = ("loglik", "density")


#: The settings of every corpus run: small, so that 165 runs take seconds.
CORPUS_ARGS = ("-k", "3", "--max-iter", "20", "-q")


#: Corpus files also run with the plots (the rest use --no-plots): a photo, transparency, a
#: single pixel and a one-pixel-high line.
PLOTTED = frozenset({"flower.jpg", "rgba_holes.png", "one_pixel.jpg", "line_1x2000.png"})


#: Message categories of the ``cli`` column of INDEX.tsv: what the one line must say.
CATEGORIES = {
    "not-an-image": r"not an image file Pillow can read",
    "text-file": r"this is a text file, not an image",
    "svg": r"SVG vector images cannot be read",
    "empty": r"the file is empty \(0 bytes\)",
    "truncated": r"the image data is truncated|the file ends unexpectedly",
    "corrupt": r"the image data is corrupt|the file is malformed|impossible values",
    "bomb": r"\d+ pixels is over the limit of \d+ \(decompression-bomb protection\); "
    r"pass --max-pixels \d+",
    "metadata-bomb": r"a compressed metadata chunk expands to too much data",
    "transparent": r"every pixel is fully transparent; there is nothing to segment",
}


def read_index():
    """Rows of ``tests/data/odd/INDEX.tsv``: file, source, exercises, expected, cli."""
    with open(ODD / "INDEX.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def category_of(message):
    """The :data:`CATEGORIES` key whose pattern the message matches, or None."""
    for name, pattern in CATEGORIES.items():
        if re.search(pattern, message):
            return name
    return None


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def corpus_jobs(rows, out_root, *, plots=None, extra=()):
    """One job per corpus row, each with its own output folder ``out_root/<file>``.

    ``plots``: None = plots for :data:`PLOTTED` only; True / False = for all / none.
    """
    jobs = []
    for row in rows:
        name = row["file"]
        with_plots = name in PLOTTED if plots is None else plots
        argv = ["image", str(ODD / name), *CORPUS_ARGS, "-o", str(Path(out_root) / name)]
        if not with_plots:
            argv.append("--no-plots")
        jobs.append({"id": name, "argv": [*argv, *extra], "plots": with_plots})
    return jobs


def output_names(stem, *, plots=True):
    kinds = [k for k in OUTPUT_KINDS if plots or k not in PLOT_KINDS]
    return {k: f"{stem}.{k}.{'json' if k == 'model' else 'png'}" for k in kinds}


def files_under(folder):
    """Every file (also hidden temporaries) under ``folder``, as relative paths."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def validate_outputs(out_dir, stem, *, plots=True, loglik=True):
    """Problems (list of str; empty = fine) with the outputs of one image.

    Every expected file exists; the model file is strict JSON of the right format; the
    segmented, quantized and labels PNGs decode at the size the model file states; the plots
    decode; no temporary file is left.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    problems = []
    names = output_names(stem, plots=plots)
    if not loglik:
        names.pop("loglik", None)
    for name in names.values():
        if not (out_dir / name).is_file():
            problems.append(f"{name} is missing")
    size = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        doc = json.loads(
            (out_dir / names["model"]).read_text(encoding="utf-8"),
            parse_constant=_reject_constant,
        )
        if doc.get("format") != "segment.model/1":
            problems.append(f"{names['model']}: not a segment model file")
        size = (int(doc["input"]["width"]), int(doc["input"]["height"]))
    if size is None and (out_dir / names["model"]).is_file():
        problems.append(f"{names['model']} does not parse")
    for kind, name in names.items():
        path = out_dir / name
        if kind == "model" or not path.is_file():
            continue
        try:
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                im.load()
                if im.format != "PNG":
                    problems.append(f"{name} is {im.format}, not PNG")
                if kind not in PLOT_KINDS and size is not None and im.size != size:
                    problems.append(f"{name} is {im.size[0]}x{im.size[1]}, not {size}")
        except Exception as err:
            problems.append(f"{name} does not decode ({type(err).__name__}: {err})")
    leftovers = [n for n in files_under(out_dir) if Path(n).name.startswith(TEMP_PREFIX)]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    return problems


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


def run_problems(result, code):
    """What breaks the README's promises in any run expected to exit with ``code``: a hang,
    another exit status, a traceback or internal error, a Python warning on stderr."""
    problems = []
    if result["timed_out"]:
        problems.append(f"no answer after {result['wall']:.0f} s")
    if result["code"] != code:
        got = result["code"] if result["code"] is not None else result["signal"]
        problems.append(f"exit {got}, not {code}")
    if "Traceback" in result["stderr"] or "internal error" in result["stderr"]:
        problems.append("a traceback or internal error")
    if "Warning" in result["stderr"]:
        problems.append("a Python warning on stderr")
    return problems


def judge(row, result, out_dir, *, plots):
    """What became of one corpus file: a dict with ``outcome`` (ok, refused, crash, hang),
    ``category`` (of the error message), ``message`` and ``problems`` (empty = clean)."""
    name = row["file"]
    lines = error_lines(result["stderr"])
    verdict = {"file": name, "category": "ok", "message": "", "problems": []}
    problems = verdict["problems"]
    if "Traceback" in result["stderr"] or "internal error" in result["stderr"]:
        problems.append("a traceback or internal error on stderr")
    if result["timed_out"]:
        verdict["outcome"] = "hang"
        problems.append(f"no answer after {result['wall']:.0f} s")
    elif result["code"] == 0:
        verdict["outcome"] = "ok"
        problems += validate_outputs(out_dir, Path(name).stem, plots=plots)
        if lines:
            problems.append(f"stderr of a quiet successful run: {lines[:2]}")
    elif result["code"] == 1:
        verdict["outcome"] = "refused"
        verdict["message"] = lines[0] if lines else ""
        verdict["category"] = category_of(verdict["message"])
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr, not 1")
        elif not lines[0].startswith("segment: error: ") or name not in lines[0]:
            problems.append("the message does not name the file")
        left = files_under(out_dir)
        if left:
            problems.append(f"files left after a refusal: {left}")
    else:
        verdict["outcome"] = "crash"
        how = f"signal {result['signal']}" if result["signal"] else f"exit {result['code']}"
        problems.append(f"ended by {how}")
    if verdict["category"] != row["cli"]:
        problems.append(f"category {verdict['category']!r}, INDEX.tsv says {row['cli']!r}")
    return verdict


def run_jobs(jobs, *, parallel=2, mode="fork", timeout=60.0):
    """Run ``segment`` once per job, ``parallel`` processes at a time.

    Parameters
    ----------
    jobs : list of dict
        ``id``; ``argv`` (the arguments after ``segment``); optional ``fault`` and
        ``fault_arg`` (see :data:`FAULTS`, fork mode only); optional ``kill``: a dict with
        ``signal`` and either ``after`` (seconds from the start) or ``temp_in`` (a folder:
        the signal is sent ``delay`` seconds after the ``count``-th (default 1st) temporary
        output file appears there; the "slow" fault makes each last long enough to be seen);
        optional ``timeout``; optional ``stdout``: a file that gets the job's stdout (e.g.
        /dev/full) instead of the result's ``stdout``.
    mode : "fork" or "exec"
        Fork children of a server process that imported ``segment`` once (started at the
        first call, kept for the next ones), or start ``sys.executable -m segment`` for
        every job.

    Returns
    -------
    list of dict
        Per job, in order: ``id``, ``code`` (exit status, or None if ended by a signal),
        ``signal``, ``timed_out``, ``sent`` (the signal we sent, if any), ``wall`` and ``cpu``
        seconds, ``stdout`` and ``stderr`` text.
    """
    if mode not in ("fork", "exec"):
        raise ValueError(f"mode must be 'fork' or 'exec', not {mode!r}")
    if mode == "exec" and any(job.get("fault") for job in jobs):
        raise ValueError("faults are injected in forked children only")
    with tempfile.TemporaryDirectory(prefix="segment-reliability-") as tmp:
        jobs = [
            {**job, "_out": f"{tmp}/{i}.out", "_err": f"{tmp}/{i}.err"}
            for i, job in enumerate(jobs)
        ]
        batch = {"jobs": jobs, "parallel": parallel, "timeout": timeout, "fork": mode == "fork"}
        budget = 60 + sum(job.get("timeout", timeout) for job in jobs) / max(1, parallel)
        server = _fork_server() if mode == "fork" else _Server(warm=False)
        try:
            results = server.run(batch, budget)
        finally:
            if mode == "exec":
                server.close()
        for r, job in zip(results, jobs, strict=True):
            out = Path(job["_out"])  # absent when the job's stdout went elsewhere
            r["stdout"] = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
            r["stderr"] = Path(job["_err"]).read_text(encoding="utf-8", errors="replace")
        return results


class _Server:
    """A process running this module with ``--server``: it reads batches of jobs (one JSON
    line each) on stdin and answers each with one JSON line of results on stdout."""

    def __init__(self, *, warm):
        import subprocess

        self._log = tempfile.TemporaryFile()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--server"]
        self.process = subprocess.Popen(
            [*cmd, *([] if warm else ["--cold"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def alive(self):
        return self.process.poll() is None

    def run(self, batch, budget):
        import selectors

        self.process.stdin.write(json.dumps(batch) + "\n")
        self.process.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            ready = sel.select(budget)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            self._log.seek(0)
            log = self._log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"the reliability driver failed or hung:\n{log}")
        return json.loads(line)

    def close(self):
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # the server's loop ends
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self._log.close()


_SHARED = []


def _fork_server():
    if not _SHARED or not _SHARED[0].alive():
        _SHARED[:] = [_Server(warm=True)]
        import atexit

        atexit.register(_SHARED[0].close)
    return _SHARED[0]


def _serve_stdin(*, warm):
    """The server: run each batch of jobs read on stdin; answer on stdout."""
    if warm:
        _warm_up()
    for line in sys.stdin:
        batch = json.loads(line)
        results = _loop(batch["jobs"], batch["parallel"], batch["timeout"], fork=batch["fork"])
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()


def _warm_up():
    """Do once what every child would otherwise repeat: import what `python -m segment`
    imports (also lazily: Typer's parameter coercion, Pillow's plugins, the plotting and
    colour modules) by segmenting a tiny image, plots included. The children start from
    this state; a failure here shows again, properly, in every child."""
    with contextlib.suppress(BaseException), tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        Image.new("RGB", (4, 3), (200, 30, 30)).save(f"{tmp}/warm.png")
        out = os.dup(1), os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            _run_as_python_m({"argv": ["image", f"{tmp}/warm.png", "-k", "2", "-o", tmp]})
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out[0], 1)
            os.dup2(out[1], 2)
            for fd in (null, *out):
                os.close(fd)


def _loop(jobs, parallel, timeout, *, fork):
    pending = list(enumerate(jobs))
    running = {}  # pid -> (index, job, start, deadline)
    results = [None] * len(jobs)
    while pending or running:
        while pending and len(running) < parallel:
            index, job = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            start = time.monotonic()
            pid = _start_fork(job) if fork else _start_exec(job)
            running[pid] = [index, job, start, start + job.get("timeout", timeout), None]
        reaped = False
        for pid in list(running):
            index, job, start, deadline, sent = running[pid]
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got == 0:
                now = time.monotonic()
                if now > deadline and sent != signal.SIGKILL:
                    os.kill(pid, signal.SIGKILL)
                    running[pid][4] = signal.SIGKILL
                    job["_timed_out"] = True
                elif sent is None and _kill_due(job, start, now):
                    sig = int(job["kill"].get("signal", signal.SIGKILL))
                    os.kill(pid, sig)
                    running[pid][4] = sig
                continue
            reaped = True
            del running[pid]
            results[index] = {
                "id": job["id"],
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "timed_out": bool(job.get("_timed_out")),
                "sent": sent,
                "wall": time.monotonic() - start,
                "cpu": usage.ru_utime + usage.ru_stime,
            }
        if not reaped:
            time.sleep(0.002)
    return results


def _kill_due(job, start, now):
    kill = job.get("kill")
    if not kill:
        return False
    if "after" in kill:
        return now - start >= kill["after"]
    if "_seen" not in kill:
        names = kill.setdefault("_names", [])
        with contextlib.suppress(OSError):
            for n in os.listdir(kill["temp_in"]):
                if n.startswith(TEMP_PREFIX) and n not in names:
                    names.append(n)
        if len(names) >= kill.get("count", 1):
            kill["_seen"] = now
        return False
    return now - kill["_seen"] >= kill.get("delay", 0.0)


def _open_std(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def _start_exec(job):
    argv = [sys.executable, "-m", "segment", *job["argv"]]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (
            os.POSIX_SPAWN_OPEN,
            1,
            job.get("stdout") or job["_out"],
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
            0o644,
        ),
        (os.POSIX_SPAWN_OPEN, 2, job["_err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    return os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions)


def _start_fork(job):
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.dup2(_open_std(job.get("stdout") or job["_out"]), 1)
        os.dup2(_open_std(job["_err"]), 2)
        # As from a terminal: a driver started in the background (``cmd &`` in a script)
        # has SIGINT ignored, which the children would otherwise inherit.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = _run_as_python_m(job)
    except BaseException:  # the child must never return into the driver's loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_as_python_m(job):
    """What ``python -m segment ARGV`` does, in this (forked) process; the exit status."""
    if job.get("fault"):
        FAULTS[job["fault"]](job.get("fault_arg"))
    sys.argv = ["segment", *job["argv"]]  # runpy puts the __main__.py path in argv[0]
    sys.path[0] = os.getcwd()
    try:
        runpy.run_module("segment", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None:
            return 0
        if isinstance(stop.code, int):
            return stop.code
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # as the interpreter: a traceback and status 1
        traceback.print_exc()
        return 1
    return 0


def _os_error(code, filename=None):
    return OSError(code, os.strerror(code), filename)


class _FaultyFile:
    """A binary file whose write() fails or crawls; the rest is the real file's."""

    def __init__(self, f, state):
        self._f = f
        self._state = state

    def write(self, data):
        state = self._state
        data = memoryview(data).cast("B")
        if "budget" in state:
            if len(data) > state["budget"]:
                room = state["budget"]
                self._f.write(data[:room])  # a full disk takes what fits, then fails
                state["budget"] = 0
                raise _os_error(errno.ENOSPC)
            state["budget"] -= len(data)
            return self._f.write(data)
        if len(data) < 256:  # PNG chunk headers and the like
            return self._f.write(data)
        # Four pieces, each on the disk before a pause: a half-written file for a while.
        pause = max(state["min_call"], len(data) / state["rate"]) / 4
        step = -(-len(data) // 4)
        for a in range(0, len(data), step):
            self._f.write(data[a : a + step])
            self._f.flush()
            time.sleep(pause)
        return len(data)

    def fileno(self):
        # Pillow's PNG encoder writes to the descriptor itself when there is one: the plots
        # are not slowed down by write(), only by the fsync delay of the "slow" fault.
        return self._f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _wrap_fdopen(state):
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real(fd, mode, *args, **kwargs)
        return _FaultyFile(f, state) if "w" in mode and "b" in mode else f

    os.fdopen = fdopen


def _fault_enospc(arg):
    """The disk fills after ``arg`` bytes (0: at once) written through Python file objects
    (Pillow's PNG encoder may write to the descriptor itself: see enospc-fsync)."""
    _wrap_fdopen({"budget": int(arg or 0)})


def _fault_enospc_fsync(arg):
    """fsync() reports ENOSPC, as delayed allocation does when the disk is full."""

    def fsync(fd):
        raise _os_error(errno.ENOSPC)

    os.fsync = fsync


def _fault_mkstemp(code):
    def mkstemp(*args, dir=None, **kwargs):
        raise _os_error(code, dir)

    tempfile.mkstemp = mkstemp


def _fault_efbig(arg):
    """A real kernel limit: files may not grow beyond ``arg`` bytes (``ulimit -f``)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), int(arg)))


def _fault_slow(arg):
    """Writes crawl, so that every output's temporary file exists long enough to be seen
    (and killed): ``arg`` = [bytes per second, least seconds per write() of 256 bytes or
    more, seconds per fsync]."""
    rate, min_call, sync_delay = arg or (1e6, 0.1, 0.1)
    _wrap_fdopen({"rate": float(rate), "min_call": float(min_call)})
    real = os.fsync

    def fsync(fd):
        time.sleep(float(sync_delay))
        return real(fd)

    os.fsync = fsync


def _fault_unreadable(path):
    """Opening ``path`` fails with EACCES, as for a file without read permission (the
    tests may run as root, for whom every file is readable)."""
    import builtins

    target = os.path.abspath(path)
    real_open, real_os_open = builtins.open, os.open

    def denied(file):
        return isinstance(file, str | os.PathLike) and os.path.abspath(file) == target

    def open_(file, *args, **kwargs):
        if denied(file):
            raise _os_error(errno.EACCES, str(file))
        return real_open(file, *args, **kwargs)

    def os_open(file, *args, **kwargs):
        if denied(file):
            raise _os_error(errno.EACCES, str(file))
        return real_os_open(file, *args, **kwargs)

    builtins.open = open_
    os.open = os_open


FAULTS = {
    "unreadable": _fault_unreadable,
    "enospc": _fault_enospc,
    "enospc-fsync": _fault_enospc_fsync,
    "eacces": lambda arg: _fault_mkstemp(errno.EACCES),
    "erofs": lambda arg: _fault_mkstemp(errno.EROFS),
    "efbig": _fault_efbig,
    "slow": _fault_slow,
}


def corpus_summary(verdicts):
    count = lambda cond: sum(1 for v in verdicts if cond(v))  # noqa: E731
    by_cat = {}
    for v in verdicts:
        if v["outcome"] == "refused":
            by_cat[v["category"]] = by_cat.get(v["category"], 0) + 1
    return {
        "files": len(verdicts),
        "succeeded": count(lambda v: v["outcome"] == "ok"),
        "refused cleanly": count(lambda v: v["outcome"] == "refused" and not v["problems"]),
        "crashes (exit not 0/1, signal, traceback)": count(
            lambda v: (
                v["outcome"] == "crash"
                or any("traceback" in p or "internal error" in p for p in v["problems"])
            )
        ),
        "hangs": count(lambda v: v["outcome"] == "hang"),
        "runs with any problem": count(lambda v: v["problems"]),
        "partial / leftover files": count(
            lambda v: any("left" in p or "missing" in p for p in v["problems"])
        ),
        "inputs changed": count(lambda v: "the input changed" in v["problems"]),
        "slowest run (CPU s)": round(max(v["cpu"] for v in verdicts), 2),
        "refusals by category": dict(sorted(by_cat.items())),
    }


if __name__ == "__main__":  # the server process of _Server: this file with --server [--cold]
    _serve_stdin(warm="--cold" not in sys.argv[1:])
