"""Float TIFFs with several samples per pixel and NaN ("no data") in some channels: read
with tifffile, segmented on the values they hold (gmm marginalises the missing ones)."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

import gmm
from segment.cli import app
from segment.errors import SegmentError
from segment.imageio.read import count_frames, iter_frames, load_image

runner = CliRunner()


def two_halves(H=30, W=40, seed=0):
    """Red left half, blue right half (float RGB in [0, 1], a little noise)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.float32)
    img[:, : W // 2] = (0.8, 0.15, 0.15)
    img[:, W // 2 :] = (0.15, 0.2, 0.85)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


def write(path, values, **kw):
    tifffile.imwrite(path, values, photometric="rgb" if values.ndim == 3 else None, **kw)
    return path


def test_float_rgb_tiff_keeps_nan_per_channel(tmp_path):
    img = two_halves()
    img[3, 4, 1] = np.nan  # one channel missing
    img[5, 6] = np.nan  # nothing
    img[7, 8, 0] = np.inf  # not finite: missing too
    path = write(tmp_path / "f.tif", img)
    image = load_image(path)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (30, 40, 3)
    assert np.isnan(image.pixels[3, 4, 1]) and np.isfinite(image.pixels[3, 4, [0, 2]]).all()
    assert np.isnan(image.pixels[7, 8, 0])
    assert image.alpha is not None and not image.alpha[5, 6] and image.alpha.sum() == 30 * 40 - 1
    assert np.isfinite(image.pixels[5, 6]).all()  # invisible pixels hold a finite value
    assert np.array_equal(image.pixels[0, 0], img[0, 0])  # within [0, 1]: kept as is
    assert count_frames(path) == 1
    assert [im.pixels.shape for im in iter_frames(path)] == [(30, 40, 3)]
    assert any("miss some channels" in n for n in image.notes)


def test_float_tiff_out_of_unit_range_is_scaled_and_alpha_sample_hides(tmp_path):
    values = np.dstack([two_halves() * 1000 - 200, np.full((30, 40), 1.0, np.float32)])
    values[0, :, 3] = 0.0  # alpha 0: invisible
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, values, photometric="rgb", extrasamples=["unassalpha"])
    image = load_image(path)
    assert not image.alpha[0].any() and image.alpha[1:].all()
    seen = image.pixels[1:]
    assert seen.min() >= 0 and seen.max() <= 1 and seen.max() > 0.99


def test_unreadable_layouts_are_one_line_errors(tmp_path):
    path = tmp_path / "two.tif"
    tifffile.imwrite(
        path, np.zeros((4, 4, 2), np.float32), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(SegmentError, match="2 float samples per pixel"):
        load_image(path)
    rgb = write(tmp_path / "rgb.tif", two_halves())
    with pytest.raises(SegmentError, match="no frame 1"):
        load_image(rgb, frame=1)
    nan = write(tmp_path / "nan.tif", np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(SegmentError, match="every value is missing"):
        load_image(nan)


def test_segment_image_on_partially_missing_pixels(tmp_path):
    img = two_halves()
    rng = np.random.default_rng(3)
    partial = rng.random(img.shape[:2]) < 0.2
    channel = rng.integers(0, 3, img.shape[:2])
    rows, cols = np.nonzero(partial)
    img[rows, cols, channel[rows, cols]] = np.nan
    img[10:14, 2:6] = np.nan  # no value at all: transparent, as today
    path = write(tmp_path / "p.tif", img)
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "image",
            str(path),
            "-k",
            "2",
            "--xy",
            "0",
            "--space",
            "rgb",
            "--regions",
            "off",
            "-o",
            str(out),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    labels = np.asarray(Image.open(out / "p.labels.png"))
    assert (labels[10:14, 2:6] == 255).all()
    visible = np.ones(labels.shape, bool)
    visible[10:14, 2:6] = False
    left, right = labels[:, :20][visible[:, :20]], labels[:, 20:][visible[:, 20:]]
    # Each half is one segment, its pixels with a missing channel included.
    assert len(set(left)) == 1 and len(set(right)) == 1 and left[0] != right[0]
    doc = json.loads((out / "p.model.json").read_text())
    assert np.isfinite(doc["summary"]["psnr_db"])
    assert (out / "p.density.png").exists()
    # The labels are the fitted model's most likely components of the observed values.
    model = gmm.GaussianMixture.from_dict(doc["gmm"])
    X = img.reshape(-1, 3)[visible.ravel()]
    expected = model.predict(X)
    # Label numbers are sorted by the segment application: a one-to-one correspondence.
    assert len(set(zip(expected, labels[visible], strict=True))) == 2


def test_quantize_refuses_missing_channels(tmp_path):
    img = two_halves()
    img[0, 0, 1] = np.nan
    path = write(tmp_path / "q.tif", img)
    r = runner.invoke(app, ["quantize", str(path), "-o", str(tmp_path / "q.png")])
    assert r.exit_code == 1 and "1 pixel(s) miss some channels" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "q.png").exists()


def test_k_chosen_by_bic_on_partially_missing_pixels(tmp_path):
    img = two_halves(20, 24)
    img[::3, ::2, 0] = np.nan
    path = write(tmp_path / "b.tif", img)
    out = tmp_path / "out"
    args = ["image", str(path), "-k", "1:3", "--xy", "0", "-o", str(out), "-q"]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "b.model.json").read_text())
    assert doc["gmm"]["n_components"] >= 2  # two colours, whatever is missing
    assert (out / "b.bic.png").exists()
