"""Issue 13, reliability second pass (classes 3-10 and 13): hostile inputs that the odd-file
corpus does not hold, through the real command in processes of their own.

The README's promise for each: one line on stderr, exit 1 (2 for a malformed command line),
no traceback, nothing left behind, nothing left running. Every input is generated here:
servers that are not Dask schedulers (127.0.0.1 only, in threads of this process), a batch
killed with SIGKILL, multi-frame files with an empty frame, 16-bit PNGs with a tRNS colour
key, JPEG headers patched to declare a huge size, names that collide.
"""

import importlib.util
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import odd_files as RT
from tests.support.hostile import (
    Listener,
    blocks,
    colliding_names,
    env,
    hole_pair,
    key16_images,
    kill_batch,
    multi_frame_files,
    patched_jpeg,
    save,
)

PARALLEL = 2


def lines_of(text):
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line(r, code, pattern):
    """Exit ``code``, exactly one line on stderr matching ``pattern``, no traceback."""
    lines = lines_of(r["stderr"])
    assert r["code"] == code, (r["code"], r["stderr"])
    assert "Traceback" not in r["stderr"] and "internal error" not in r["stderr"], r["stderr"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("segment: error: "), lines
    assert re.search(pattern, lines[0]), lines[0]


# =============================================================================================
# Class 3: a scheduler address that is not a Dask scheduler
# =============================================================================================


@pytest.fixture
def listeners():
    made = []

    def make(kind):
        made.append(Listener(kind))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def small_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save(blocks(), folder / "b.png")
    return folder


needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs the dask extra"
)


@needs_dask
def test_scheduler_addresses_that_are_not_dask_schedulers(listeners, small_folder, tmp_path):
    """An HTTP server, a server answering garbage, a silent server and a malformed address:
    each one line and exit 1 within the README's 10 s (plus start-up), no traceback from
    Client.__del__, nothing written."""
    addresses = [listeners(kind).address for kind in ("http", "garbage", "silent")]
    addresses += ["notaurl::", "tcp://127.0.0.1:1"]  # malformed; nothing listens
    jobs = [
        {
            "id": address,
            "argv": [
                "batch",
                str(small_folder),
                "-o",
                str(tmp_path / f"o{i}"),
                "-q",
                "--scheduler",
                address,
            ],
        }
        for i, address in enumerate(addresses)
    ]
    results = RT.run_jobs(jobs, parallel=PARALLEL, timeout=40)  # not more: imports crawl
    for i, (address, r) in enumerate(zip(addresses, results, strict=True)):
        assert not r["timed_out"], address
        assert_one_line(r, 1, r"Dask scheduler")
        assert "out of memory" not in r["stderr"] and "Exception ignored" not in r["stderr"]
        assert r["wall"] < 20, (address, r["wall"])  # 10 s to connect, and the imports
        assert RT.files_under(tmp_path / f"o{i}") == []
    by_address = dict(zip(addresses, results, strict=True))
    assert "not a Dask scheduler" in by_address[addresses[0]]["stderr"]  # HTTP
    assert "not a Dask scheduler" in by_address[addresses[1]]["stderr"]  # garbage
    assert "invalid address" in by_address["notaurl::"]["stderr"]


@needs_dask
def test_ctrl_c_while_connecting_ends_promptly(listeners, small_folder, tmp_path):
    """Ctrl-C at moments from the imports (where Python may swallow it in a garbage
    collector callback) to the wait for the scheduler's answer."""
    silent = listeners("silent")
    moments = (0.5, 1.0, 2.0, 3.0)
    jobs = [
        {
            "id": str(t),
            "argv": [
                "batch",
                str(small_folder),
                "-o",
                str(tmp_path / f"o{i}"),
                "-q",
                "--scheduler",
                silent.address,
            ],
            "kill": {"signal": int(signal.SIGINT), "after": t},
        }
        for i, t in enumerate(moments)
    ]
    for t, r in zip(moments, RT.run_jobs(jobs, parallel=2, timeout=40), strict=True):
        assert r["sent"] == signal.SIGINT, t
        assert r["wall"] < t + 4.0, (t, r["wall"], r["stderr"])  # ended soon after Ctrl-C
        assert_one_line(r, 130, r"interrupted")


# =============================================================================================
# Class 4: kill -9 of `segment batch` leaves no worker behind
# =============================================================================================


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigkill_of_batch_leaves_no_worker_alive(tmp_path):
    workers, left, _ = kill_batch(tmp_path)
    assert len(workers) == 2, "the pool workers did not start"
    assert left == [], "workers outlived their parent"


# =============================================================================================
# Class 5: a frame with nothing to segment is reported and skipped
# =============================================================================================


def test_all_frames_skips_an_empty_frame_and_says_which(tmp_path):
    multi_frame_files(tmp_path)
    names = ("anim.webp", "nan.tiff")
    base = ["-k", "2", "--max-iter", "10", "--no-plots", "--all-frames"]
    jobs = [
        {"id": n, "argv": ["image", str(tmp_path / n), *base, "-o", str(tmp_path / f"o_{n}")]}
        for n in names
    ]
    jobs.append(
        {
            "id": "empty",
            "argv": ["image", str(tmp_path / "empty.webp"), *base, "-o", str(tmp_path / "oe")],
        }
    )
    jobs.append(
        {"id": "quiet", "argv": [*jobs[0]["argv"][:-1], str(tmp_path / "oq"), "-q", "--json"]}
    )
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    for name, r in zip(names, results[:2], strict=True):
        assert r["code"] == 0, (name, r["stderr"])
        assert "Traceback" not in r["stderr"]
        stem = Path(name).stem
        out = tmp_path / f"o_{name}"
        for f in (0, 2):
            assert RT.validate_outputs(out, f"{stem}.f{f:03d}", plots=False) == [], (name, f)
        assert not [n for n in RT.files_under(out) if ".f001." in n]
        skipped = [line for line in lines_of(r["stderr"]) if "frame 1" in line]
        assert len(skipped) == 1 and "skipped" in skipped[0], r["stderr"]
        assert re.search(RT.CATEGORIES["transparent"], skipped[0]), skipped
    # Every frame empty: an error, as for a still image.
    assert_one_line(results[2], 1, RT.CATEGORIES["transparent"])
    assert RT.files_under(tmp_path / "oe") == []
    # -q --json: nothing on stderr, the skipped frame is in the JSON.
    q = results[3]
    assert q["code"] == 0 and q["stderr"] == "", q["stderr"]
    doc = json.loads(q["stdout"])
    assert [s["frame"] for s in doc] == [0, 2]
    assert any("frame 1" in note for s in doc for note in s.get("notes", [])), doc


# =============================================================================================
# Class 6: a 16-bit tRNS colour key is matched at full precision
# =============================================================================================


def test_16_bit_colour_key_matched_at_full_precision(tmp_path):
    key16_images(tmp_path)
    base = ["-k", "2", "--max-iter", "10", "--no-plots", "-q", "--xy", "0"]
    jobs = [
        {"id": n, "argv": ["image", str(tmp_path / n), *base, "-o", str(tmp_path / "o")]}
        for n in ("nokey.png", "keyed.png")
    ]
    results = RT.run_jobs(jobs)
    for r in results:
        assert r["code"] == 0, r["stderr"]
    labels = np.asarray(Image.open(tmp_path / "o" / "nokey.labels.png"))
    assert (labels != 255).all()  # every pixel visible
    labels = np.asarray(Image.open(tmp_path / "o" / "keyed.labels.png"))
    assert (labels[:, :10] == 255).all() and (labels[:, 10:] != 255).all()


# =============================================================================================
# Class 7: a tiny JPEG declaring a huge size is truncated
# =============================================================================================


def test_tiny_jpeg_declaring_a_huge_size_is_truncated(tmp_path):
    cases = {
        "huge.jpg": ((16, 16), (9000, 9000), {}),
        "wide.jpg": ((32, 16), (8000, 3000), {"progressive": True}),
        "444.jpg": ((24, 24), (3000, 2000), {"subsampling": 0}),
    }
    jobs = []
    for name, (size, declared, kw) in cases.items():
        patched_jpeg(tmp_path / name, size, declared, **kw)
        argv = ["image", str(tmp_path / name), *RT.CORPUS_ARGS, "--no-plots"]
        jobs.append({"id": name, "argv": [*argv, "-o", str(tmp_path / "o")]})
    results = RT.run_jobs(jobs, parallel=PARALLEL, timeout=60)
    for job, r in zip(jobs, results, strict=True):
        assert_one_line(r, 1, RT.CATEGORIES["truncated"])
        assert job["id"] in r["stderr"]
        assert r["cpu"] < 3.0, (job["id"], r["cpu"])  # refused before decoding
    assert RT.files_under(tmp_path / "o") == []


# =============================================================================================
# Class 8: names that collide get distinct, predictable outputs
# =============================================================================================


def test_colliding_names_get_distinct_outputs(tmp_path):
    folder = colliding_names(tmp_path / "in")
    base = ["-k", "2", "--max-iter", "10", "--no-plots", "-q"]
    three = [str(folder / n) for n in ("a.png", "a.jpg", "a.png.png")]
    jobs = [
        {"id": "image", "argv": ["image", *three, *base, "-o", str(tmp_path / "o1")]},
        {
            "id": "batch",
            "argv": ["batch", str(folder), *base, "--recursive", "-o", str(tmp_path / "o2")],
        },
        {
            "id": "folders",
            "argv": [
                "image",
                str(folder / "x" / "c.png"),
                str(folder / "y" / "c.png"),
                *base,
                "-o",
                str(tmp_path / "o3"),
            ],
        },
    ]
    results = RT.run_jobs(jobs, parallel=PARALLEL)
    for r in results:
        assert r["code"] == 0 and r["stderr"] == "", r["stderr"]
    stems = ("a.png", "a.jpg", "a.png.png")
    for out in (tmp_path / "o1", tmp_path / "o2"):
        for stem in stems:
            assert RT.validate_outputs(out, stem, plots=False) == [], (out, stem)
    # Each model file names its own input.
    for stem, name in zip(stems, ("a.png", "a.jpg", "a.png.png"), strict=True):
        doc = json.loads((tmp_path / "o1" / f"{stem}.model.json").read_text())
        assert Path(doc["input"]["path"]).name == name, doc["input"]
    # The same name in two folders: the later one numbered, in command-line order.
    for stem in ("c.png", "c.png~2"):
        assert RT.validate_outputs(tmp_path / "o3", stem, plots=False) == [], stem
    doc = json.loads((tmp_path / "o3" / "c.png~2.model.json").read_text())
    assert Path(doc["input"]["path"]).parent.name == "y"
    # Batch mirrors the folders: x/c and y/c do not collide.
    assert RT.validate_outputs(tmp_path / "o2" / "x", "c", plots=False) == []


def test_same_file_twice_is_one_line(tmp_path):
    src = tmp_path / "b.png"
    save(blocks(), src)
    argv = ["image", str(src), str(src), "-k", "2", "--no-plots", "-o", str(tmp_path / "o")]
    [r] = RT.run_jobs([{"id": "twice", "argv": argv}])
    assert_one_line(r, 1, r"b.png.*(twice|more than once)")


# =============================================================================================
# Class 9: warnings and NaN do not reach the user
# =============================================================================================


def test_absurd_xy_weights_are_refused_in_one_line(tmp_path):
    src = tmp_path / "b.png"
    save(blocks(), src)
    values = ["1e308", "1e20", "1e40", "1e6"]
    jobs = [
        {
            "id": v,
            "argv": [
                "image",
                str(src),
                "-k",
                "2",
                "--no-plots",
                "--xy",
                v,
                "-o",
                str(tmp_path / f"o{i}"),
            ],
        }
        for i, v in enumerate(values)
    ]
    for r in RT.run_jobs(jobs, parallel=PARALLEL):
        assert_one_line(r, 2, r"'--xy'")
        assert "Warning" not in r["stderr"] and "Eigenvalues" not in r["stderr"]


def test_largest_accepted_xy_weight_fits_without_warnings(tmp_path):
    src = tmp_path / "b.png"
    save(blocks(), src)
    argv = ["image", str(src), "-k", "3", "--no-plots", "--xy", "1000", "-o", str(tmp_path / "o")]
    [r] = RT.run_jobs([{"id": "xy", "argv": argv}])
    assert r["code"] == 0, r["stderr"]
    assert "Warning" not in r["stderr"] and "nan" not in r["stdout"].lower(), r["stderr"]


def test_compare_of_one_pixel_maps_says_why_a_metric_is_undefined(tmp_path):
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "s.png")
    Image.fromarray(np.ones((1, 1), np.uint8)).save(tmp_path / "t.png")
    # Every pixel its own segment: precision undefined, recall defined.
    Image.fromarray(np.arange(4, dtype=np.uint8).reshape(2, 2)).save(tmp_path / "s4.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "t4.png")
    jobs = [
        {"id": "txt", "argv": ["compare", str(tmp_path / "s.png"), str(tmp_path / "t.png")]},
        {
            "id": "json",
            "argv": ["compare", str(tmp_path / "s.png"), str(tmp_path / "t.png"), "--json"],
        },
        {"id": "four", "argv": ["compare", str(tmp_path / "s4.png"), str(tmp_path / "t4.png")]},
    ]
    txt, js, four = RT.run_jobs(jobs, parallel=PARALLEL)
    for r in (txt, js, four):
        assert r["code"] == 0, r["stderr"]
        assert "Warning" not in r["stderr"] and "Traceback" not in r["stderr"], r["stderr"]
        assert not re.search(r"\bnan\b", r["stdout"], re.I), r["stdout"]
    assert "n/a" in txt["stdout"]
    assert re.search(r"undefined", txt["stderr"]), txt["stderr"]  # the reason, as a note
    doc = json.loads(js["stdout"])
    assert doc["adapted_rand_error"] is None and doc["rand_precision"] is None
    assert doc["undefined"], doc  # the reasons
    assert re.search(r"precision n/a", four["stdout"]) and "recall 0.0000" in four["stdout"]


# =============================================================================================
# Class 10: one rule for exit codes and messages
# =============================================================================================

#: Bad option values are a malformed command line: status 2, the option named, one line.
BAD_VALUES = [
    (["--xy", "inf"], r"'--xy'"),
    (["--xy", "nan"], r"'--xy'"),
    (["--xy", "-1"], r"'--xy'"),
    (["--tol", "inf"], r"'--tol'"),
    (["--tol", "nan"], r"'--tol'"),
    (["--sample", "1"], r"'--sample'"),
    (["--memory-mib", "0"], r"'--memory-mib'"),
    (["--memory-mib", "nan"], r"'--memory-mib'"),
    (["--smooth", "nan"], r"'--smooth'.*nan"),
    (["--smooth", "inf"], r"'--smooth'"),
    (["--merge", "inf"], r"'--merge'"),
    (["--merge", "nan"], r"'--merge'"),
]


def test_bad_option_values_exit_2_with_one_line(tmp_path):
    src = tmp_path / "b.png"
    save(blocks(), src)
    jobs = [
        {"id": str(i), "argv": ["image", str(src), "-o", str(tmp_path / "o"), *args]}
        for i, (args, _) in enumerate(BAD_VALUES)
    ]
    for (args, pattern), r in zip(BAD_VALUES, RT.run_jobs(jobs, parallel=PARALLEL), strict=True):
        assert r["code"] == 2, (args, r["stderr"])
        assert_one_line(r, 2, pattern)
        assert "≤ 100" not in r["stderr"] or "nan" not in args, r["stderr"]
    assert RT.files_under(tmp_path / "o") == []


def test_unreadable_input_is_like_a_missing_one(tmp_path):
    """No read permission (injected: the tests may run as root) is one line, exit 1, and
    the other inputs are processed, as for a missing input."""
    good = tmp_path / "b.png"
    save(blocks(), good)
    locked = tmp_path / "locked.png"
    save(blocks(seed=1), locked)
    base = ["-k", "2", "--max-iter", "10", "--no-plots", "-q"]
    jobs = [
        {
            "id": "unreadable",
            "argv": ["image", str(locked), str(good), *base, "-o", str(tmp_path / "o1")],
            "fault": "unreadable",
            "fault_arg": str(locked),
        },
        {
            "id": "missing",
            "argv": [
                "image",
                str(tmp_path / "nope.png"),
                str(good),
                *base,
                "-o",
                str(tmp_path / "o2"),
            ],
        },
    ]
    unreadable, missing = RT.run_jobs(jobs, parallel=PARALLEL)
    assert_one_line(unreadable, 1, r"locked.png: permission denied")
    assert_one_line(missing, 1, r"nope.png: no such file")
    for out in ("o1", "o2"):
        assert RT.validate_outputs(tmp_path / out, "b", plots=False) == []


def test_full_stdout_is_one_line(tmp_path):
    src = tmp_path / "b.png"
    save(blocks(), src)
    base = ["-m", "segment", "image", str(src), "-k", "2", "--no-plots", "--overwrite"]
    for extra in ([], ["--json"]):
        with open("/dev/full", "w") as full:
            r = subprocess.run(
                [sys.executable, *base, *extra, "-o", str(tmp_path / "o")],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                env=env(),
                timeout=120,
            )
        result = {"code": r.returncode, "stderr": r.stderr}
        assert_one_line(result, 1, r"standard output")


# =============================================================================================
# Class 13: quantize SSIM ignores transparent pixels
# =============================================================================================


def test_quantize_ssim_ignores_what_transparent_pixels_hold(tmp_path):
    """Two RGBA images that differ only under fully transparent pixels: the same figures."""
    hole_pair(tmp_path)
    jobs = [
        {
            "id": n,
            "argv": [
                "quantize",
                str(tmp_path / f"{n}.png"),
                "-k",
                "4",
                "--json",
                "--figures",  # SSIM is computed on request only
                "-o",
                str(tmp_path / f"{n}.q.png"),
            ],
        }
        for n in ("one", "two")
    ]
    a, b = RT.run_jobs(jobs, parallel=PARALLEL)
    assert a["code"] == 0 and b["code"] == 0, (a["stderr"], b["stderr"])
    fa, fb = json.loads(a["stdout"]), json.loads(b["stdout"])
    fa, fb = (f[0] if isinstance(f, list) else f for f in (fa, fb))
    assert fa["psnr_db"] == pytest.approx(fb["psnr_db"])
    assert fa["ssim"] is not None
    assert fa["ssim"] == pytest.approx(fb["ssim"], abs=1e-9)


def test_batch_input_named_shared_keeps_clear_of_the_shared_model(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    save(blocks(seed=1), folder / "shared.png")
    save(blocks(seed=2), folder / "other.png")
    out = tmp_path / "o"
    argv = ["batch", str(folder), "--shared-model", "-k", "2", "--no-plots", "-q", "-o", str(out)]
    [r] = RT.run_jobs([{"id": "shared", "argv": argv}])
    assert r["code"] == 0 and r["stderr"] == "", r["stderr"]
    assert (out / "shared.model.json").is_file()  # the shared model
    doc = json.loads((out / "shared.png.model.json").read_text())
    assert Path(doc["input"]["path"]).name == "shared.png"


def test_quantize_says_why_ssim_is_undefined(tmp_path):
    save(blocks(1, 1), tmp_path / "px.png")
    # The two runs go in parallel: each writes its own output.
    argv = ["quantize", str(tmp_path / "px.png"), "--figures"]
    text, js = RT.run_jobs(
        [
            {"id": "t", "argv": [*argv, "-o", str(tmp_path / "text.png")]},
            {"id": "j", "argv": [*argv, "-o", str(tmp_path / "json.png"), "--json"]},
        ]
    )
    assert text["code"] == 0 and "SSIM is undefined" in text["stderr"], text["stderr"]
    doc = json.loads(js["stdout"])
    assert doc["ssim"] is None and any("SSIM is undefined" in n for n in doc["notes"])


def test_an_input_named_like_a_frame_keeps_clear_of_it(tmp_path):
    """a.f000.png beside a multi-frame a.webp: with --all-frames the frame's outputs are
    a.f000.*; the still image takes its whole name, and --overwrite replaces nothing of it."""
    multi_frame_files(tmp_path)
    save(blocks(seed=7), tmp_path / "anim.f000.png")
    out = tmp_path / "o"
    argv = ["image", str(tmp_path / "anim.webp"), str(tmp_path / "anim.f000.png")]
    argv += ["--all-frames", "-k", "2", "--no-plots", "-q", "--overwrite", "-o", str(out)]
    [r] = RT.run_jobs([{"id": "frames", "argv": argv}])
    assert r["code"] == 0 and r["stderr"] == "", r["stderr"]
    doc = json.loads((out / "anim.f000.png.model.json").read_text())
    assert Path(doc["input"]["path"]).name == "anim.f000.png"
    doc = json.loads((out / "anim.f000.model.json").read_text())
    assert Path(doc["input"]["path"]).name == "anim.webp"
