"""Colour quantisation (segment.quantize): nearest-colour mapping, Floyd–Steinberg dithering,
quality figures against scikit-image, the palette polish, and the search for the smallest k
that reaches a target."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from segment.cli import app
from segment.errors import SegmentError
from segment.features import pixel_data
from segment.imageio import load_image
from segment.metrics import image_figures, row_figures
from segment.quantize.mapping import NearestColour, PaletteImage, dither_indices, nearest_palette
from segment.quantize.palette import fit_palette, polish_palette
from segment.quantize.run import quantize_file_mixture as quantize_file
from segment.quantize.search import search_k
from segment.ssim import masked_ssim_map

runner = CliRunner()


def blocks(path, colours, *, size=8, noise=0.0, seed=0, alpha=False):
    """Flat colour squares side by side (one per colour), optionally with noise."""
    rng = np.random.default_rng(seed)
    colours = np.asarray(colours, dtype=np.float64)
    img = np.repeat(np.repeat(colours[None, :, :], size, axis=0), size, axis=1)
    img = np.tile(img, (2, 1, 1))
    img = np.clip(np.rint(img + rng.normal(0, noise, img.shape)), 0, 255).astype(np.uint8)
    if alpha:
        a = np.full(img.shape[:2], 255, np.uint8)
        a[:3] = 0
        Image.fromarray(np.dstack([img, a])).save(path)
    else:
        Image.fromarray(img).save(path)
    return path


def rgb_of(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def psnr_of(a, b):
    return 10 * np.log10(1 / ((a - b) ** 2).mean())


# -- nearest colour -------------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 5, 33, 256])
def test_nearest_colour_is_exact(P):
    rng = np.random.default_rng(P)
    pal = rng.random((P, 3))
    v = rng.random((20000, 3))
    v[:500] = pal[rng.integers(0, P, 500)]  # points on palette colours
    v[500:600] = np.round(v[500:600] * 32) / 32  # points on cell boundaries
    near = NearestColour(pal)
    assert (near.table is not None) == (P > 32)
    d = ((v[:, None, :] - pal[None]) ** 2).sum(axis=2)
    got = near(v)
    np.testing.assert_allclose(d[np.arange(len(v)), got], d.min(axis=1), atol=1e-12)
    pal8 = np.rint(pal * 255).astype(np.uint8)
    idx = nearest_palette(v, pal8)
    d8 = ((v[:, None, :] - pal8[None] / 255.0) ** 2).sum(axis=2)
    np.testing.assert_allclose(d8[np.arange(len(v)), idx], d8.min(axis=1), atol=1e-12)


# -- dithering -------------------------------------------------------------------------------


def sequential_floyd_steinberg(pixels, palette, visible=None):
    """Raster-order reference: one pixel at a time."""
    H, W = pixels.shape[:2]
    scale = {np.uint8: 255.0, np.uint16: 65535.0}.get(pixels.dtype.type, 1.0)
    img = pixels.astype(np.float64) / scale
    pal = palette.astype(np.float64) / 255.0
    near = NearestColour(pal, H * W)
    err = np.zeros((H + 1, W + 2, 3))  # column x + 1 holds pixel x
    out = np.zeros((H, W), dtype=np.intp)
    for y in range(H):
        for x in range(W):
            v = np.clip(img[y, x] + err[y, x + 1], 0.0, 1.0)
            i = int(near(v[None, :])[0])
            out[y, x] = i
            e = v - pal[i] if visible is None or visible[y, x] else np.zeros(3)
            err[y, x + 2] += 7 / 16 * e
            err[y + 1, x] += 3 / 16 * e
            err[y + 1, x + 1] += 5 / 16 * e
            err[y + 1, x + 2] += 1 / 16 * e
    return out


@pytest.mark.parametrize(
    ("shape", "P", "dtype"),
    [
        ((1, 1), 3, np.uint8),
        ((1, 9), 4, np.uint8),
        ((9, 1), 4, np.uint8),
        ((7, 12), 6, np.uint16),
        ((12, 7), 40, np.float32),
        ((16, 21), 200, np.uint8),
    ],
)
def test_dithering_is_sequential_floyd_steinberg(shape, P, dtype):
    rng = np.random.default_rng(P)
    top = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1)
    pixels = (rng.random((*shape, 3)) * top).astype(dtype)
    palette = rng.integers(0, 256, (P, 3)).astype(np.uint8)
    visible = rng.random(shape) > 0.25
    for vis in (None, visible):
        got = dither_indices(pixels, palette, vis)
        assert got.dtype == np.uint8 and got.shape == shape
        np.testing.assert_array_equal(got, sequential_floyd_steinberg(pixels, palette, vis))


def gradient(path=None):
    x = np.linspace(0, 1, 256)
    img = np.stack([x, 0.3 + 0.4 * x, 1 - 0.8 * x], axis=-1)
    img = np.rint(np.repeat(img[None], 32, axis=0) * 255).astype(np.uint8)
    if path is not None:
        Image.fromarray(img).save(path)
    return img


def test_dithering_reduces_banding_on_a_gradient():
    img = gradient()
    palette = np.rint(np.array([img[0, 0], img[0, 85], img[0, 170], img[0, 255]])).astype(np.uint8)
    plain = palette[nearest_palette(img.reshape(-1, 3) / 255.0, palette)].reshape(img.shape)
    dithered = palette[dither_indices(img, palette)]
    ref = img / 255.0

    def banding(result):  # error of what the eye sees: the low-passed image
        blur = ndimage.gaussian_filter(result / 255.0, sigma=(2, 2, 0))
        return np.abs(blur - ref)[4:-4, 4:-4].mean()

    assert banding(dithered) < 0.5 * banding(plain)
    # The plain mapping has a higher PSNR: dithering trades pixel error for smoothness.
    assert psnr_of(ref, plain / 255) > psnr_of(ref, dithered / 255)


def test_dithering_keeps_the_palette(tmp_path):
    src = tmp_path / "g.png"
    gradient(src)
    plain = quantize_file(src, tmp_path / "p.png", k=5)
    dith = quantize_file(src, tmp_path / "d.png", k=5, dither=True)
    assert dith["dither"] and not plain["dither"]
    pal_plain = {tuple(c) for c in rgb_of(tmp_path / "p.png").reshape(-1, 3)}
    used = {tuple(c) for c in rgb_of(tmp_path / "d.png").reshape(-1, 3)}
    assert used <= pal_plain  # same fitted palette, every dithered colour from it
    assert len(used) == dith["colours_used"] <= 5
    assert dith["psnr_db"] == pytest.approx(psnr_of(rgb_of(src), rgb_of(tmp_path / "d.png")))


# -- quality figures -------------------------------------------------------------------------


def test_image_figures_match_scikit_image():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (23, 31, 3)).astype(np.uint8)
    res = np.clip(orig.astype(int) + rng.integers(-20, 21, orig.shape), 0, 255).astype(np.uint8)
    o, r = orig / 255.0, res / 255.0
    expected_de = deltaE_ciede2000(rgb2lab(o), rgb2lab(r), channel_axis=-1).mean()
    for strip in (4, 5, 256):  # strips borrow rows: the same figures for any strip height
        f = image_figures(orig, res, strip_rows=strip)
        assert f["psnr_db"] == pytest.approx(peak_signal_noise_ratio(o, r, data_range=1.0))
        assert f["ssim"] == pytest.approx(
            structural_similarity(o, r, channel_axis=-1, data_range=1.0), rel=1e-10
        )
        assert f["delta_e"] == pytest.approx(expected_de, rel=1e-10)
    # Only the visible pixels count; SSIM averages the map of windows of visible pixels
    # (tests/segment/test_ssim.py checks it against the formula) over them, whole-image.
    visible = rng.random(orig.shape[:2]) > 0.3
    f = image_figures(orig, res, visible, strip_rows=6)
    S, defined = masked_ssim_map(o, r, visible)
    inner = visible & defined
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    assert f["ssim"] == pytest.approx(S[inner].mean(), rel=1e-10)
    assert f["psnr_db"] == pytest.approx(psnr_of(o[visible], r[visible]))
    assert f["delta_e"] == pytest.approx(
        deltaE_ciede2000(rgb2lab(o), rgb2lab(r), channel_axis=-1)[visible].mean()
    )
    assert image_figures(orig[:5, :5], res[:5, :5])["ssim"] is None  # smaller than the window


def test_palette_images_are_judged_by_colour_pairs_with_the_same_figures():
    rng = np.random.default_rng(4)
    orig = rng.integers(0, 256, (19, 26, 3)).astype(np.uint8)
    palette = rng.integers(0, 256, (7, 3)).astype(np.uint8)
    indices = dither_indices(orig, palette)
    visible = rng.random(orig.shape[:2]) > 0.2
    for vis in (None, visible):
        pairs = image_figures(orig, PaletteImage(indices, palette), vis, strip_rows=4)
        pixels = image_figures(orig, palette[indices], vis, strip_rows=4)
        for key in ("psnr_db", "ssim", "delta_e"):
            assert pairs[key] == pytest.approx(pixels[key], rel=1e-10), key


def test_row_figures_with_counts_equal_pixel_figures():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    counts = rng.integers(1, 5, 50)
    approx = np.clip(rows.astype(int) + rng.integers(-9, 10, rows.shape), 0, 255).astype(np.uint8)
    f = row_figures(rows / 255.0, counts, approx)
    px, pa = np.repeat(rows, counts, axis=0)[None], np.repeat(approx, counts, axis=0)[None]
    g = image_figures(px, pa, ssim=False)
    assert f["psnr_db"] == pytest.approx(g["psnr_db"])
    assert f["delta_e"] == pytest.approx(g["delta_e"])
    assert PaletteImage(np.array([[1, 0]]), rows[:2])[0:1].tolist() == [
        [rows[1].tolist(), rows[0].tolist()]
    ]


# -- palette ---------------------------------------------------------------------------------


def test_polish_never_increases_the_squared_error():
    rng = np.random.default_rng(2)
    x = rng.random((3000, 3)) ** 2
    w = rng.integers(1, 10, 3000).astype(float)
    start = rng.random((12, 3))

    def sse(p):
        return float(w @ ((x - p[nearest_palette(x, np.rint(p * 255))]) ** 2).sum(axis=1))

    def sse01(p):
        d = ((x[:, None] - p[None]) ** 2).sum(axis=2)
        return float(w @ d.min(axis=1))

    errors = [sse01(start)]
    p = start
    for _ in range(4):
        p = polish_palette(x, w, p, max_iter=1)
        errors.append(sse01(p))
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(errors))
    final = polish_palette(x, w, start)
    assert sse01(final) <= errors[-1] + 1e-9
    # A weighted sample of the rows (large inputs) still lowers the error.
    assert sse01(polish_palette(x, w, start, max_rows=500)) < errors[0]
    assert sse(final) < sse(start)


def test_palette_polish_beats_the_mixture_means(tmp_path):
    src = blocks(
        tmp_path / "b.png",
        [(200, 40, 40), (40, 160, 60), (50, 60, 210), (240, 240, 0)],
        noise=25,
        size=12,
    )
    data = pixel_data(load_image(src))
    raw, polished = fit_palette(data, 3, lloyd=False), fit_palette(data, 3)

    def psnr(fit):
        return row_figures(
            data.rgb, data.weight, fit.palette[nearest_palette(data.rgb, fit.palette)]
        )

    assert psnr(polished)["psnr_db"] >= psnr(raw)["psnr_db"]
    few = fit_palette(data, 10_000)  # more components than colours: the colours themselves
    assert few.model is None and len(few.palette) == len(data.X)


# -- the search for the smallest k -------------------------------------------------------


def test_search_returns_the_smallest_k_tried_that_meets():
    rng = np.random.default_rng(3)
    for _ in range(200):
        k_max = int(rng.integers(1, 300))
        values = np.cumsum(rng.normal(1.0, 2.0, k_max + 1))  # noisy, roughly increasing
        target = float(rng.uniform(values.min(), values.max() + 5))
        best, tried = search_k(lambda k: values[k], k_max, lambda v: v >= target)  # noqa: B023
        met = [k for k, _, ok in tried if ok]
        assert best == (min(met) if met else None)
        assert all(ok == (values[k] >= target) for k, _, ok in tried)
        assert len({k for k, _, _ in tried}) == len(tried) <= 2 * np.log2(k_max) + 2
        if best is None:
            assert tried[-1][0] == k_max
        mono = np.maximum.accumulate(values)
        best_m, _ = search_k(lambda k: mono[k], k_max, lambda v: v >= target)  # noqa: B023
        exhaustive = [k for k in range(1, k_max + 1) if mono[k] >= target]
        assert best_m == (exhaustive[0] if exhaustive else None)


def test_quality_target_brute_force_on_a_tiny_image(tmp_path):
    colours = [
        (250, 10, 10),
        (10, 250, 10),
        (10, 10, 250),
        (240, 240, 20),
        (20, 240, 240),
        (128, 128, 128),
        (0, 0, 0),
    ]
    src = blocks(tmp_path / "seven.png", colours, size=3)
    # Brute force: every k from 1 to 8 on its own.
    psnr = {k: quantize_file(src, tmp_path / f"k{k}.png", k=k)["psnr_db"] for k in range(1, 9)}
    assert [psnr[k] >= 60 for k in range(1, 9)] == [False] * 6 + [True, True]
    s = quantize_file(src, tmp_path / "q.png", quality=60)
    assert s["k"] == 7 and s["target"] == {"psnr_db": 60.0, "delta_e": None, "reached": True}
    assert s["psnr_db"] == float("inf")
    tried = {t["k"]: t for t in s["search"]}
    assert all(not t["reached"] for k, t in tried.items() if k < 7)


def test_quality_and_delta_e_targets_are_reached_by_the_smallest_k_tried(tmp_path):
    src = blocks(
        tmp_path / "n.png", [(200, 40, 40), (40, 160, 60), (50, 60, 210)], noise=12, size=10
    )
    for target in ({"quality": 28.0}, {"max_delta_e": 4.0}, {"quality": 27.0, "max_delta_e": 5}):
        out = tmp_path / "t.png"
        s = quantize_file(src, out, overwrite=True, **target)
        ok = [t["k"] for t in s["search"] if t["reached"]]
        assert s["target"]["reached"] and s["k"] == min(ok)
        assert all(not t["reached"] for t in s["search"] if t["k"] < s["k"])
        actual = psnr_of(rgb_of(src), rgb_of(out))
        assert actual == pytest.approx(s["psnr_db"])
        if "quality" in target:
            assert actual >= target["quality"]
        if "max_delta_e" in target:
            assert s["delta_e"] <= target["max_delta_e"]
        by_k = {t["k"]: t for t in s["search"]}
        assert by_k[s["k"]]["psnr_db"] == pytest.approx(s["psnr_db"])


@pytest.mark.parametrize("dither", [False, True])
def test_unreachable_target_is_reported(tmp_path, dither):
    src = blocks(tmp_path / "n.png", [(200, 40, 40), (40, 160, 60)], noise=30, size=10)
    s = quantize_file(src, tmp_path / "u.png", quality=80, k=8, dither=dither)
    assert s["target"]["reached"] is False and s["k"] == 8
    assert [t["k"] for t in s["search"]] == [1, 2, 4, 8]
    assert any("target not reached" in n for n in s["notes"])
    # The largest palette is written, with the figures the search measured for it.
    assert s["psnr_db"] == pytest.approx(s["search"][-1]["psnr_db"])
    assert s["psnr_db"] == pytest.approx(psnr_of(rgb_of(src), rgb_of(tmp_path / "u.png")))


def test_dithered_search_writes_the_result_it_measured(tmp_path):
    src = tmp_path / "g.png"
    gradient(src)
    s = quantize_file(src, tmp_path / "d.png", max_delta_e=3.0, dither=True)
    assert s["target"]["reached"] and s["delta_e"] <= 3.0
    by_k = {t["k"]: t for t in s["search"]}
    assert by_k[s["k"]]["psnr_db"] == pytest.approx(s["psnr_db"])
    assert s["psnr_db"] == pytest.approx(psnr_of(rgb_of(src), rgb_of(tmp_path / "d.png")))


# -- files -----------------------------------------------------------------------------------


def test_transparent_pixels_stay_transparent_with_a_reserved_entry(tmp_path):
    src = blocks(
        tmp_path / "a.png", [(200, 40, 40), (40, 160, 60), (50, 60, 210)], noise=40, alpha=True
    )
    s = quantize_file(src, tmp_path / "q.png", k=256)
    assert any("transparency takes one palette entry" in n for n in s["notes"])
    im = Image.open(tmp_path / "q.png")
    assert im.mode == "P"
    t = im.info["transparency"]
    idx = np.asarray(im)
    assert (idx[:3] == t).all() and (idx[3:] != t).all()
    s = quantize_file(src, tmp_path / "d.png", k=4, dither=True)
    idx = np.asarray(Image.open(tmp_path / "d.png"))
    assert (idx[:3] == Image.open(tmp_path / "d.png").info["transparency"]).all()
    assert s["colours_used"] <= 4


def test_sixteen_bit_input(tmp_path):
    x = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(x).save(src)
    for dither in (False, True):
        s = quantize_file(src, tmp_path / f"q{dither}.png", k=4, dither=dither)
        assert s["colours_used"] <= 4 and s["psnr_db"] > 15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "between 1 and 256"),
        ({"k": 257}, "between 1 and 256"),
        ({"quality": 0}, "must be > 0"),
        ({"quality": float("nan")}, "finite"),
        ({"max_delta_e": -1}, "must be >= 0"),
    ],
)
def test_invalid_options(tmp_path, kwargs, match):
    src = blocks(tmp_path / "b.png", [(1, 2, 3)])
    with pytest.raises(SegmentError, match=match):
        quantize_file(src, tmp_path / "q.png", **kwargs)
    with pytest.raises(SegmentError, match=r"give the output a \.png name"):
        quantize_file(src, tmp_path / "q.jpg")


def test_cli_quality_and_dither(tmp_path):
    src = blocks(tmp_path / "b.png", [(200, 40, 40), (40, 160, 60), (50, 60, 210)], noise=10)
    r = runner.invoke(
        app,
        [
            "quantize",
            str(src),
            "-o",
            str(tmp_path / "q.png"),
            "--quality",
            "25",
            "--dither",
            "0.5",
            "--figures",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["dither"] == 0.5 and s["search"]
    assert s["ssim"] is not None and s["delta_e"] >= 0
    r = runner.invoke(
        app, ["quantize", str(src), "-o", str(tmp_path / "q2.png"), "--max-delta-e", "3"]
    )
    assert r.exit_code == 0 and "reached" in r.stdout and "ΔE=" in r.stdout
    for bad in ("-3", "0", "40-30", "nan"):
        r = runner.invoke(
            app, ["quantize", str(src), "-o", str(tmp_path / "q3.png"), "--quality", bad]
        )
        assert r.exit_code == 2 and "'--quality'" in r.stderr, (bad, r.output)
