"""Issue 6, reliability: every file of the odd-file corpus through the real ``segment image``
command, the parameters a user can get wrong, and determinism across processes.

Each corpus file runs in a process of its own (see ``benchmarks/reliability_table.py``: a
driver imports ``segment`` once and forks a child per file that runs ``python -m segment``'s
``__main__``; a sample is re-run with a fresh ``sys.executable -m segment`` to show the two
agree). The ``cli`` column of ``tests/data/odd/INDEX.tsv`` names what each file must give:
``ok`` (exit 0, valid outputs) or the category of its one-line error (exit 1).

Faults of the file system and kills are in test_reliability_faults.py.
"""

import json
import os
import re
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageFile

from segment.errors import SegmentError
from segment.imageio import count_frames, load_image
from segment.options import FitOptions
from segment.pipeline import segment_file
from tests.support import odd_files as RT

ODD = RT.ODD
ROWS = RT.read_index()
BY_NAME = {row["file"]: row for row in ROWS}
PARALLEL = max(2, min(4, os.cpu_count() or 2))
#: CPU seconds a corpus run may take: a few seconds, plus one per megapixel of the image
#: (the 15-megapixel fax page g4-multi.tiff is the slowest file by far).
CPU_LIMIT = 5.0
CPU_PER_MEGAPIXEL = 1.0
#: Refused from the header: a decoded bomb would take minutes and gigabytes.
BOMB_CPU_LIMIT = 1.0


def lines_of(text):
    return [line for line in text.splitlines() if line.strip()]


# =============================================================================================
# The corpus index
# =============================================================================================


def test_index_cli_column():
    assert len(ROWS) >= 60
    on_disk = {p.name for p in ODD.iterdir()} - RT.NOT_IMAGES
    assert on_disk == set(BY_NAME)
    for row in ROWS:
        assert row["cli"] == "ok" or row["cli"] in RT.CATEGORIES, row
        if row["expected"] == "error":  # what cannot be loaded cannot be segmented
            assert row["cli"] != "ok", row
    # Every message category is exercised by at least one file.
    assert {row["cli"] for row in ROWS} == {"ok", *RT.CATEGORIES}


def test_category_patterns_are_distinct():
    messages = {
        "not-an-image": "x.png: not an image file Pillow can read (unknown format, ...).",
        "text-file": "x.png: this is a text file, not an image; check ...",
        "svg": "x.svg: SVG vector images cannot be read; export it to PNG first.",
        "empty": "x.png: the file is empty (0 bytes); re-download or re-export it.",
        "truncated": "x.png: the image data is truncated (OSError: ...); re-download ...",
        "corrupt": "x.png: the image data is corrupt (OSError: ...); re-download ...",
        "bomb": "x.png: 100 pixels is over the limit of 99 (decompression-bomb protection); "
        "pass --max-pixels 100 if you trust this file.",
        "metadata-bomb": "x.png: a compressed metadata chunk expands to too much data (...)",
        "transparent": "x.png: every pixel is fully transparent; there is nothing to segment.",
    }
    assert set(messages) == set(RT.CATEGORIES)
    for category, message in messages.items():
        matching = [c for c, p in RT.CATEGORIES.items() if re.search(p, message)]
        assert matching == [category]


# =============================================================================================
# Every corpus file through the real command
# =============================================================================================


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Run the whole corpus once (in parallel); per file: job, result, output folder."""
    out_root = tmp_path_factory.mktemp("corpus")
    before = {row["file"]: (RT.sha256(ODD / row["file"]), _mode(ODD / row["file"])) for row in ROWS}
    jobs = RT.corpus_jobs(ROWS, out_root)
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    runs = {
        job["id"]: {"job": job, "result": result, "out": out_root / job["id"]}
        for job, result in zip(jobs, results, strict=True)
    }
    return {"runs": runs, "before": before}


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("name", [row["file"] for row in ROWS])
def test_corpus_file_through_the_cli(corpus, name):
    row, run = BY_NAME[name], corpus["runs"][name]
    r, out = run["result"], run["out"]
    assert not r["timed_out"], f"{name}: no answer after {r['wall']:.0f} s"
    assert r["signal"] is None, f"{name}: killed by signal {r['signal']}"
    assert r["code"] in (0, 1), f"{name}: exit {r['code']}\n{r['stderr']}"
    assert "Traceback" not in r["stderr"] and "internal error" not in r["stderr"]
    lines = lines_of(r["stderr"])
    limit = CPU_LIMIT
    if row["cli"] == "ok":
        assert r["code"] == 0, r["stderr"]
        assert lines == []  # -q: nothing but errors (no library warnings either)
        assert RT.validate_outputs(out, Path(name).stem, plots=run["job"]["plots"]) == []
        size = json.loads((out / f"{Path(name).stem}.model.json").read_text())["input"]
        limit += CPU_PER_MEGAPIXEL * size["width"] * size["height"] / 1e6
        expected = RT.output_names(Path(name).stem, plots=run["job"]["plots"]).values()
        assert RT.files_under(out) == sorted(expected)  # the README's outputs, nothing else
    else:
        assert r["code"] == 1, f"{name} was not refused"
        assert len(lines) == 1, lines
        assert lines[0].startswith("segment: error: ") and name in lines[0]
        assert re.search(RT.CATEGORIES[row["cli"]], lines[0]), lines[0]
        assert RT.files_under(out) == []  # nothing, not even a temporary file
    assert r["cpu"] < limit, f"{name}: {r['cpu']:.1f} s of CPU"
    if row["cli"] == "bomb":
        assert r["cpu"] < BOMB_CPU_LIMIT
    assert (RT.sha256(ODD / name), _mode(ODD / name)) == corpus["before"][name]


def test_corpus_table_agrees(corpus):
    """The table script's judgement of the same runs: all clean."""
    verdicts = [
        RT.judge(BY_NAME[name], run["result"], run["out"], plots=run["job"]["plots"])
        for name, run in corpus["runs"].items()
    ]
    assert [v for v in verdicts if v["problems"]] == []
    summary = RT.corpus_summary(
        [{**v, "cpu": corpus["runs"][v["file"]]["result"]["cpu"]} for v in verdicts]
    )
    assert summary["succeeded"] + summary["refused cleanly"] == len(ROWS)
    assert summary["succeeded"] == sum(row["cli"] == "ok" for row in ROWS)


#: Re-run with a fresh interpreter each: successes with and without plots, and one refusal
#: of every kind Pillow raises (UnidentifiedImageError, OSError at load, DecompressionBombError
#: at open, ValueError at open and at load).
EXEC_SAMPLE = [
    "flower.jpg",
    "rgba_holes.png",
    "cmyk.tiff",
    "broken.png",
    "truncated_jpeg.jpg",
    "decompression_bomb.gif",
    "png_decompression_dos.png",
    "ascii_truncated.pgm",
]


def test_fresh_interpreters_give_the_same_results(corpus, tmp_path):
    """`sys.executable -m segment` per file: the same status, stderr and output bytes as the
    forked runs. So forking changes nothing, and the outputs (plots included) are identical
    across processes with different hash seeds."""
    jobs = RT.corpus_jobs([BY_NAME[name] for name in EXEC_SAMPLE], tmp_path)
    assert {job["id"] for job in jobs if job["plots"]} == {"flower.jpg", "rgba_holes.png"}
    results = RT.run_jobs(jobs, parallel=PARALLEL, mode="exec")
    for job, r in zip(jobs, results, strict=True):
        forked = corpus["runs"][job["id"]]
        assert r["code"] == forked["result"]["code"], (job["id"], r["stderr"])
        assert r["stderr"].replace(str(tmp_path), "<out>") == forked["result"]["stderr"].replace(
            str(forked["out"].parent), "<out>"
        )
        mine = {
            n: (tmp_path / job["id"] / n).read_bytes() for n in RT.files_under(tmp_path / job["id"])
        }
        theirs = {n: (forked["out"] / n).read_bytes() for n in RT.files_under(forked["out"])}
        assert mine.keys() == theirs.keys()
        for n in mine:
            assert mine[n] == theirs[n], (job["id"], n)


def test_bombs_are_refused_before_decoding(monkeypatch):
    """With decoding made impossible, every bomb of the corpus still gets its message."""

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("a decompression bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(PILImage.Image, "load", no_decoding)
    bombs = [row["file"] for row in ROWS if row["cli"] == "bomb"]
    assert len(bombs) >= 4
    for name in bombs:
        with pytest.raises(SegmentError) as err:
            load_image(ODD / name)
        assert re.search(RT.CATEGORIES["bomb"], str(err.value)), str(err.value)


def test_pillow_warnings_are_notes_not_stderr(capfd):
    image = load_image(ODD / "sugarshack_bad_mpo_header.jpg")
    assert any("MPO" in note for note in image.notes)
    assert all("\n" not in note for note in image.notes)
    assert capfd.readouterr().err == ""
    assert load_image(ODD / "hopper.jpg").notes == ()


# =============================================================================================
# Every frame of the multi-frame corpus files
# =============================================================================================

#: The 15-megapixel fax pages would cost 15 s of CPU; they run as frame 0 above.
BIG_PAGES = {"g4-multi.tiff", "total-pages-zero.tif"}


def _multi_frame_files():
    names = []
    for row in ROWS:
        if row["expected"] != "ok" or row["file"] in BIG_PAGES:
            continue
        try:
            if count_frames(ODD / row["file"]) > 1:
                names.append(row["file"])
        except SegmentError:
            pass
    return names


MULTI_FRAME = _multi_frame_files()


def test_all_frames_of_every_multi_frame_file(tmp_path):
    """--all-frames: each frame's outputs are complete; a bad frame is one line, exit 1."""
    assert {"anim3.gif", "truncated_anim.gif", "decompression_bomb_extents.gif"} <= set(MULTI_FRAME)
    rows = [BY_NAME[name] for name in MULTI_FRAME]
    jobs = RT.corpus_jobs(rows, tmp_path, plots=False, extra=["--all-frames"])
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    for job, r in zip(jobs, results, strict=True):
        name, out = job["id"], tmp_path / job["id"]
        assert r["code"] in (0, 1) and r["signal"] is None, (name, r["stderr"])
        assert "Traceback" not in r["stderr"]
        lines = lines_of(r["stderr"])
        assert len(lines) == r["code"], (name, lines)  # one line if a frame failed
        models = sorted(n for n in RT.files_under(out) if n.endswith(".model.json"))
        assert models, name  # frame 0 always loads (INDEX.tsv: expected ok)
        stems = [n.removesuffix(".model.json") for n in models]
        for stem in stems:
            assert RT.validate_outputs(out, stem, plots=False) == [], (name, stem)
        expected = sorted(n for s in stems for n in RT.output_names(s, plots=False).values())
        assert RT.files_under(out) == expected  # nothing of a failed frame
        if r["code"] == 1:
            assert name in lines[0]
    failed = {job["id"]: r for job, r in zip(jobs, results, strict=True) if r["code"] == 1}
    assert re.search(RT.CATEGORIES["truncated"], failed["truncated_anim.gif"]["stderr"])
    assert re.search(RT.CATEGORIES["bomb"], failed["decompression_bomb_extents.gif"]["stderr"])


# =============================================================================================
# Parameters a user can get wrong: real processes, one line each
# =============================================================================================


def blocks_png(path, *, colours=((200, 40, 40), (40, 160, 60), (50, 60, 210)), noise=6):
    rng = np.random.default_rng(0)
    img = np.zeros((24, 30, 3))
    for i, c in enumerate(colours):
        img[:, i * 30 // len(colours) :] = c
    if noise:
        img += rng.normal(0, noise, img.shape)
    PILImage.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


#: (arguments after `segment image IMAGE -o OUT`, exit status, pattern of the one line)
BAD_PARAMETERS = [
    (["-k", "0"], 2, r"'-k'"),
    (["-k", "-3"], 2, r"'-k'"),
    (["-k", "70000"], 2, r"'-k'"),
    (["-k", "many"], 2, r"'-k'"),
    (["--tol", "-1"], 2, r"'--tol'"),
    (["--tol", "nan"], 2, r"'--tol'"),
    (["--tol", "inf"], 2, r"'--tol': inf is not a finite number"),
    (["--memory-mib", "0"], 2, r"'--memory-mib': 0 is not a number of MiB"),
    (["--memory-mib", "1e12"], 2, r"'--memory-mib'"),
    (["--memory-mib", "nan"], 2, r"'--memory-mib': nan"),
    (["--memory-mib", "-5"], 2, r"'--memory-mib'"),
    (["--space", "hsv"], 2, r"'--space'.*'hsv'"),
    (["--covariance", "weird"], 2, r"'--covariance'"),
    (["--init", "bogus"], 2, r"'--init'"),
    (["--max-iter", "0"], 2, r"'--max-iter'"),
    (["--restarts", "0"], 2, r"'--restarts'"),
    (["--xy", "-1"], 2, r"'--xy'"),
    (["--xy", "inf"], 2, r"'--xy': inf is not a weight from 0 to 1000"),
    (["--xy", "1e20"], 2, r"'--xy'"),
    (["--sample", "1"], 2, r"'--sample'"),
    (["--smooth", "nan"], 2, r"'--smooth': nan is not"),
    (["--max-pixels", "0"], 2, r"'--max-pixels'"),
    (["--no-such-option"], 2, r"No such option"),
    (["--max-pixels", "100"], 1, r"720 pixels is over the limit of 100"),
]


def test_bad_parameters_one_line_each(tmp_path):
    src = blocks_png(tmp_path / "b.png")
    jobs = [
        {"id": str(i), "argv": ["image", str(src), "-o", str(tmp_path / f"o{i}"), *args]}
        for i, (args, _, _) in enumerate(BAD_PARAMETERS)
    ]
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    # A few again in fresh interpreters: the same status and line.
    fresh = RT.run_jobs(jobs[:: len(jobs) // 3], parallel=PARALLEL, mode="exec")
    for r, again in zip(results[:: len(jobs) // 3], fresh, strict=True):
        assert (again["code"], again["stderr"]) == (r["code"], r["stderr"])
    for (args, code, pattern), r in zip(BAD_PARAMETERS, results, strict=True):
        lines = lines_of(r["stderr"])
        assert r["code"] == code, (args, r["stderr"])
        assert len(lines) == 1 and lines[0].startswith("segment: error: "), (args, lines)
        assert re.search(pattern, lines[0]), (args, lines[0])
        assert "Traceback" not in r["stderr"]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "b.png"]


def test_bad_inputs_one_line_each(tmp_path):
    src = blocks_png(tmp_path / "b.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")  # would block a reader for ever
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "a_file").write_text("x")
    cases = [  # (argv after `segment`, exit status, pattern)
        (["image", str(tmp_path / "nope.png")], 1, r"nope.png: no such file"),
        (["image", str(tmp_path / "folder.png")], 1, r"is a folder, not an image file"),
        (["image", str(tmp_path)], 1, r"is a folder, not an image file"),
        (["image", str(tmp_path / "empty.png")], 1, r"the file is empty"),
        (["image", str(tmp_path / "fifo.png")], 1, r"not a regular file"),
        (["image", str(tmp_path / "dangling.png")], 1, r"dangling.png: no such file"),
        (["image", str(tmp_path / "b.png" / "x.png")], 1, r"a part of the path is not a folder"),
        (["image", str(src), str(src)], 1, r"b.png is given more than once"),
        (["image"], 2, r"Missing argument"),
        (["image", str(src), "-o", str(tmp_path / "a_file")], 2, r"is a file"),
        (["image", str(src), "-o", str(tmp_path / "a_file" / "sub")], 1, r"output folder"),
    ]
    jobs = [
        {"id": str(i), "argv": [*argv, *([] if "-o" in argv else ["-o", str(tmp_path / "o")])]}
        for i, (argv, _, _) in enumerate(cases)
    ]
    results = RT.run_jobs(jobs, parallel=PARALLEL, timeout=30)
    fresh = RT.run_jobs(jobs[-3:], parallel=PARALLEL, mode="exec", timeout=30)
    for r, again in zip(results[-3:], fresh, strict=True):
        assert (again["code"], again["stderr"]) == (r["code"], r["stderr"])
    for (argv, code, pattern), r in zip(cases, results, strict=True):
        assert not r["timed_out"], argv
        lines = lines_of(r["stderr"])
        assert r["code"] == code, (argv, r["stderr"])
        assert len(lines) == 1 and lines[0].startswith("segment: error: "), (argv, lines)
        assert re.search(pattern, lines[0]), (argv, lines[0])
    assert RT.files_under(tmp_path / "o") == []


def test_k_above_the_distinct_colours_fits_what_is_possible(tmp_path):
    """README: 'segment fits one component per colour and says so' (8-bit images, colour
    features only: with --xy, the default, positions make every pixel distinct)."""
    src = blocks_png(tmp_path / "two.png", colours=((0, 0, 0), (255, 255, 255)), noise=0)
    out = tmp_path / "out"
    argv = ["image", str(src), "-k", "5", "--xy", "0", "-o", str(out), "--no-plots"]
    [r] = RT.run_jobs([{"id": "k5", "argv": argv}])
    assert r["code"] == 0, r["stderr"]
    assert re.search(r"note: only 2 distinct colours", r["stderr"]), r["stderr"]
    assert "k=2" in r["stdout"]
    doc = json.loads((out / "two.model.json").read_text())
    assert doc["summary"]["k"] == 2 and doc["gmm"]["n_components"] == 2
    labels = np.asarray(PILImage.open(out / "two.labels.png"))
    assert set(np.unique(labels)) == {0, 1}


def test_k_above_the_distinct_values_of_a_16_bit_image(tmp_path):
    summaries = segment_file(
        ODD / "grey16_two_values.png", tmp_path, FitOptions(k=3, max_iter=20, xy=0.0), plots=False
    )
    assert summaries[0]["k"] == 2


def test_notes_do_not_claim_the_iteration_limit_was_reached(tmp_path):
    for name in ("grey16_two_values.png", "grey16_flat.png", "anim3.gif"):
        [s] = segment_file(ODD / name, tmp_path, FitOptions(k=3, max_iter=100, xy=0.0), plots=False)
        if s["iterations"] < 100:
            assert not [n for n in s["notes"] if "did not converge in max_iter" in n], s


def test_negative_seed_is_a_usage_error(tmp_path):
    src = blocks_png(tmp_path / "b.png")
    [r] = RT.run_jobs(
        [{"id": "s", "argv": ["image", str(src), "--seed", "-1", "-o", str(tmp_path / "o")]}]
    )
    lines = lines_of(r["stderr"])
    assert r["code"] in (1, 2) and len(lines) == 1  # holds today
    assert "seed" in lines[0] and "b.png" not in lines[0]  # fails today


# =============================================================================================
# Determinism: the same command in two processes gives the same bytes
# =============================================================================================


def test_same_command_in_two_processes_gives_identical_bytes(tmp_path):
    """Two fresh interpreters (different hash seeds); position features and CIELAB, so that
    the fit runs on every pixel, not on the distinct colours. (The default settings are
    compared across processes by test_fresh_interpreters_give_the_same_results.)"""
    argv = ["image", str(ODD / "rgba_holes.png"), "-k", "3", "--max-iter", "20", "-q"]
    argv += ["--space", "lab", "--xy", "1", "--covariance", "diag"]
    jobs = [{"id": d, "argv": [*argv, "-o", str(tmp_path / d)]} for d in ("one", "two")]
    results = RT.run_jobs(jobs, parallel=2, mode="exec")
    assert [r["code"] for r in results] == [0, 0], [r["stderr"] for r in results]
    one, two = RT.files_under(tmp_path / "one"), RT.files_under(tmp_path / "two")
    assert one == two and len(one) == 6  # all six outputs, the plots included
    for n in one:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes(), n


# =============================================================================================
# Random tiny images of every mode through segment_file
# =============================================================================================

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]
FORMAT_OF = {"PA": "TIFF", "I": "TIFF", "F": "TIFF", "CMYK": "TIFF"}


@st.composite
def tiny_images(draw):
    mode = draw(st.sampled_from(MODES))
    w, h = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    levels = draw(st.integers(1, 6))  # few distinct values: k often exceeds them
    bands = len(PILImage.new(mode, (1, 1)).getbands())
    if mode == "F":
        data = rng.choice(rng.normal(0, 3, levels), (h, w)).astype(np.float32)
        return mode, PILImage.fromarray(data, mode="F")
    if mode in ("I;16", "I"):
        data = rng.choice(rng.integers(0, 65536, levels), (h, w))
        return mode, PILImage.fromarray(data.astype(np.uint16 if mode == "I;16" else np.int32))
    values = rng.integers(0, 256, (levels, bands), dtype=np.uint8)
    data = values[rng.integers(0, levels, (h, w))]
    if mode in ("LA", "RGBA", "PA") and draw(st.booleans()):
        data[..., -1] = rng.choice([0, 255, 1, 128], (h, w))  # holes and faint pixels
    if mode == "1":
        return mode, PILImage.fromarray(data[..., 0] > 127)
    if mode in ("P", "PA"):
        im = PILImage.frombytes(mode, (w, h), (data % 4).astype(np.uint8).tobytes())
        im.putpalette(rng.integers(0, 256, 12, dtype=np.uint8).tolist())
        return mode, im
    return mode, PILImage.frombytes(mode, (w, h), np.ascontiguousarray(data).tobytes())


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(image=tiny_images(), k=st.integers(1, 4), space=st.sampled_from(["rgb", "lab"]))
def test_tiny_images_of_every_mode(tmp_path, image, k, space):
    mode, im = image
    src = tmp_path / f"in.{FORMAT_OF.get(mode, 'PNG').lower()}"
    im.save(src, format=FORMAT_OF.get(mode, "PNG"))
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        [summary] = segment_file(
            src, out, FitOptions(k=k, max_iter=10, space=space, xy=0.0), plots=False, overwrite=True
        )
    except SegmentError as err:
        assert "\n" not in str(err)
        assert re.search(RT.CATEGORIES["transparent"], str(err)), str(err)
        assert load_image(src).alpha is not None
        assert RT.files_under(out) == []
        return
    assert RT.validate_outputs(out, "in", plots=False) == []
    labels = np.asarray(PILImage.open(out / "in.labels.png"))
    assert labels.shape == (im.size[1], im.size[0])
    visible = load_image(src).alpha
    used = labels if visible is None else labels[visible]
    assert used.max() < summary["k"] <= k
    if visible is not None:
        assert (labels[~visible] == 255).all()
