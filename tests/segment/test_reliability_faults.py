"""Issue 6, reliability under faults: read-only or missing folders, full disks, output names
that are folders, processes killed while writing. Whatever happens, no partial file is
left under a final output name, no existing output is damaged, and the message (one line)
says what happened.

We run as root in CI, where chmod cannot make a folder read-only: permission and read-only
file-system errors are injected (a real chmod test runs for other users). Faults are
injected in-process (CliRunner + monkeypatch) to reach every write, and in real processes
(``benchmarks/reliability_table.py`` forks a child per run and injects the fault there) for
exit statuses, stderr and signals.
"""

import errno
import os
import re
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

import segment.outputs.files
from segment.cli import app
from segment.errors import SegmentError
from segment.outputs.files import TEMP_PREFIX, atomic_group, atomic_write
from tests.support import odd_files as RT

PARALLEL = max(2, min(4, os.cpu_count() or 2))
#: The order in which `segment image` writes its outputs (the model file last).
WRITE_ORDER = ["segmented", "quantized", "labels", "loglik", "density", "model"]


def lines_of(text):
    return [line for line in text.splitlines() if line.strip()]


def snapshot(folder):
    return {n: (Path(folder) / n).read_bytes() for n in RT.files_under(folder)}


def temporaries(folder):
    return [n for n in RT.files_under(folder) if Path(n).name.startswith(TEMP_PREFIX)]


# =============================================================================================
# The image and two reference sets of outputs
# =============================================================================================


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """A small photo-like image; its outputs at k=2 ('old': already in the folder when a
    run with --overwrite is hurt) and at k=3 ('new': what every run below writes)."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:30, 0:40]
    img = np.stack([x * 6, y * 8, (x + y) * 4], axis=-1) + rng.normal(0, 8, (30, 40, 3))
    src = root / "photo.png"
    PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(src)
    base = ["image", str(src), "-k", "3", "--max-iter", "20", "-q"]
    runs = RT.run_jobs(
        [
            {"id": "new", "argv": [*base, "-o", str(root / "new")]},
            {"id": "old", "argv": [*base, "-k", "2", "-o", str(root / "old")]},
        ],
        parallel=2,
    )
    assert [r["code"] for r in runs] == [0, 0], [r["stderr"] for r in runs]
    old, new = snapshot(root / "old"), snapshot(root / "new")
    assert len(old) == len(new) == 6
    assert all(old[n] != new[n] for n in old)  # so that old and new can be told apart
    return {
        "src": src,
        "base": base,
        "old": old,
        "new": new,
        "wall": runs[0]["wall"],
        "names": {k: f"photo.{k}.{'json' if k == 'model' else 'png'}" for k in WRITE_ORDER},
    }


def folder_with_old(ref, folder):
    folder.mkdir(parents=True)
    for n, data in ref["old"].items():
        (folder / n).write_bytes(data)
    return folder


def assert_whole(ref, folder, *, had_old=True):
    """Every file under a final name is one of the two complete versions; none is missing
    if the folder held the old outputs. Returns {kind: 'old' | 'new'}."""
    versions = {}
    finals = [n for n in RT.files_under(folder) if not Path(n).name.startswith(TEMP_PREFIX)]
    for n in finals:
        data = (folder / n).read_bytes()
        assert data in (ref["old"].get(n), ref["new"].get(n)), f"{n} is damaged or partial"
        kind = n.split(".")[1]
        versions[kind] = "old" if data == ref["old"].get(n) else "new"
    if had_old:
        assert set(finals) == set(ref["old"]), "an existing output vanished"
    return versions


# =============================================================================================
# Full disk at every write, in-process
# =============================================================================================


def fail_nth_file_fsync(monkeypatch, n, code=errno.ENOSPC):
    """os.fsync of the n-th output file (0-based) raises OSError(code); folders' fsyncs and
    the other files' go through. Returns the list of files fsynced."""
    real = os.fsync
    synced = []

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            synced.append(fd)
            if len(synced) == n + 1:
                raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(segment.outputs.files.os, "fsync", fsync)
    return synced


@pytest.mark.parametrize("n", range(len(WRITE_ORDER)))
def test_disk_full_at_each_write_with_overwrite(ref, tmp_path, monkeypatch, n):
    """--overwrite over a complete old set, the disk fills at the n-th output: the outputs of
    an image are written as one group, so the old set stays, whole and complete."""
    out = folder_with_old(ref, tmp_path / "out")
    fail_nth_file_fsync(monkeypatch, n)
    r = CliRunner().invoke(app, [*ref["base"], "-o", str(out), "--overwrite"])
    assert r.exit_code == 1, r.output
    failed = ref["names"][WRITE_ORDER[n]]
    assert lines_of(r.stderr) == [
        f"segment: error: cannot write {out / failed}: no space left on the device; "
        "free some space."
    ]
    versions = assert_whole(ref, out)
    assert versions == dict.fromkeys(WRITE_ORDER, "old")
    assert temporaries(out) == []


def test_disk_full_in_a_fresh_folder_leaves_only_whole_files(ref, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fail_nth_file_fsync(monkeypatch, 2)
    r = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
    assert r.exit_code == 1 and "no space left on the device" in r.stderr
    assert RT.files_under(out) == []  # all outputs of the image, or none
    assert temporaries(out) == []


def test_a_failed_run_leaves_no_partial_set(ref, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fail_nth_file_fsync(monkeypatch, 2)
    r = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
    assert r.exit_code == 1
    monkeypatch.undo()  # space freed
    again = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
    assert again.exit_code == 0, again.stderr


def test_all_or_nothing_outputs(ref, tmp_path, monkeypatch):
    """A full disk at any output leaves nothing, and the re-run after freeing space works."""
    out = tmp_path / "out"
    for n in (0, 2, len(WRITE_ORDER) - 1):  # the first, a middle one, the model file
        with monkeypatch.context() as m:
            fail_nth_file_fsync(m, n)
            r = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
        assert r.exit_code == 1 and "no space left" in r.stderr
        assert RT.files_under(out) == []
    again = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
    assert again.exit_code == 0, again.stderr
    assert snapshot(out) == ref["new"]


# =============================================================================================
# Faults in real processes
# =============================================================================================

#: (name, job fields, pattern of the one line; every case exits 1)
PROCESS_FAULTS = [
    ("read-only folder", {"fault": "eacces"}, r"permission denied; choose an output folder"),
    ("read-only file system", {"fault": "erofs"}, r"the file system is read-only"),
    ("disk full at once", {"fault": "enospc", "fault_arg": 0}, r"no space left on the device"),
    ("disk full later", {"fault": "enospc", "fault_arg": 12000}, r"no space left on the device"),
    ("disk full at fsync", {"fault": "enospc-fsync"}, r"no space left on the device"),
    ("file size limit", {"fault": "efbig", "fault_arg": 2048}, r"File too large"),
]


def test_faults_in_real_processes(ref, tmp_path):
    jobs = []
    for i, (_, extra, _) in enumerate(PROCESS_FAULTS):
        jobs.append({"id": str(i), "argv": [*ref["base"], "-o", str(tmp_path / f"fresh{i}")]})
        jobs[-1].update(extra)
        old = folder_with_old(ref, tmp_path / f"over{i}")
        jobs.append({"id": f"o{i}", "argv": [*ref["base"], "-o", str(old), "--overwrite"]})
        jobs[-1].update(extra)
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    for job, r in zip(jobs, results, strict=True):
        name, _, pattern = PROCESS_FAULTS[int(job["id"].lstrip("o"))]
        out = Path(job["argv"][-2] if job["id"].startswith("o") else job["argv"][-1])
        lines = lines_of(r["stderr"])
        assert r["code"] == 1, (name, r["stderr"])
        assert len(lines) == 1 and lines[0].startswith("segment: error: cannot write "), lines
        assert re.search(pattern, lines[0]), (name, lines[0])
        assert temporaries(out) == [], name
        assert_whole(ref, out, had_old=job["id"].startswith("o"))


def test_disk_full_mid_file_leaves_nothing_under_the_final_name(ref, tmp_path):
    """The disk fills in the middle of the first output: part of it reached the disk, in
    the temporary file, which is removed."""
    out = tmp_path / "out"
    job = {"id": "x", "argv": [*ref["base"], "-o", str(out)], "fault": "enospc"}
    job["fault_arg"] = len(ref["new"][ref["names"]["segmented"]]) // 2
    [r] = RT.run_jobs([job])
    assert r["code"] == 1 and "no space left" in r["stderr"]
    assert RT.files_under(out) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_for_real(ref, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        r = CliRunner().invoke(app, [*ref["base"], "-o", str(out)])
        assert r.exit_code == 1 and "permission denied" in r.stderr
        assert RT.files_under(out) == []
    finally:
        out.chmod(0o755)


def test_output_folders(ref, tmp_path):
    (tmp_path / "a_file").write_text("mine")
    names_a_dir = tmp_path / "dir_output"
    (names_a_dir / ref["names"]["labels"]).mkdir(parents=True)
    (names_a_dir / ref["names"]["labels"] / "keep.txt").write_text("mine")
    cases = [  # (-o, extra arguments, exit status, pattern or None)
        (tmp_path / "x" / "y" / "z", [], 0, None),  # missing: created, nested
        (tmp_path / "a_file" / "sub", [], 1, r"cannot create the output folder"),
        (names_a_dir, [], 1, r"photo.labels.png: it is a directory"),
        (names_a_dir, ["--overwrite"], 1, r"photo.labels.png: it is a directory"),
    ]
    jobs = [
        {"id": str(i), "argv": [*ref["base"], "-o", str(out), *extra]}
        for i, (out, extra, _, _) in enumerate(cases)
    ]
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    for (out, _, code, pattern), r in zip(cases, results, strict=True):
        assert r["code"] == code, (out, r["stderr"])
        if code == 0:
            assert snapshot(out) == ref["new"]
        else:
            lines = lines_of(r["stderr"])
            assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    assert (tmp_path / "a_file").read_text() == "mine"
    # The folder in the way is untouched, and nothing else was written beside it.
    assert RT.files_under(names_a_dir) == [f"{ref['names']['labels']}/keep.txt"]


def test_existing_outputs_are_kept_without_overwrite(ref, tmp_path):
    out = folder_with_old(ref, tmp_path / "out")
    [r] = RT.run_jobs([{"id": "x", "argv": [*ref["base"], "-o", str(out)]}])
    assert r["code"] == 1
    [line] = lines_of(r["stderr"])
    assert "already exists; pass --overwrite to replace it" in line
    assert snapshot(out) == ref["old"]


# =============================================================================================
# Killed while writing
# =============================================================================================

#: 1 MB/s but at least 0.2 s per write() call, and 0.3 s per fsync: every output takes half
#: a second or more, so a kill sent 0.03 s after its temporary file appears lands during it,
#: even on a loaded machine.
SLOW = {"fault": "slow", "fault_arg": [1e6, 0.2, 0.3]}


SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


@pytest.fixture(scope="module")
def kills(ref, tmp_path_factory):
    """Every kill scenario in one batch of processes, each over a folder of old outputs with
    --overwrite: a signal while the first output is half written; SIGKILL while the j-th
    output is written; SIGKILL at 10 moments spread over a whole run (writes not slowed)."""
    root = tmp_path_factory.mktemp("kills")
    moments = np.sort(np.random.default_rng(6).uniform(0.0, 1.2 * ref["wall"], 10))
    jobs = []

    def add(name, kill, *, slow=True):
        out = folder_with_old(ref, root / name)
        job = {"id": name, "argv": [*ref["base"], "-o", str(out), "--overwrite"], "kill": kill}
        jobs.append({**job, **(SLOW if slow else {})})

    for sig in SIGNALS:
        add(f"sig{int(sig)}", {"signal": int(sig), "temp_in": str(root / f"sig{int(sig)}")})
        jobs[-1]["kill"]["delay"] = 0.03
    for j in range(1, len(WRITE_ORDER) + 1):
        add(f"write{j}", {"signal": 9, "temp_in": str(root / f"write{j}"), "count": j})
        jobs[-1]["kill"]["delay"] = 0.03
    for i, t in enumerate(moments):
        add(f"random{i}", {"signal": 9, "after": float(t)}, slow=False)
    results = RT.run_jobs(jobs, parallel=PARALLEL + 2)  # mostly asleep
    return {job["id"]: (r, root / job["id"]) for job, r in zip(jobs, results, strict=True)}


@pytest.mark.parametrize("sig", SIGNALS)
def test_killed_in_the_middle_of_a_write(ref, kills, sig):
    """The signal arrives while the first output is half written."""
    r, out = kills[f"sig{int(sig)}"]
    assert r["sent"] == sig
    assert assert_whole(ref, out) == dict.fromkeys(WRITE_ORDER, "old")
    if sig in (signal.SIGINT, signal.SIGTERM):  # the CLI cleans up and says so
        assert r["code"] == (130 if sig == signal.SIGINT else 143)
        [line] = lines_of(r["stderr"])
        assert line.startswith("segment: error: interrupted")
        assert temporaries(out) == []
    else:  # no chance to clean up: the half-written temporary file stays, hidden
        assert r["signal"] == sig
        [tmp] = temporaries(out)
        assert 0 < (out / tmp).stat().st_size < len(ref["new"][ref["names"]["segmented"]])


@pytest.mark.parametrize("j", range(1, len(WRITE_ORDER) + 1))
def test_killed_during_each_write(ref, kills, j):
    """SIGKILL while the j-th output is written: the outputs of an image are renamed
    together at the end, so every output is still the old one, whole; the temporaries of
    the j outputs written so far stay (hidden, removed by the next batch run)."""
    r, out = kills[f"write{j}"]
    assert r["signal"] == signal.SIGKILL and not r["timed_out"]
    versions = assert_whole(ref, out)
    assert versions == dict.fromkeys(WRITE_ORDER, "old")
    assert 1 <= len(temporaries(out)) <= j


@pytest.mark.parametrize("i", range(10))
def test_killed_at_random_times(ref, kills, i):
    """Each output is always the old or the new version, whole, never missing; they are
    replaced in order."""
    r, out = kills[f"random{i}"]
    assert r["code"] in (0, None) and not r["timed_out"], r["stderr"]
    versions = assert_whole(ref, out)
    assert len(temporaries(out)) <= len(WRITE_ORDER)
    order = [versions[k] for k in WRITE_ORDER]
    assert order == sorted(order, key=lambda v: v == "old"), order


# =============================================================================================
# atomic_write and its messages
# =============================================================================================


def test_atomic_write_long_name_is_a_segment_error(tmp_path):
    with pytest.raises(SegmentError, match="the file name is too long") as err:
        with atomic_write(tmp_path / ("x" * 300 + ".png")) as f:
            f.write(b"x")
    assert "\n" not in str(err.value)
    assert RT.files_under(tmp_path) == []


def test_atomic_write_message_is_one_line_whatever_the_name(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(segment.outputs.files.tempfile, "mkstemp", full)
    with pytest.raises(SegmentError, match="no space left") as err:
        with atomic_write(tmp_path / "two\nlines.png") as f:
            f.write(b"x")
    assert "\n" not in str(err.value) and "two?lines.png" in str(err.value)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.EROFS, "the file system is read-only; choose another output folder"),
        (errno.EDQUOT, "the disk quota is exceeded; free some space"),
        (errno.ENOSPC, "no space left on the device; free some space"),
        (errno.EACCES, "permission denied; choose an output folder you can write to"),
        (errno.EIO, "Input/output error"),
    ],
)
def test_atomic_write_error_messages(tmp_path, monkeypatch, code, message):
    fail_nth_file_fsync(monkeypatch, 0, code)
    with pytest.raises(SegmentError) as err:
        with atomic_write(tmp_path / "out.png") as f:
            f.write(b"data")
    assert str(err.value) == f"cannot write {tmp_path / 'out.png'}: {message}."
    assert RT.files_under(tmp_path) == []


def test_atomic_write_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    real, kinds = os.fsync, []

    def fsync(fd):
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(segment.outputs.files.os, "fsync", fsync)
    with atomic_write(tmp_path / "out.png") as f:
        f.write(b"data")
    assert kinds == ["file", "dir"]
    assert (tmp_path / "out.png").read_bytes() == b"data"


def test_atomic_group_renames_at_the_end_in_order(tmp_path, monkeypatch):
    renamed, real = [], os.replace
    monkeypatch.setattr(
        segment.outputs.files.os,
        "replace",
        lambda a, b: (renamed.append(Path(b).name), real(a, b))[1],
    )
    (tmp_path / "b.png").write_bytes(b"old")
    with atomic_group():
        for name, data in (("a.png", b"A"), ("b.png", b"B"), ("c.json", b"C")):
            with atomic_write(tmp_path / name, overwrite=True) as f:
                f.write(data)
        assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").read_bytes() == b"old"
        assert len(temporaries(tmp_path)) == 3
    assert renamed == ["a.png", "b.png", "c.json"]
    assert snapshot(tmp_path) == {"a.png": b"A", "b.png": b"B", "c.json": b"C"}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_group_failure_changes_nothing(tmp_path, error):
    (tmp_path / "b.png").write_bytes(b"old")
    with pytest.raises(error), atomic_group():
        for name in ("a.png", "b.png"):
            with atomic_write(tmp_path / name, overwrite=True) as f:
                f.write(b"new")
        raise error("boom")
    assert snapshot(tmp_path) == {"b.png": b"old"}


def test_atomic_group_refuses_a_name_taken_meanwhile(tmp_path):
    with pytest.raises(SegmentError, match=r"b\.png already exists"), atomic_group():
        with atomic_write(tmp_path / "a.png") as f:
            f.write(b"new")
        with atomic_write(tmp_path / "b.png") as f:
            f.write(b"new")
        (tmp_path / "b.png").write_bytes(b"someone else's")
    assert snapshot(tmp_path) == {"b.png": b"someone else's"}


def test_atomic_group_nested_belongs_to_the_outer(tmp_path):
    with atomic_group():
        with atomic_group():
            with atomic_write(tmp_path / "a.png") as f:
                f.write(b"A")
        assert not (tmp_path / "a.png").exists()
    assert snapshot(tmp_path) == {"a.png": b"A"}


def test_atomic_group_failing_rename_leaves_no_temporaries(tmp_path, monkeypatch):
    real = os.replace

    def replace(a, b):
        if Path(b).name == "b.png":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(a, b)

    monkeypatch.setattr(segment.outputs.files.os, "replace", replace)
    with pytest.raises(SegmentError, match=r"b\.png: the file system is read-only"):
        with atomic_group():
            for name in ("a.png", "b.png", "c.png"):
                with atomic_write(tmp_path / name) as f:
                    f.write(b"x")
    assert snapshot(tmp_path) == {"a.png": b"x"}  # renamed before the failure


# =============================================================================================
# File names the outputs inherit (bugs in outputs.paths.check_outputs)
# =============================================================================================


def test_unusual_names_work(ref, tmp_path):
    src = tmp_path / "été – photo (1).png"
    src.write_bytes(ref["src"].read_bytes())
    [r] = RT.run_jobs([{"id": "u", "argv": ["image", str(src), "-k", "2", "-o", str(tmp_path)]}])
    assert r["code"] == 0, r["stderr"]
    assert RT.validate_outputs(tmp_path, src.stem) == []


def test_newline_in_the_name_still_one_line(ref, tmp_path):
    src = tmp_path / "two\nlines.png"
    src.write_bytes(ref["src"].read_bytes())
    argv = ["image", str(src), "-k", "2", "--no-plots", "-o", str(tmp_path / "o")]
    first, second = RT.run_jobs([{"id": "1", "argv": argv}, {"id": "2", "argv": argv}], parallel=1)
    assert first["code"] == 0 and second["code"] == 1  # holds today
    assert len(lines_of(second["stderr"])) == 1, second["stderr"]


def test_long_input_name_is_a_clean_error(ref, tmp_path):
    src = tmp_path / ("x" * 245 + ".png")
    src.write_bytes(ref["src"].read_bytes())
    [r] = RT.run_jobs([{"id": "l", "argv": ["image", str(src), "-o", str(tmp_path / "o")]}])
    assert r["code"] == 1  # holds today
    assert "internal error" not in r["stderr"] and "too long" in r["stderr"]
