"""``segment fill``: missing (NaN, transparent) and masked pixels replaced by their
conditional mean under the fitted mixture, checked against the conditional-Gaussian formula
written here from the model's parameters."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy.stats import multivariate_normal
from typer.testing import CliRunner

from gmm import full_covariances
from segment.cli import app
from segment.fill import features, fill_image, read_raster

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def gradient(H=40, W=50, seed=0):
    """Float RGB in data units: R and B follow the position, G = 100 - R (a channel the
    others predict), plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    R = 100.0 * xx / W
    img = np.stack([R, 100.0 - R, 50.0 * yy / H], axis=-1)
    return (img + rng.normal(0, 0.5, img.shape)).astype(np.float32)


def reference_conditional_mean(model, x):
    """Σ_k p(k | x_o) (μ_km + Σ_kmo Σ_koo⁻¹ (x_o − μ_ko)) of one row, by the formula."""
    K, D = model.means_.shape
    covs = full_covariances(model.covariance_type, model.covariances_, K, D)
    o, m = ~np.isnan(x), np.isnan(x)
    logp = np.array(
        [
            np.log(model.weights_[k])
            + multivariate_normal(model.means_[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
            for k in range(K)
        ]
    )
    r = np.exp(logp - logp.max())
    r /= r.sum()
    cond = [
        model.means_[k][m]
        + covs[k][np.ix_(m, o)] @ np.linalg.solve(covs[k][np.ix_(o, o)], x[o] - model.means_[k][o])
        for k in range(K)
    ]
    return r @ np.array(cond)


def test_float_tiff_with_nan_channels_is_filled_by_the_conditional_mean(tmp_path):
    img = gradient()
    holes = img.copy()
    holes[5:10, 5:15, 1] = np.nan  # G missing: the others predict it
    holes[20:25, 30:40, :] = np.nan  # nothing: only the position says something
    src = tmp_path / "dem.tif"
    tifffile.imwrite(src, holes, photometric="rgb")
    raster = read_raster(src)
    assert raster.dtype == np.float32 and raster.values.shape == (40, 50, 3)
    assert np.isnan(raster.values).sum() == 50 + 150
    filled, info = fill_image(raster, k=6, xy=1.0, seed=0)
    assert info["n_filled"] == 100 and info["n_values"] == 200
    observed = ~np.isnan(holes)
    assert np.array_equal(filled[observed], holes[observed].astype(np.float64))
    assert not np.isnan(filled).any()
    # G from R and B: close to the truth (G = 100 - R), and exactly the formula.
    np.testing.assert_allclose(filled[5:10, 5:15, 1], img[5:10, 5:15, 1], atol=3.0)
    model = info["model"]
    lo = np.nanmin(holes.reshape(-1, 3), axis=0).astype(np.float64)
    hi = np.nanmax(holes.reshape(-1, 3), axis=0).astype(np.float64)
    unit = ((holes - lo) / (hi - lo)).astype(np.float32)
    X = features(unit, np.float32(1.0))
    for i in (5 * 50 + 5, 7 * 50 + 12, 22 * 50 + 33):
        row, col = divmod(i, 50)
        ref = reference_conditional_mean(model, X[i].astype(np.float64))
        m = np.isnan(X[i][:3])
        expected = lo[m] + np.clip(ref[: m.sum()], 0, 1) * (hi - lo)[m]
        np.testing.assert_allclose(filled[row, col][m], expected, rtol=1e-5, atol=1e-4)


def test_cli_fill_mask_png(tmp_path):
    rng = np.random.default_rng(1)
    arr = np.zeros((30, 36, 3), np.uint8)
    arr[:, :18] = (200, 40, 40)
    arr[:, 18:] = (40, 60, 210)
    arr = np.clip(arr + rng.normal(0, 3, arr.shape), 0, 255).astype(np.uint8)
    src = tmp_path / "two.png"
    Image.fromarray(arr).save(src)
    mask = np.zeros((30, 36), np.uint8)
    mask[10:20, 4:10] = 255  # inside the red half
    mask[10:20, 26:32] = 255  # inside the blue half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "two.filled.png"
    r = run("fill", src, "--mask", tmp_path / "mask.png", "-o", out, "-k", "4", "--json")
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(out))
    keep = mask == 0
    assert np.array_equal(got[keep], arr[keep])
    # In-painting from the position: each hole takes its half's colour.
    assert np.abs(got[10:20, 4:10].astype(int) - (200, 40, 40)).max() < 20
    assert np.abs(got[10:20, 26:32].astype(int) - (40, 60, 210)).max() < 20
    assert '"filled_pixels": 120' in r.output


def test_transparent_pixels_are_filled(tmp_path):
    arr = np.full((20, 20, 4), 255, np.uint8)
    arr[:, :, :3] = (10, 120, 30)
    arr[5:8, 5:8, 3] = 0
    arr[5:8, 5:8, :3] = 0  # what a transparent pixel stores is not image
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    r = run("fill", tmp_path / "a.png", "-o", tmp_path / "b.png", "-k", "1", "--quiet")
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(tmp_path / "b.png"))
    assert got.shape == (20, 20, 3)
    assert np.abs(got[5:8, 5:8].astype(int) - (10, 120, 30)).max() <= 1


def test_sixteen_bit_grey_tiff_keeps_its_type(tmp_path):
    rng = np.random.default_rng(2)
    arr = (30000 + rng.normal(0, 50, (16, 16))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", arr)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:6, 4:6] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    r = run("fill", tmp_path / "g.tif", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.tif")
    assert r.exit_code == 0, r.output
    got = tifffile.imread(tmp_path / "o.tif")
    assert got.dtype == np.uint16 and got.shape == (16, 16)
    assert np.array_equal(got[mask == 0], arr[mask == 0])
    assert abs(int(got[4:6, 4:6].mean()) - 30000) < 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-o", "{tmp}/x.jpg"), "must be a .png or .tif"),
        (("-o", "{tmp}/in.tif"), "is an input"),
        (("-o", "{tmp}/exists.png"), "already exists; pass --overwrite"),
        (("-o", "{tmp}/o.png", "--mask", "{tmp}/small.png"), "the mask is 3x3 pixels"),
        (("-o", "{tmp}/o.png", "-c", "auto"), "auto is not offered"),
    ],
)
def test_errors_are_one_line(tmp_path, extra, message):
    tifffile.imwrite(tmp_path / "in.tif", gradient(8, 8), photometric="rgb")
    (tmp_path / "exists.png").write_bytes(b"keep")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "small.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in extra]
    r = runner.invoke(app, ["fill", str(tmp_path / "in.tif"), *args])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "exists.png").read_bytes() == b"keep"


def test_nothing_observed_is_an_error(tmp_path):
    tifffile.imwrite(tmp_path / "nan.tif", np.full((4, 4), np.nan, np.float32))
    r = runner.invoke(app, ["fill", str(tmp_path / "nan.tif"), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 1 and "no pixel holds a value" in r.output
    assert not (tmp_path / "o.tif").exists()
