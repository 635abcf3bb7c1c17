"""`segment batch --shared-model --online`: one pass of online EM, each image read once."""

import json

import numpy as np
import pytest

from segment.batch import jobs as batch_jobs
from segment.batch import shared as batch_shared
from segment.outputs.model_file import load_model_file

from .test_batch import folder, run  # noqa: F401  (the fixture)


def counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(str(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("xy", ["0", "0.5"])
def test_online_reads_each_image_once_and_fits_like_batch_em(folder, tmp_path, monkeypatch, xy):  # noqa: F811
    reads = counting(monkeypatch, batch_jobs, "frames")
    rereads = counting(monkeypatch, batch_shared, "stream_rows")
    out = tmp_path / "online"
    r = run(
        folder,
        "-o",
        out,
        "-r",
        "-k",
        "3",
        "-j",
        "1",
        "--no-plots",
        "--shared-model",
        "--online",
        "--xy",
        xy,
    )
    assert r.exit_code == 1 and "4 ok, 1 failed" in r.output  # broken.png
    # The fit read every file once (broken.png included, which failed); only the figures
    # read the streamed frames (16-bit, float or --xy) once more.
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 5
    assert len(rereads) == (4 if xy != "0" else 0)
    online, _, doc = load_model_file(out / "shared.model.json")
    assert any("online EM" in n for n in doc["summary"]["notes"])

    reads.clear()
    rereads.clear()
    ref = tmp_path / "batch"
    run(folder, "-o", ref, "-r", "-k", "3", "-j", "1", "--no-plots", "--shared-model", "--xy", xy)
    batch, _, ref_doc = load_model_file(ref / "shared.model.json")
    if xy != "0":
        assert len(rereads) >= 3 * 4  # batch EM reads the streamed frames at every pass
    ll, ll_ref = doc["summary"]["log_likelihood"], ref_doc["summary"]["log_likelihood"]
    assert ll == pytest.approx(ll_ref, rel=0.02)
    np.testing.assert_allclose(online.means_, batch.means_, atol=0.03)


def test_online_is_deterministic_and_checks_its_options(folder, tmp_path):  # noqa: F811
    docs = []
    for name in ("a", "b"):
        run(
            folder,
            "-o",
            tmp_path / name,
            "-r",
            "-k",
            "3",
            "-j",
            "1",
            "--no-plots",
            "--shared-model",
            "--online",
        )
        docs.append(json.loads((tmp_path / name / "shared.model.json").read_text())["gmm"])
    assert docs[0] == docs[1]
    r = run(folder, "-o", tmp_path / "c", "-k", "3", "--online")
    assert r.exit_code == 1 and "--online only applies with --shared-model" in r.output
    r = run(folder, "-o", tmp_path / "d", "-r", "-k", "2:4", "--shared-model", "--online")
    assert r.exit_code == 1 and "one k" in r.output


def test_shuffle_buffer_emits_every_row_once():
    rng = np.random.default_rng(0)
    buffer = batch_shared._ShuffleBuffer(100, 16, rng)
    rows = np.arange(1000, dtype=np.float32)[:, None]
    out = [c for i in range(0, 1000, 70) for c in buffer.push(rows[i : i + 70])]
    out += list(buffer.drain())
    got = np.concatenate(out)[:, 0]
    assert sorted(got.tolist()) == rows[:, 0].tolist()
    assert all(len(c) == 16 for c in out[:-7])
    # Mixed: the first chunk holds rows from all over the first 100, not the first 16.
    assert out[0][:, 0].max() > 16
