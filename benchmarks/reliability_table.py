"""Reliability of ``segment image`` on odd files and faults (issue 6), as tables.

    python benchmarks/reliability_table.py              # corpus, faults, hostile inputs
    python benchmarks/reliability_table.py --exec       # a fresh `python -m segment` per file
    python benchmarks/reliability_table.py --jobs 4 --plots --corpus-only

Every file of ``tests/data/odd`` goes through ``segment image FILE -k 3 --max-iter 20 -q``
in its own process and output folder. A file passes when the command exits 0 with every
output valid (the PNGs decode at the input's size, the model file parses), or exits 1 with
exactly one line on stderr, of the category that the ``cli`` column of ``INDEX.tsv`` names,
and no file left in the output folder; never another exit status, a traceback, a hang, or a
changed input. The fault table runs one image under injected failures of the file system
and kills (see :data:`FAULTS` and :func:`fault_table`).

How files are run: ``python -m segment`` spends most of a second importing numpy, scipy and
matplotlib, which for 165 files is minutes of CPU. By default a driver process imports
``segment`` once and forks one child per run; the child runs ``segment/__main__.py`` exactly
as ``python -m segment`` does (runpy, the same argv, stdout and stderr on real files, the
real exit status or signal), so every run is still a process of its own. ``--exec`` starts a
fresh interpreter per run instead; the tests check that both give the same results.

The runner itself (processes, faults, the judge) is ``tests/support/odd_files.py``, shared
with the tests.
"""

import argparse
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.odd_files import (
    CORPUS_ARGS,
    ODD,
    TEMP_PREFIX,
    corpus_jobs,
    corpus_summary,
    error_lines,
    files_under,
    judge,
    read_index,
    run_jobs,
    sha256,
)


def corpus_table(*, parallel=2, mode="fork", plots=None):
    """Run the corpus; return (markdown lines, verdicts, seconds)."""
    rows = read_index()
    digests = {row["file"]: sha256(ODD / row["file"]) for row in rows}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segment-corpus-") as out_root:
        jobs = corpus_jobs(rows, out_root, plots=plots)
        results = run_jobs(jobs, parallel=parallel, mode=mode)
        verdicts = []
        for row, job, result in zip(rows, jobs, results, strict=True):
            v = judge(row, result, Path(out_root) / row["file"], plots=job["plots"])
            if sha256(ODD / row["file"]) != digests[row["file"]]:
                v["problems"].append("the input changed")
            v.update(wall=result["wall"], cpu=result["cpu"], plots=job["plots"])
            verdicts.append(v)
    seconds = time.perf_counter() - t0
    lines = [
        "| file | exercises | outcome | message category | CPU s | clean |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for row, v in zip(rows, verdicts, strict=True):
        ex = row["exercises"].replace("|", "/")
        ex = ex if len(ex) <= 70 else ex[:67] + "..."
        clean = "yes" if not v["problems"] else "NO: " + "; ".join(v["problems"])
        outcome = v["outcome"] + (" (plots)" if v["plots"] and v["outcome"] == "ok" else "")
        lines.append(
            f"| {row['file']} | {ex} | {outcome} | {v['category'] or '?'} | {v['cpu']:.2f} | "
            f"{clean} |"
        )
    return lines, verdicts, seconds


def _snapshot(folder):
    return {n: (Path(folder) / n).read_bytes() for n in files_under(folder)}


_SLOW = {"fault": "slow", "fault_arg": [1e6, 0.2, 0.3]}


#: The fault table's scenarios: (name, what the output folder is, --overwrite, job fields).
#: Folders: "new" (does not exist yet; nested for the first scenario), "file" (-o names a
#: file), "dir" (an output's name is taken by a folder), "old" (holds an earlier run's
#: outputs). A kill's ``temp_in`` is filled in with the folder.
FAULT_SCENARIOS = [
    ("output folder missing (nested)", "new", False, {}),
    ("output folder is a file", "file", False, {}),
    ("an output name is a directory", "dir", False, {}),
    ("read-only folder (EACCES)", "new", False, {"fault": "eacces"}),
    ("read-only file system (EROFS)", "new", False, {"fault": "erofs"}),
    ("disk full at the first write", "new", False, {"fault": "enospc", "fault_arg": 0}),
    ("disk full after 20 kB", "new", False, {"fault": "enospc", "fault_arg": 20_000}),
    ("disk full at fsync", "new", False, {"fault": "enospc-fsync"}),
    (
        "file size limit 4 kB (EFBIG)",
        "new",
        False,
        {"fault": "efbig", "fault_arg": 4096},
    ),
    ("existing outputs, no --overwrite", "old", False, {}),
    ("disk full after 20 kB, --overwrite", "old", True, {"fault": "enospc", "fault_arg": 20_000}),
    ("SIGKILL while writing, --overwrite", "old", True, {**_SLOW, "kill": {"signal": 9}}),
    ("SIGTERM while writing, --overwrite", "old", True, {**_SLOW, "kill": {"signal": 15}}),
    ("SIGINT (Ctrl-C) while writing, --overwrite", "old", True, {**_SLOW, "kill": {"signal": 2}}),
]


def fault_table(*, parallel=2):
    """Run :data:`FAULT_SCENARIOS` and 10 SIGKILLs at moments spread over a whole run on
    one photo; return markdown lines."""
    base = ["image", str(ODD / "flower.jpg"), "-k", "3", "--max-iter", "20", "-q"]
    with tempfile.TemporaryDirectory(prefix="segment-faults-") as tmp:
        tmp = Path(tmp)
        # 'new' is what every run below writes; 'old' (k=2) is in the folder beforehand.
        ref = run_jobs(
            [
                {"id": "new", "argv": [*base, "-o", str(tmp / "new")]},
                {"id": "old", "argv": [*base, "-k", "2", "-o", str(tmp / "old")]},
            ],
            parallel=parallel,
        )
        assert all(r["code"] == 0 for r in ref), [r["stderr"] for r in ref]
        old, new = _snapshot(tmp / "old"), _snapshot(tmp / "new")
        jobs, folders = [], []
        for i, (name, kind, overwrite, fields) in enumerate(FAULT_SCENARIOS):
            folder = tmp / f"s{i}"
            if kind == "new" and i == 0:
                folder = folder / "nested" / "deeper"
            elif kind == "file":
                folder.write_text("a file")
            elif kind == "dir":
                (folder / "flower.labels.png").mkdir(parents=True)
            elif kind == "old":
                _fill(folder, old)
            job = {"id": name, "argv": [*base, "-o", str(folder)], **fields}
            if overwrite:
                job["argv"].append("--overwrite")
            if "kill" in job:
                job["kill"] = {**job["kill"], "temp_in": str(folder), "delay": 0.03}
            jobs.append(job)
            folders.append((folder, kind == "old"))
        for i in range(10):
            folder = _fill(tmp / f"random{i}", old)
            moment = (0.05 + 0.1 * i) * ref[0]["wall"]
            jobs.append(
                {
                    "id": f"random{i}",
                    "argv": [*base, "-o", str(folder), "--overwrite"],
                    "kill": {"signal": int(signal.SIGKILL), "after": moment},
                }
            )
            folders.append((folder, True))
        results = run_jobs(jobs, parallel=parallel)
        rows = [
            _fault_row(job["id"], r, folder, had_old, old, new)
            for job, r, (folder, had_old) in zip(jobs, results, folders, strict=True)
        ]
    randoms = rows[len(FAULT_SCENARIOS) :]
    rows = rows[: len(FAULT_SCENARIOS)]
    rows.append(
        (
            "SIGKILL at 10 moments from 5% to 95% of a --overwrite run",
            ", ".join(sorted({r[1] for r in randoms})),
            "-",
            "yes" if all(r[3] == "yes" for r in randoms) else "NO",
            "; ".join(dict.fromkeys(r[4] for r in randoms)),
        )
    )
    lines = [
        "| fault | exit | message (one line) | every final file whole (old or new) | files |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return lines


def _fill(folder, files):
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _fault_row(name, result, folder, had_old, old_bytes, new_bytes):
    if result["code"] is not None:
        how = f"exit {result['code']}"
    else:
        how = f"killed ({signal.Signals(result['signal']).name})"
    lines = error_lines(result["stderr"])
    message = lines[0].removeprefix("segment: error: ") if lines else "-"
    if len(lines) > 1:
        message += f" (+{len(lines) - 1} more lines)"
    message = re.sub(r"/tmp/[^ :]*/", "…/", message)
    intact = True
    files = files_under(folder) if Path(folder).is_dir() else []
    finals = [n for n in files if not Path(n).name.startswith(TEMP_PREFIX)]
    temps = [n for n in files if Path(n).name.startswith(TEMP_PREFIX)]
    for n in finals:
        data = (Path(folder) / n).read_bytes()
        if data not in (old_bytes.get(n), new_bytes.get(n)):
            intact = False
    if had_old and set(old_bytes) - set(finals):
        intact = False  # an existing output vanished
    n_old = sum(1 for n in finals if (Path(folder) / n).read_bytes() == old_bytes.get(n))
    n_new = len(finals) - n_old
    desc = f"{n_new} new, {n_old} old" + (f", {len(temps)} temporary" if temps else "")
    return (name, how, message, "yes" if intact else "NO", desc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time")
    parser.add_argument("--exec", action="store_true", help="a fresh interpreter per file")
    parser.add_argument("--plots", action="store_true", help="plots for every file")
    parser.add_argument("--corpus-only", action="store_true")
    args = parser.parse_args(argv)
    mode = "exec" if args.exec else "fork"
    lines, verdicts, seconds = corpus_table(
        parallel=args.jobs, mode=mode, plots=True if args.plots else None
    )
    print(
        f"## Corpus: {len(verdicts)} files of tests/data/odd, `segment image FILE "
        f"{' '.join(CORPUS_ARGS)}` ({mode} mode, {args.jobs} at a time, {seconds:.0f} s)\n"
    )
    for key, value in corpus_summary(verdicts).items():
        print(f"- {key}: {value}")
    print()
    print("\n".join(lines))
    if not args.corpus_only:
        print("\n## Faults: `segment image flower.jpg -k 3 --max-iter 20 -q -o FOLDER`\n")
        print("\n".join(fault_table(parallel=args.jobs)))
        from reliability_hostile import hostile_table  # issue 13: servers, signals, ...

        print("\n## Hostile inputs (issue 13)\n")
        print("\n".join(hostile_table(parallel=args.jobs)))
        from reliability_files import files_table  # issue 13: files, model files, resume, ...

        print("\n## Hostile files, model files, --resume, a full disk, gmm edges (issue 13)\n")
        print("\n".join(files_table(parallel=args.jobs)))


if __name__ == "__main__":
    main()
