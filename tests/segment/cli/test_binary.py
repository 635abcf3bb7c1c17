"""`segment binary`: outputs, thresholding, errors."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gmm
from segment.binary import image_bits, means_picture, purity
from segment.cli import app

runner = CliRunner()
PNG = Path(__file__).resolve().parents[2] / "data" / "digits" / "png"


def test_digits_folder_gives_the_four_outputs(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["binary", str(PNG), "-k", "10", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 40 and summary["shape"] == [8, 8]
    assert summary["thresholded"] == 0  # the PNGs are 1-bit already
    assert sorted(p.name for p in out.iterdir()) == [
        "clusters.csv",
        "loglik.png",
        "means.png",
        "model.json",
    ]
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(rows) == 40
    truth = [int(r["file"][5]) for r in rows]
    assert purity([int(r["cluster"]) for r in rows], truth) >= 0.6  # chance: about 0.3
    doc = json.loads((out / "model.json").read_text())
    model = gmm.BernoulliMixture.from_dict(doc["model"])
    ink = [1 - np.asarray(Image.open(PNG / r["file"]), dtype=np.uint8) for r in rows]
    X = np.array([a.ravel() for a in ink])
    order = np.array(doc["cluster_order"])
    np.testing.assert_array_equal(order[[int(r["cluster"]) for r in rows]], model.predict(X))
    picture = np.asarray(Image.open(out / "means.png"))
    assert picture.shape[0] > 8 and picture.shape[1] > 10 * 8
    # Same seed, same bytes; an existing output is refused, nothing rewritten.
    again = tmp_path / "again"
    runner.invoke(app, ["binary", str(PNG), "-k", "10", "-o", str(again), "-q"])
    for name in ("clusters.csv", "means.png", "model.json", "loglik.png"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    before = (out / "means.png").stat().st_mtime_ns
    result = runner.invoke(app, ["binary", str(PNG), "-k", "10", "-o", str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (out / "means.png").stat().st_mtime_ns == before


def test_grey_images_are_thresholded_and_the_threshold_is_stated(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        grey = np.full((10, 12), 220, dtype=np.uint8)
        grey[2:8, (i % 2) * 6 : (i % 2) * 6 + 5] = 30
        grey = np.clip(grey.astype(int) + rng.integers(-10, 10, grey.shape), 0, 255)
        Image.fromarray(grey.astype(np.uint8)).save(src / f"g{i}.png")
    result = runner.invoke(app, ["binary", str(src), "-k", "2", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "6 of 6 images" in result.output and "Otsu" in result.output
    rows = list(csv.DictReader((tmp_path / "o" / "clusters.csv").open()))
    by_file = {r["file"]: r["cluster"] for r in rows}
    assert by_file["g0.png"] == by_file["g2.png"] != by_file["g1.png"] == by_file["g3.png"]


def test_bits_and_picture_helpers():
    grey = np.array([[0.0, 0.2], [0.7, 1.0]])
    bits, cut = image_bits(grey, 0.5)
    assert cut and bits.tolist() == [[True, True], [False, False]]
    bits, cut = image_bits(np.array([[0.3, 0.9]]), "otsu")
    assert not cut and bits.tolist() == [[True, False]]
    pic = means_picture(np.array([[0.0] * 4, [1.0] * 4]), (2, 2), weights=[0.2, 0.8])
    assert pic.dtype == np.uint8 and pic.min() == 0 and pic.max() == 255
    # The heavier (all-ink) component comes first: the first tile is black.
    row = pic[pic.shape[0] // 2]
    assert row[row.shape[0] // 4] == 0 and row[3 * row.shape[0] // 4] == 255


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "2", "--threshold", "2"], "--threshold must be"),
        (["-k", "99"], "more than the 40 images"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    result = runner.invoke(app, ["binary", str(PNG), "-o", str(tmp_path / "o"), *args])
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_images_of_different_sizes_are_refused(tmp_path):
    src = tmp_path / "in"
    shutil.copytree(PNG, src)
    Image.new("1", (9, 8)).save(src / "wide.png")
    result = runner.invoke(app, ["binary", str(src), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "one size" in result.output
