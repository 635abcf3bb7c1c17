"""Hostile inputs of issue 13, classes 1, 2, 11, 12 and 14, as a table.

    python benchmarks/reliability_files.py              # this table alone
    python benchmarks/reliability_table.py              # the corpus and fault tables, then it

Classes 1, 2, 11 and 12 run the real command, each in a process of its own
(:func:`tests.support.odd_files.run_jobs`), on inputs made here: FIFOs, device paths, a
sparse file of 3 GiB, model files that are valid JSON but not valid models, outputs of an
earlier batch that were damaged or made with other options, a disk that fills up. A case is
clean when the command keeps the README's promise (one line on stderr naming the file and
exit 1, or exit 0 with the expected report; never a traceback, a hang or a file left
behind) and its check holds. Class 14 calls ``gmm`` directly: fits at the edges of
floating point against the same fit on well-scaled data.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import odd_files as RT  # noqa: E402

FIT = ["-k", "3", "--max-iter", "10", "-q", "--no-plots"]


def _image(path, seed=0, size=(24, 32)):
    # numpy and Pillow only when needed: the driver forks the runs (see tests/support).
    from tests.support.images import gradient

    return gradient(path, seed=seed, size=size)


def _changed(doc, path, value):
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _report(out):
    try:
        return json.loads((Path(out) / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _statuses(out):
    rep = _report(out)
    return {row["path"]: row["status"] for row in rep["rows"]} if rep else {}


# =============================================================================================
# Classes 1, 2, 11, 12: the command
# =============================================================================================


def _cases(tmp):
    """(class, case, job, expected exit, stderr pattern, check(result) -> problem or None)."""
    tmp = Path(tmp)
    src = _image(tmp / "photo.png")
    first = RT.run_jobs([{"id": "m", "argv": ["image", str(src), *FIT, "-o", str(tmp / "m")]}])
    assert first[0]["code"] == 0, first[0]["stderr"]
    doc = json.loads((tmp / "m" / "photo.model.json").read_text(encoding="utf-8"))
    D = doc["gmm"]["n_features"]

    def apply(model, name):
        return ["apply", str(src), "--model", str(model), "-q", "-o", str(tmp / "out" / name)]

    def nothing_left(name):
        return lambda r: (
            f"files left: {RT.files_under(tmp / 'out' / name)}"
            if RT.files_under(tmp / "out" / name)
            else None
        )

    fifo = tmp / "fifo.model.json"
    os.mkfifo(fifo)
    sparse = tmp / "sparse.model.json"
    with open(sparse, "wb") as f:
        f.truncate(3 << 30)
    os.mkfifo(tmp / "fifo.png")

    folder = tmp / "folder"
    folder.mkdir()
    _image(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to(tmp / "missing.png")
    (folder / "zero.png").symlink_to("/dev/zero")

    def entries_skipped(r):
        st = _statuses(tmp / "out" / "entries")
        want = {"good.png": "ok", "pipe.png": "skipped", "dangling.png": "skipped"}
        want["zero.png"] = "skipped"
        return None if st == want else f"report rows {st}"

    bad = {}
    not_pd = [[2.0 if {i, j} == {0, 1} else float(i == j) for j in range(D)] for i in range(D)]
    for name, path, value in [
        ("mean1e308", ["gmm", "means", 0, 0], 1e308),
        ("mean1e12", ["gmm", "means", 1, 1], 1e12),
        ("notpd", ["gmm", "covariances", 0], not_pd),
        ("notinverse", ["gmm", "precisions_cholesky", 1], [[3.0 * (i == j) for j in range(D)]
                                                           for i in range(D)]),
        ("weights", ["gmm", "weights"], [1.5, -0.25, -0.25]),
        ("space", ["features", "space"], "lab"),
    ]:  # fmt: skip
        bad[name] = tmp / f"{name}.model.json"
        bad[name].write_text(json.dumps(_changed(doc, path, value)), encoding="utf-8")
    digits = tmp / "digits.model.json"
    digits.write_text('{"format": "segment.model/1", "gmm": {"n": 1%s}}' % ("7" * 5000))
    deep = tmp / "deep.model.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)

    # Class 11: an earlier batch (-k 4), copied once per scenario and damaged.
    batch_in = tmp / "batch_in"
    batch_in.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _image(batch_in / name, seed=i)
    base = ["batch", str(batch_in), "-k", "4", "--max-iter", "10", "-q", "-j", "1", "--no-plots"]
    done = RT.run_jobs([{"id": "b", "argv": [*base, "-o", str(tmp / "earlier")]}])[0]
    assert done["code"] == 0, done["stderr"]

    def earlier(name, damage=None):
        out = tmp / "out" / name
        shutil.copytree(tmp / "earlier", out)
        if damage is not None:
            damage(out)
        return out

    def truncate(out):
        p = out / "b.segmented.png"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def garbage(out):
        (out / "b.model.json").write_bytes(b"\x00garbage{")

    def replaced(out):
        _image(out / "b.labels.png", seed=9)

    def fifo_output(out):
        (out / "b.quantized.png").unlink()
        os.mkfifo(out / "b.quantized.png")

    def resume_rows(name, want):
        def check(r):
            st = _statuses(tmp / "out" / name)
            return None if st == want else f"report rows {st}"

        return check

    redo_b = {"a.png": "skipped", "b.png": "ok", "c.png": "skipped"}

    def report_not_running(name):
        def check(r):
            rep = _report(tmp / "out" / name)
            state = rep["state"] if rep else "no report"
            left = [n for n in RT.files_under(tmp / "out" / name) if RT.TEMP_PREFIX in n]
            if state == "running" or left:
                return f"report says {state!r}; temporaries {left}"
            return None

        return check

    def full(budget):
        name = f"full{budget}"
        argv = ["batch", str(batch_in), *FIT, "-j", "1", "-o", str(tmp / "out" / name)]
        return {"argv": argv, "fault": "enospc", "fault_arg": budget}

    return [
        (1, "apply --model FIFO", apply(fifo, "fifo"), 1, r"FIFO.*not a regular file",
         nothing_left("fifo")),
        (1, "apply --model /dev/zero", apply("/dev/zero", "zero"), 1, r"device", None),
        (1, "apply --model /dev/urandom", apply("/dev/urandom", "urandom"), 1, r"device", None),
        (1, "apply --model: a sparse file of 3 GiB", apply(sparse, "sparse"), 1, r"too large",
         None),
        (1, "compare LABELS FIFO", ["compare", str(tmp / "m" / "photo.labels.png"),
                                    str(tmp / "fifo.png")], 1, r"not a regular file", None),
        (1, "batch of a folder holding a FIFO, a dangling link, a link to /dev/zero",
         ["batch", str(folder), *FIT, "-j", "1", "-o", str(tmp / "out" / "entries")], 0, None,
         entries_skipped),
        (2, "model with a mean of 1e308", apply(bad["mean1e308"], "b1"), 1, r"gmm\.means", None),
        (2, "model with a mean of 1e12 (RGB)", apply(bad["mean1e12"], "b2"), 1, r"gmm\.means",
         None),
        (2, "covariance not positive definite", apply(bad["notpd"], "b3"), 1,
         r"covariances\[0\] is not positive definite", None),
        (2, "precision not the inverse of the covariance", apply(bad["notinverse"], "b4"), 1,
         r"precisions_cholesky\[1\]", None),
        (2, "negative weights", apply(bad["weights"], "b5"), 1, r"weights", None),
        (2, "features.space disagrees with the options", apply(bad["space"], "b6"), 1,
         r"features\.space", None),
        (2, "an integer of 5000 digits", apply(digits, "b7"), 1, r"thousands of digits", None),
        (2, "nesting 100000 deep", apply(deep, "b8"), 1, r"nested deeper", None),
        (11, "batch -k 4, then --resume -k 3", [*base[:3], "3", *base[4:], "-o",
                                                str(earlier("k3")), "--resume"], 0, None,
         resume_rows("k3", {n: "ok" for n in ("a.png", "b.png", "c.png")})),
        (11, "--resume --seed 7", [*base, "-o", str(earlier("seed")), "--resume", "--seed", "7"],
         0, None, resume_rows("seed", {n: "ok" for n in ("a.png", "b.png", "c.png")})),
        (11, "--resume, b.segmented.png truncated", [*base, "-o", str(earlier("trunc", truncate)),
                                                     "--resume"], 0, None,
         resume_rows("trunc", redo_b)),
        (11, "--resume, b.model.json garbage", [*base, "-o", str(earlier("garb", garbage)),
                                                "--resume"], 0, None,
         resume_rows("garb", redo_b)),
        (11, "--resume, b.labels.png replaced by another valid PNG",
         [*base, "-o", str(earlier("repl", replaced)), "--resume"], 0, None,
         resume_rows("repl", redo_b)),
        (11, "--resume, b.quantized.png a FIFO", [*base, "-o", str(earlier("fifoout", fifo_output)),
                                                  "--resume"], 0, None,
         resume_rows("fifoout", redo_b)),
        (11, "--resume, nothing changed", [*base, "-o", str(earlier("same")), "--resume"], 0,
         None, resume_rows("same", {n: "skipped" for n in ("a.png", "b.png", "c.png")})),
        (12, "batch, disk full after 1.5 kB", full(1500), 1, r"no space", report_not_running(
            "full1500")),
        (12, "batch, disk full after 6 kB", full(6000), 1, r"no space", report_not_running(
            "full6000")),
        (12, "batch, disk full after 12 kB", full(12000), 1, r"no space", report_not_running(
            "full12000")),
    ]  # fmt: skip


def _judge(r, code, pattern, check):
    lines = RT.error_lines(r["stderr"])
    problems = RT.run_problems(r, code)
    if code == 1 and pattern != r"no space":  # a full disk fails every input: one line each
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        elif not lines[0].startswith("segment: error: "):
            problems.append("not an error line")
    if code == 1 and lines and not lines[-1].startswith("segment: error: "):
        problems.append("the last line is not an error line")
    if pattern and not re.search(pattern, r["stderr"]):
        problems.append(f"stderr lacks {pattern!r}")
    if check is not None:
        problem = check(r)
        if problem:
            problems.append(problem)
    return problems


def command_rows(*, parallel=2):
    rows = []
    with tempfile.TemporaryDirectory(prefix="segment-hostile-files-") as tmp:
        cases = _cases(tmp)
        jobs = []
        for i, (_, _, spec, _, _, _) in enumerate(cases):
            spec = spec if isinstance(spec, dict) else {"argv": spec}
            jobs.append({**spec, "id": str(i), "timeout": 40})
        results = RT.run_jobs(jobs, parallel=parallel)
        for (cls, name, _, code, pattern, check), r in zip(cases, results, strict=True):
            problems = _judge(r, code, pattern, check)
            lines = RT.error_lines(r["stderr"])
            message = lines[-1] if lines else "-"
            message += f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
            message = re.sub(r"/tmp/[^ :]*/", "…/", message).replace("|", "/")
            if len(message) > 160:
                message = message[:157] + "..."
            clean = "yes" if not problems else "NO: " + "; ".join(problems)
            rows.append((cls, name, r["code"], message, r["wall"], clean))
    return rows


# =============================================================================================
# Class 14: gmm at the edges of floating point
# =============================================================================================


def _gmm_cases():
    import numpy as np

    from gmm import GaussianMixture

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(4, 0.5, (300, 2))])

    def fit(data, w=None, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return GaussianMixture(2, random_state=0, tol=1e-6, max_iter=200, **kw).fit(data, w)

    ref = fit(X)

    def same(model, shift=0.0, scale=1.0, atol=1e-3):
        d = np.abs((model.means_ - shift) / scale - ref.means_).max()
        return d, d <= atol

    def case_weights(factor):
        d, ok = same(fit(X, np.full(len(X), factor)))
        return f"max |Δ mean| {d:.2g}", ok

    def case_offset(offset, spread=1e-2):
        Xs = X * spread
        a, b = fit(Xs), fit(Xs + offset)
        d = np.abs((b.means_ - offset) - a.means_).max() / spread
        agree = (a.predict(Xs) == b.predict(Xs + offset)).mean()
        return f"max |Δ mean| {d:.2g} spreads, labels agree {agree:.1%}", d < 1e-2 and agree == 1

    def case_scale(exponent):
        s = 2.0**exponent
        m = fit((X * s).astype(np.float32), reg_covar=1e-6 * s * s)
        d, ok = same(m, scale=s)
        return f"max |Δ mean| {d:.2g}", ok

    def case_far():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = ref.predict_proba(np.array([[1e30, 0.0], [0.0, -1e300]]))
            ll = ref.score_samples(np.array([[1e30, 0.0], [0.0, -1e300]]))
        ok = np.isfinite(p).all() and np.allclose(p.sum(1), 1) and np.isneginf(ll).all()
        return f"proba {np.round(p, 3).tolist()}, log p {ll.tolist()}", ok

    def case_error(make, pattern):
        try:
            make()
        except ValueError as err:
            return str(err)[:120], re.search(pattern, str(err)) is not None
        return "accepted", False

    return [
        ("sample_weight all 1e-100", lambda: case_weights(1e-100)),
        ("sample_weight all 1e100", lambda: case_weights(1e100)),
        ("X × 0.01 + 1e8 (float64 data, float32 E-step)", lambda: case_offset(1e8)),
        ("X × 2^66 (≈ 1e20) in float32", lambda: case_scale(66)),
        ("X × 2^-66 (≈ 1e-20) in float32", lambda: case_scale(-66)),
        ("predict_proba / score_samples of points at 1e30 and -1e300", case_far),
        ("X with zero columns", lambda: case_error(
            lambda: GaussianMixture(2).fit(np.empty((10, 0))), r"no columns")),
        ("random_state=-1", lambda: case_error(
            lambda: GaussianMixture(2, random_state=-1).fit(X), r"random_state")),
        ("from_dict: covariance not positive definite", lambda: case_error(
            lambda: GaussianMixture.from_dict(_changed(ref.to_dict(), ["covariances", 0],
                                                       [[1.0, 2.0], [2.0, 1.0]])),
            r"covariances\[0\] is not positive definite")),
        ("from_dict: a mean of 1e308", lambda: case_error(
            lambda: GaussianMixture.from_dict(_changed(ref.to_dict(), ["means", 0, 0], 1e308)),
            r"means")),
    ]  # fmt: skip


def gmm_rows():
    rows = []
    for name, run in _gmm_cases():
        t0 = time.perf_counter()
        try:
            what, ok = run()
        except Exception as err:  # a crash is a result of the table, not of the script
            what, ok = f"{type(err).__name__}: {err}"[:120], False
        rows.append((14, name, "-", what.replace("|", "/"), time.perf_counter() - t0,
                     "yes" if ok else "NO"))  # fmt: skip
    return rows


def files_table(*, parallel=2):
    """Run the cases of classes 1, 2, 11, 12 and 14; return markdown lines."""
    rows = command_rows(parallel=parallel) + gmm_rows()
    lines = [
        "| class | case | exit | stderr (last line) / result | s | clean |",
        "| ---: | --- | ---: | --- | ---: | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e:.1f} | {f} |" for a, b, c, d, e, f in rows]
    return lines


def main():
    print("## Hostile inputs (issue 13, classes 1, 2, 11, 12 and 14)\n")
    print("\n".join(files_table()))


if __name__ == "__main__":
    main()
