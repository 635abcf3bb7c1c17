"""Segmentation agreement (segment.compare): known label maps, scikit-image's metrics,
connected regions, ignored pixels, label-map files in grey, 16-bit and colour."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import adapted_rand_error, variation_of_information
from typer.testing import CliRunner

from segment.cli import app
from segment.compare import compare_files
from segment.errors import SegmentError
from segment.metrics import compare_labels

runner = CliRunner()


def quarters(h=8, w=8):
    """Four equal quadrants labelled 0..3."""
    lab = np.zeros((h, w), dtype=np.int64)
    lab[: h // 2, w // 2 :] = 1
    lab[h // 2 :, : w // 2] = 2
    lab[h // 2 :, w // 2 :] = 3
    return lab


def test_identical_and_relabelled_maps_agree_perfectly():
    truth = quarters()
    for seg in (truth, (truth + 2) % 4 * 10 + 7):
        r = compare_labels(seg, truth)
        assert r["variation_of_information"] == pytest.approx(0.0, abs=1e-12)
        assert r["false_splits"] == pytest.approx(0.0, abs=1e-12)
        assert r["false_merges"] == pytest.approx(0.0, abs=1e-12)
        assert r["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12)
        assert r["rand_precision"] == r["rand_recall"] == pytest.approx(1.0)
        assert r["segments"] == r["truth_segments"] == 4
        assert r["pixels"] == 64 and r["ignored_pixels"] == 0


def test_splits_and_merges():
    truth = quarters()
    # Splitting one quadrant (a quarter of the image) into two halves: 1/4 bit of false
    # splits, no false merge; every pair the truth holds together that the split separates
    # lowers the recall, the precision stays 1.
    split = truth.copy()
    split[:2, :4] = 9
    r = compare_labels(split, truth)
    assert r["false_splits"] == pytest.approx(0.25)
    assert r["false_merges"] == pytest.approx(0.0, abs=1e-12)
    assert r["rand_precision"] == pytest.approx(1.0) and r["rand_recall"] < 1.0
    assert r["segments"] == 5
    # Merging two quadrants (half the image into one segment): 1/2 bit of false merges.
    merged = truth.copy()
    merged[merged == 1] = 0
    r = compare_labels(merged, truth)
    assert r["false_merges"] == pytest.approx(0.5)
    assert r["false_splits"] == pytest.approx(0.0, abs=1e-12)
    assert r["rand_recall"] == pytest.approx(1.0) and r["rand_precision"] < 1.0
    # Pairs: 4 quadrants of 16 pixels; merged: one of 32. Together in both: 4*16*15,
    # together in the merged map: 2*16*15 + 32*31.
    assert r["rand_precision"] == pytest.approx(4 * 16 * 15 / (2 * 16 * 15 + 32 * 31))
    assert r["segments"] == 3 and r["truth_segments"] == 4


def test_metrics_are_scikit_images():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, (30, 40))
    seg = np.where(rng.random((30, 40)) < 0.7, truth, rng.integers(0, 7, (30, 40)))
    r = compare_labels(seg, truth)
    splits, merges = variation_of_information(truth, seg)
    are, _, _ = adapted_rand_error(truth, seg, ignore_labels=())
    assert r["false_splits"] == pytest.approx(splits)
    assert r["false_merges"] == pytest.approx(merges)
    assert r["variation_of_information"] == pytest.approx(splits + merges)
    assert r["adapted_rand_error"] == pytest.approx(are)
    # ARE is one minus the F-score of the precision and recall reported.
    p, q = r["rand_precision"], r["rand_recall"]
    assert 1 - 2 * p * q / (p + q) == pytest.approx(are)


def test_connected_regions():
    truth = np.zeros((6, 9), dtype=int)
    truth[:, 3:6] = 1  # label 0 in two separate bands, left and right
    seg = np.zeros_like(truth)
    seg[:, 3:] = 1  # the right band merged with the middle one
    plain = compare_labels(seg, truth)
    regions = compare_labels(seg, truth, connected=True)
    assert plain["truth_segments"] == 2 and regions["truth_segments"] == 3
    assert regions["segments"] == 2 and regions["connected"]
    # As labels, seg confuses both truth labels; as regions, it only merges two of three.
    assert regions["false_splits"] == pytest.approx(0.0, abs=1e-12)
    assert regions["false_merges"] > 0
    # Diagonal neighbours join regions only with connectivity 2.
    diag = np.eye(4, dtype=int)
    assert compare_labels(diag, diag, connected=True)["segments"] == 6
    assert compare_labels(diag, diag, connected=True, connectivity=2)["segments"] == 2


def test_ignored_pixels_do_not_count():
    truth = quarters()
    truth[:, :1] = 255  # unlabelled border
    seg = quarters()
    seg[:, :1] = 7  # whatever the segmentation says there
    r = compare_labels(seg, truth, ignore_label=255)
    assert r["variation_of_information"] == pytest.approx(0.0, abs=1e-12)
    assert r["ignored_pixels"] == 8 and r["pixels"] == 56
    mask = np.zeros(truth.shape, bool)
    mask[:, :1] = True
    assert compare_labels(seg, quarters(), ignore_mask=mask)["adapted_rand_error"] == 0.0
    with pytest.raises(SegmentError, match="every pixel is ignored"):
        compare_labels(seg, truth, ignore_mask=np.ones(truth.shape, bool))


def test_invalid_inputs():
    with pytest.raises(SegmentError, match=r"8×8 pixels but the truth is 9×8"):
        compare_labels(quarters(), quarters(8, 9))
    with pytest.raises(SegmentError, match="2-D label map"):
        compare_labels(np.zeros((2, 2, 3), int), np.zeros((2, 2, 3), int))
    with pytest.raises(SegmentError, match="integer labels"):
        compare_labels(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(SegmentError, match="connectivity"):
        compare_labels(quarters(), quarters(), connected=True, connectivity=3)


# -- files ---------------------------------------------------------------------------------


def test_files_grey_sixteen_bit_and_colour(tmp_path):
    truth = quarters(10, 12)
    seg = truth.copy()
    seg[:3, :6] = 4
    Image.fromarray(seg.astype(np.uint8)).save(tmp_path / "seg.png")
    Image.fromarray((truth * 1000).astype(np.uint16)).save(tmp_path / "truth16.png")
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    Image.fromarray(colours[truth]).save(tmp_path / "truth_rgb.png")
    expected = compare_labels(seg, truth)
    for name in ("truth16.png", "truth_rgb.png"):
        r = compare_files(tmp_path / "seg.png", tmp_path / name)
        assert r["truth"].endswith(name)
        for key, value in expected.items():
            assert r[key] == pytest.approx(value), key
    # Ignore a colour of the colour truth, or a grey value of the grey one.
    r = compare_files(tmp_path / "seg.png", tmp_path / "truth_rgb.png", ignore=(255, 0, 0))
    expected = compare_labels(seg, truth, ignore_label=0)
    assert r.pop("undefined") == expected.pop("undefined") == {}
    assert r == pytest.approx({**r, **expected})
    r = compare_files(tmp_path / "seg.png", tmp_path / "truth16.png", ignore=3000)
    assert r["ignored_pixels"] == 30
    with pytest.raises(SegmentError, match="colour image"):
        compare_files(tmp_path / "seg.png", tmp_path / "truth_rgb.png", ignore=0)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(SegmentError, match="compare label maps of the same image"):
        compare_files(tmp_path / "seg.png", tmp_path / "small.png")


def test_cli_compare(tmp_path):
    truth = quarters()
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "t.png")
    Image.fromarray(((truth + 1) % 4).astype(np.uint8)).save(tmp_path / "s.png")
    r = runner.invoke(app, ["compare", str(tmp_path / "s.png"), str(tmp_path / "t.png")])
    assert r.exit_code == 0, r.output
    assert "VI=0.0000" in r.stdout and "adapted Rand error=0.0000" in r.stdout
    r = runner.invoke(
        app,
        [
            "compare",
            str(tmp_path / "s.png"),
            str(tmp_path / "t.png"),
            "--connected",
            "--ignore",
            "0",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["connected"] and doc["ignored_pixels"] == 16 and doc["segments"] == 3
    r = runner.invoke(app, ["compare", str(tmp_path / "s.png"), str(tmp_path / "nope.png")])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(
        app, ["compare", str(tmp_path / "s.png"), str(tmp_path / "t.png"), "--ignore", "red"]
    )
    assert r.exit_code == 1 and "--ignore takes a label" in r.stderr


def test_rand_index_and_covering_against_naive_formulas():
    rng = np.random.default_rng(4)
    seg = rng.integers(0, 3, (7, 9))
    truth = rng.integers(0, 4, (7, 9))
    r = compare_labels(seg, truth)
    s, t = seg.ravel(), truth.ravel()
    n = s.size
    agree = sum((s[i] == s[j]) == (t[i] == t[j]) for i in range(n) for j in range(i + 1, n))
    assert r["rand_index"] == pytest.approx(agree / (n * (n - 1) / 2))
    covering = 0.0
    for a in np.unique(t):
        R = t == a
        best = max((R & (s == b)).sum() / (R | (s == b)).sum() for b in np.unique(s))
        covering += R.sum() * best
    assert r["covering"] == pytest.approx(covering / n)
    same = compare_labels(truth, truth)
    assert same["rand_index"] == 1.0 and same["covering"] == 1.0
