"""Hostile inputs of issue 13 (classes 3-10 and 13), as a table.

    python benchmarks/reliability_hostile.py            # this table alone
    python benchmarks/reliability_table.py              # the corpus and fault tables, then it

Each case makes its input (servers on 127.0.0.1 in threads of this process, generated
images, patched headers: :mod:`tests.support.hostile`) and runs the real command in a
process of its own through :func:`tests.support.odd_files.run_jobs`. A case is clean when
the command keeps the README's promise: exit 0 with what the case expects, or exactly one
line on stderr with exit 1 (2 for a malformed command line) and the expected words; never
a traceback, a Python warning, "internal error", "nan" without a reason, or a hang; nothing
left running.
"""

import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import odd_files as RT  # noqa: E402
from tests.support.hostile import (  # noqa: E402
    Listener,
    blocks,
    colliding_names,
    hole_pair,
    key16_images,
    kill_batch,
    multi_frame_files,
    patched_jpeg,
    save,
)

# =============================================================================================
# The table
# =============================================================================================

_BASE = ["-k", "2", "--max-iter", "10", "--no-plots"]


def _cases(tmp, servers):
    """(class, case, job, expected exit, stderr pattern, extra check or None)."""
    tmp = Path(tmp)
    b = save(blocks(), tmp / "b.png")
    folder = tmp / "one"
    folder.mkdir()
    save(blocks(), folder / "b.png")
    multi_frame_files(tmp)
    nokey, _ = key16_images(tmp)
    huge = patched_jpeg(tmp / "huge.jpg", (16, 16), (9000, 9000))
    names = colliding_names(tmp / "names")
    one_px = [
        save(__import__("numpy").full((1, 1), v, "uint8"), tmp / f"px{v}.png") for v in (0, 1)
    ]
    one, two = hole_pair(tmp)
    out = str(tmp / "out")

    def o(name):
        return ["-o", str(tmp / "out" / name)]

    def batch(address):
        return ["batch", str(folder), "-q", "--scheduler", address, *o(address[-5:])]

    cases = [
        (3, "--scheduler at an HTTP server", batch(servers["http"]), 1, r"not a Dask scheduler"),
        (3, "--scheduler at a server sending garbage", batch(servers["garbage"]), 1,
         r"not a Dask scheduler"),
        (3, "--scheduler notaurl::", batch("notaurl::"), 1, r"invalid address"),
        (3, "Ctrl-C 3 s into connecting to a silent server",
         {"argv": batch(servers["silent"]), "kill": {"signal": 2, "after": 3.0}}, 130,
         r"interrupted"),
        (5, "anim.webp --all-frames: opaque / transparent / opaque",
         ["image", str(tmp / "anim.webp"), *_BASE, "--all-frames", *o("anim")], 0,
         r"frame 1.*skipped"),
        (5, "nan.tiff --all-frames: a page all NaN",
         ["image", str(tmp / "nan.tiff"), *_BASE, "--all-frames", *o("nan")], 0,
         r"frame 1.*skipped"),
        (5, "empty.webp --all-frames: every frame transparent",
         ["image", str(tmp / "empty.webp"), *_BASE, "--all-frames", *o("empty")], 1,
         r"fully transparent"),
        (6, "16-bit RGB PNG, tRNS key sharing the high bytes of every pixel",
         ["image", str(nokey), *_BASE, "-q", *o("key")], 0, None),
        (7, "JPEG under 1 kB declaring 9000x9000",
         ["image", str(huge), *_BASE, "-q", *o("huge")], 1, r"truncated"),
        (8, "a.png a.jpg a.png.png on the command line",
         ["image", *(str(names / n) for n in ("a.png", "a.jpg", "a.png.png")), *_BASE, "-q",
          *o("names")], 0, None),
        (8, "batch of a folder holding a.png a.jpg a.png.png",
         ["batch", str(names), *_BASE, "-q", *o("names_batch")], 0, None),
        (8, "x/c.png y/c.png on the command line",
         ["image", str(names / "x" / "c.png"), str(names / "y" / "c.png"), *_BASE, "-q",
          *o("c")], 0, None),
        (9, "--xy 1e308", ["image", str(b), *_BASE, "--xy", "1e308", *o("xy1")], 2, r"'--xy'"),
        (9, "--xy 1e20", ["image", str(b), *_BASE, "--xy", "1e20", *o("xy2")], 2, r"'--xy'"),
        (9, "compare of two 1x1 maps", ["compare", str(one_px[0]), str(one_px[1])], 0,
         r"undefined"),
        (10, "--xy inf", ["image", str(b), *_BASE, "--xy", "inf", *o("e1")], 2, r"'--xy'"),
        (10, "--xy nan", ["image", str(b), *_BASE, "--xy", "nan", *o("e2")], 2, r"'--xy'"),
        (10, "--tol inf", ["image", str(b), *_BASE, "--tol", "inf", *o("e3")], 2, r"'--tol'"),
        (10, "--sample 1", ["image", str(b), *_BASE, "--sample", "1", *o("e4")], 2,
         r"'--sample'"),
        (10, "--memory-mib 0", ["image", str(b), *_BASE, "--memory-mib", "0", *o("e5")], 2,
         r"'--memory-mib'"),
        (10, "--smooth nan", ["image", str(b), *_BASE, "--smooth", "nan", *o("e6")], 2,
         r"'--smooth'.*nan"),
        (10, "unreadable input, then a good one",
         {"argv": ["image", str(one), str(b), *_BASE, "-q", *o("unr")], "fault": "unreadable",
          "fault_arg": str(one)}, 1, r"permission denied"),
        (10, "missing input, then a good one",
         ["image", str(tmp / "nope.png"), str(b), *_BASE, "-q", *o("mis")], 1, r"no such file"),
        (10, "stdout is /dev/full",
         {"argv": ["image", str(b), *_BASE, *o("full")], "stdout": "/dev/full"}, 1,
         r"standard output"),
        (13, "quantize SSIM: two images differing only under a transparent hole",
         {"pair": [["quantize", str(p), "-k", "4", "--json", "--figures",
                    "-o", f"{out}/{p.stem}.q.png"] for p in (one, two)]}, 0, None),
    ]  # fmt: skip
    return cases


def _describe(argv, tmp):
    text = " ".join(str(a) for a in argv).replace(str(tmp) + "/", "")
    return "segment " + re.sub(r" -o \S+", "", text)


def _judge(r, code, pattern):
    lines = RT.error_lines(r["stderr"])
    problems = RT.run_problems(r, code)
    if re.search(r"(?<![\w.])nan(?![\w.])", r["stdout"], re.IGNORECASE):  # not nan.tiff
        problems.append("nan in the output")
    if code != 0:
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        elif not lines[0].startswith("segment: error: "):
            problems.append("not an error line")
    if pattern and not re.search(pattern, r["stderr"]):
        problems.append(f"stderr lacks {pattern!r}")
    return problems


def hostile_table(*, parallel=2):
    """Run the cases; return markdown lines."""
    servers = {kind: Listener(kind) for kind in ("http", "garbage", "silent")}
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="segment-hostile-") as tmp:
            cases = _cases(tmp, {k: s.address for k, s in servers.items()})
            jobs, where = [], []
            for i, (_, _, spec, _, _) in enumerate(cases):
                spec = spec if isinstance(spec, dict) else {"argv": spec}
                for j, argv in enumerate(spec.get("pair", [spec.get("argv")])):
                    jobs.append({**spec, "id": f"{i}.{j}", "argv": argv, "timeout": 40})
                    where.append(i)
            results = RT.run_jobs(jobs, parallel=parallel)
            by_case = {}
            for i, job, r in zip(where, jobs, results, strict=True):
                by_case.setdefault(i, []).append((job, r))
            for i, (cls, name, _, code, pattern) in enumerate(cases):
                (job, r), *more = by_case[i]
                problems = _judge(r, code, pattern)
                if more:  # the quantize pair: the same figures
                    figures = [json.loads(x["stdout"] or "{}") for _, x in by_case[i]]
                    ssim = [f.get("ssim") for f in figures]
                    if None in ssim or abs(ssim[0] - ssim[1]) > 1e-9:
                        problems.append(f"SSIM {ssim[0]} vs {ssim[1]}")
                    message = f"SSIM {ssim[0]:.6f} and {ssim[1]:.6f}" if None not in ssim else "-"
                else:
                    lines = RT.error_lines(r["stderr"])
                    message = lines[0] if lines else "-"
                    message += f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
                message = message.replace(str(tmp) + "/", "").replace("|", "/")
                rows.append(
                    (cls, name, _describe(job["argv"], tmp), r["code"], message, r["wall"],
                     "yes" if not problems else "NO: " + "; ".join(problems))
                )  # fmt: skip
            workers, left, took = kill_batch(tmp)
            rows.append(
                (4, "kill -9 of `segment batch --workers 2` (6 images)", "kill -9 PID", "-",
                 f"{len(workers)} pool workers; {len(left)} alive after {took:.1f} s", took,
                 "yes" if len(workers) == 2 and not left else "NO")
            )  # fmt: skip
    finally:
        for s in servers.values():
            s.close()
    rows.sort(key=lambda row: row[0])
    lines = [
        "| class | case | command | exit | stderr (first line) | s | clean |",
        "| ---: | --- | --- | ---: | --- | ---: | --- |",
    ]
    lines += [f"| {a} | {b} | `{c}` | {d} | {e} | {f:.1f} | {g} |" for a, b, c, d, e, f, g in rows]
    return lines


def main():
    print("## Hostile inputs (issue 13, classes 3-10 and 13)\n")
    print("\n".join(hostile_table()))


if __name__ == "__main__":
    main()
