"""The histogram quantiser of ``segment quantize``: exact nearest-colour mapping against a
brute-force reference, weighted fits equal to repeated ones, and the pngquant-style command
line (several inputs, --quality MIN-MAX and its exit status, --skip-if-larger, --palette
order, metadata, determinism)."""

import io
import itertools
import json

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from segment.cli.app import app
from segment.colorkeys import color_keys, keys_to_rgb
from segment.quantize.diffusion import adaptive_dither, floyd_steinberg
from segment.quantize.histfit import lloyd, split_centres
from segment.quantize.histogram import binned, count_colours, map_pixels, nearest_colour
from segment.quantize.quantizer import (
    Histogram,
    parse_quality,
    posterize_palette,
    quantize_pixels,
)

runner = CliRunner()


def brute_nearest(points, palette):
    d = ((points[:, None, :].astype(np.float64) - palette[None].astype(np.float64)) ** 2).sum(2)
    return np.argmin(d, axis=1)


def photo_like(shape=(60, 80), seed=0):
    """Smooth gradients plus noise: many distinct colours, like a photo."""
    rng = np.random.default_rng(seed)
    H, W = shape
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255 / W, y * 255 / H, (x + y) * 127 / (H + W) + 60], axis=-1)
    return np.clip(base + rng.normal(0, 12, (H, W, 3)), 0, 255).astype(np.uint8)


def save(path, arr, **params):
    Image.fromarray(arr).save(path, **params)
    return path


@pytest.mark.parametrize("P", [1, 5, 24, 40, 256])
@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_nearest_colour_equals_brute_force(P, kind):
    rng = np.random.default_rng(P)
    palette = rng.integers(0, 256, (P, 3)).astype(np.uint8)
    if P > 3:
        palette[P // 2] = palette[1]  # a duplicate: ties go to the lower index
    n = 20_000
    if kind == "uint8":
        pts = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        pts[:50] = palette[rng.integers(0, P, 50)]
    else:
        pts = rng.uniform(0, 255, (n, 3))
    got = nearest_colour(pts, palette)
    ref = brute_nearest(pts, palette)
    if kind == "uint8":  # exact arithmetic: the very same indices
        np.testing.assert_array_equal(got, ref)
    else:
        dg = ((pts - palette[got]) ** 2).sum(1)
        dr = ((pts - palette[ref]) ** 2).sum(1)
        np.testing.assert_allclose(dg, dr, rtol=1e-5, atol=1e-3)


def test_map_pixels_equals_per_pixel_nearest():
    img = photo_like()
    palette = np.random.default_rng(1).integers(0, 256, (200, 3)).astype(np.uint8)
    keys_image = color_keys(img)
    keys, counts = count_colours(keys_image.ravel())
    assert counts.sum() == img.shape[0] * img.shape[1]
    np.testing.assert_array_equal(
        keys_to_rgb(keys, np.uint8), np.unique(img.reshape(-1, 3), axis=0)
    )
    idx = map_pixels(
        keys_image, keys, nearest_colour(keys_to_rgb(keys, np.float32), palette).astype(np.uint8)
    )
    np.testing.assert_array_equal(idx.ravel(), brute_nearest(img.reshape(-1, 3), palette))


def test_weighted_fit_equals_repeated_rows():
    rng = np.random.default_rng(3)
    rows = rng.uniform(0, 255, (300, 3))
    w = rng.integers(1, 5, 300)
    rep = np.repeat(rows, w, axis=0)
    a = split_centres(rows, w.astype(float), 12)
    b = split_centres(rep, np.ones(len(rep)), 12)
    np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-9)
    ca, sa = lloyd(rows, w.astype(float), a, max_iter=10, tol=0)
    cb, sb = lloyd(rep, np.ones(len(rep)), a, max_iter=10, tol=0)
    np.testing.assert_allclose(ca, cb, atol=1e-9)
    assert sa == pytest.approx(sb, rel=1e-12)


def test_histogram_fit_equals_fit_on_all_pixels():
    img = photo_like()
    hist = Histogram.of(img)
    rows, w = binned(hist.keys, hist.counts, 0)
    pixels = img.reshape(-1, 3).astype(np.float64)
    a = split_centres(rows, w, 8)
    b = split_centres(pixels, np.ones(len(pixels)), 8)
    np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-9)
    ca, _ = lloyd(rows, w, a, max_iter=5, tol=0)
    cb, _ = lloyd(pixels, np.ones(len(pixels)), a, max_iter=5, tol=0)
    np.testing.assert_allclose(ca, cb, atol=1e-9)
    # Binned cells keep the total weight and the mean colour.
    r2, w2 = binned(hist.keys, hist.counts, 3)
    assert w2.sum() == len(pixels)
    np.testing.assert_allclose(w2 @ r2 / w2.sum(), pixels.mean(0))


def test_lloyd_never_increases_the_error_and_psnr_is_exact():
    img = photo_like(seed=5)
    idx, pal, info = quantize_pixels(img, k=16)
    q = pal[idx].astype(np.float64)
    mse = ((img - q) ** 2).mean()
    assert info["psnr_db"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
    rows, w = binned(*count_colours(color_keys(img).ravel()), 0)
    c = split_centres(rows, w, 16)
    errs = [lloyd(rows, w, c, max_iter=i, tol=0)[1] for i in range(5)]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(errs))


def test_exact_polish_of_small_palettes_lowers_the_error(monkeypatch):
    """k <= 32: the Lloyd iterations on the exact colours after the fit on coarse cells
    lower the exact squared error (against the same fit without them)."""
    import segment.quantize.quantizer as quantizer
    from segment.quantize.histfit import SPEEDS

    hist = Histogram.of(photo_like(shape=(90, 120), seed=7))
    polished = quantizer.fit_palette(hist, 16)
    assert SPEEDS[4][3] > 0
    monkeypatch.setitem(SPEEDS, 4, (*SPEEDS[4][:3], 0))
    plain = quantizer.fit_palette(hist, 16)
    assert hist.sse(polished)[0] < hist.sse(plain)[0]
    # --max-iter bounds the polish too: none at all with 0.
    monkeypatch.undo()
    none = quantizer.fit_palette(hist, 16, max_iter=0)
    assert hist.sse(none)[0] > hist.sse(polished)[0]


def test_compress_level_by_speed_and_colours():
    from segment.quantize.files import COMPRESS_LEVEL, compress_level

    idx = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)
    pal = np.random.default_rng(1).integers(0, 256, (256, 3)).astype(np.uint8)
    assert compress_level(4, 256) == 3 and compress_level(4, 128) == COMPRESS_LEVEL[4]
    assert compress_level(1, 256) == 9 and compress_level(10, 256) == 1
    from segment.quantize.files import encode_png

    # Any level gives the same pixels back.
    for level in (1, 2, 9):
        im = Image.open(io.BytesIO(encode_png(idx, pal, compress_level=level)))
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), pal[idx])


def test_quality_and_helpers():
    assert parse_quality("30-40") == (30.0, 40.0)
    assert parse_quality("35") == (None, 35.0)
    with pytest.raises(Exception, match="--quality"):
        parse_quality("-35")
    for bad in ("40-30", "x", "0-3", "nan"):
        with pytest.raises(Exception, match="--quality"):
            parse_quality(bad)
    p = posterize_palette(np.array([[0, 17, 255], [130, 131, 200]], np.uint8), 4)
    assert set(np.unique(p)) <= set(range(0, 256, 17))


def test_dithering_level_and_palette():
    img = photo_like(seed=2)
    idx, pal, _ = quantize_pixels(img, k=8)
    fs = floyd_steinberg(img, pal)
    assert fs.max() < len(pal)
    # A level so small that no pixel is smooth enough gives the nearest colours.
    np.testing.assert_array_equal(adaptive_dither(img, pal, 1e-9, nearest=idx), idx)
    flat = np.full((40, 40, 3), 100, np.uint8)
    flat[:, :, 0] = np.linspace(80, 120, 40).astype(np.uint8)[None, :]
    pal2 = np.array([[80, 100, 100], [120, 100, 100]], np.uint8)
    d = adaptive_dither(flat, pal2, 1.0)
    assert 0 < d.mean() < 1  # the gradient is dithered, not banded


def run(*args):
    return runner.invoke(app, ["quantize", *map(str, args)])


def test_several_inputs_ext_and_folder(tmp_path):
    a = save(tmp_path / "a.png", photo_like(seed=1))
    b = save(tmp_path / "b.png", photo_like(seed=2))
    r = run(a, b, "--ext", ".q8.png", "-k", 8)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.q8.png").exists() and (tmp_path / "b.q8.png").exists()
    r = run(a, b, "-o", tmp_path / "out", "-k", 8, "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 2 and (tmp_path / "out" / "a.png").exists()
    # An input is never overwritten.
    before = a.read_bytes()
    r = run(a, "--ext", ".png", "--overwrite")
    assert r.exit_code == 1 and "input" in r.stderr and a.read_bytes() == before
    r = run(a, b, "-o", tmp_path / "one.png")
    assert r.exit_code == 1 and "folder" in r.stderr


def test_quality_min_refused_with_status_99_and_nothing_written(tmp_path):
    src = save(tmp_path / "p.png", photo_like(seed=4))
    dst = tmp_path / "q.png"
    r = run(src, "-o", dst, "-k", 2, "--quality", "60-70")
    assert r.exit_code == 99, r.output
    assert not dst.exists() and "quality too low" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run(src, "-o", dst, "--quality", "10-20", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    reached = [t["k"] for t in s["search"] if t["reached"]]
    assert s["k"] == min(reached) and s["psnr_db"] >= 20
    # A MAX alone that is not reached: the largest palette is written, with a note.
    r = run(src, "-o", tmp_path / "q2.png", "-k", 2, "--quality", "60")
    assert r.exit_code == 0 and "not reached" in r.stderr


def test_skip_if_larger(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    src = tmp_path / "n.jpg"
    Image.fromarray(noise).save(src, quality=5)
    dst = tmp_path / "n.png"
    r = run(src, "-o", dst, "-k", 256, "--skip-if-larger")
    assert r.exit_code == 98, r.output
    assert not dst.exists()
    assert run(src, "-o", dst, "-k", 256).exit_code == 0 and dst.exists()


def test_palette_keeps_its_order(tmp_path):
    img = photo_like(seed=6)
    src = save(tmp_path / "p.png", img)
    order = np.array(
        [[250, 250, 250], [0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8
    )
    pim = Image.new("P", (5, 1))
    pim.putpalette(order.ravel().tobytes())
    pim.putdata(list(range(5)))
    pfile = tmp_path / "pal.png"
    pim.save(pfile)
    dst = tmp_path / "q.png"
    r = run(src, "-o", dst, "--palette", pfile)
    assert r.exit_code == 0, r.output
    out = Image.open(dst)
    got = np.array(out.getpalette("RGB"), np.uint8).reshape(-1, 3)[:5]
    np.testing.assert_array_equal(got, order)
    np.testing.assert_array_equal(np.asarray(out).ravel(), brute_nearest(img.reshape(-1, 3), order))
    # The colours of an RGB image, in order of first appearance, work too.
    rgb = save(tmp_path / "pal_rgb.png", order[None, [2, 0, 2, 1]])
    r = run(src, "-o", tmp_path / "q2.png", "--palette", rgb)
    assert r.exit_code == 0, r.output
    got = np.array(Image.open(tmp_path / "q2.png").getpalette("RGB"), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(got[:3], order[[2, 0, 1]])


def test_metadata_copied_or_stripped(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010E] = "a description"  # ImageDescription
    src = save(
        tmp_path / "m.png", photo_like(), icc_profile=icc, dpi=(300, 300), exif=exif.tobytes()
    )
    r = run(src, "-o", tmp_path / "kept.png", "-k", 8)
    assert r.exit_code == 0, r.output
    kept = Image.open(tmp_path / "kept.png")
    assert kept.info.get("icc_profile") == icc
    assert kept.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert kept.getexif().get(0x010E) == "a description"
    r = run(src, "-o", tmp_path / "bare.png", "-k", 8, "--strip")
    bare = Image.open(tmp_path / "bare.png")
    assert "icc_profile" not in bare.info and "dpi" not in bare.info
    assert not len(bare.getexif())


def test_same_options_same_bytes(tmp_path):
    src = save(tmp_path / "p.png", photo_like(seed=8))
    for name in ("a.png", "b.png"):
        assert run(src, "-o", tmp_path / name, "-k", 32, "--dither", 0.5).exit_code == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_transparency_and_posterize(tmp_path):
    img = photo_like(seed=9)
    alpha = np.full(img.shape[:2], 255, np.uint8)
    alpha[:10] = 0
    src = tmp_path / "t.png"
    Image.fromarray(np.dstack([img, alpha])).save(src)
    dst = tmp_path / "q.png"
    r = run(src, "-o", dst, "-k", 256, "--posterize", 2)
    assert r.exit_code == 0, r.output
    out = Image.open(dst)
    rgba = np.asarray(out.convert("RGBA"))
    assert (rgba[:10, :, 3] == 0).all() and (rgba[10:, :, 3] == 255).all()
    assert set(np.unique(rgba[10:, :, :3])) <= set(np.rint(np.arange(64) * 255 / 63))


def test_png_bytes_roundtrip():
    from segment.quantize.files import encode_png

    idx = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    pal = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    im = Image.open(io.BytesIO(encode_png(idx, pal)))
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), pal[idx])


def test_uniform_subset_is_uniform_sorted_and_distinct():
    from segment.features import _uniform_subset

    for n, m in ((10, 10), (1000, 10), (5000, 4000)):
        idx = _uniform_subset(n, m, np.random.default_rng(n))
        assert len(idx) == m and np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < n
    hits = np.zeros(10)
    for s in range(3000):
        hits[_uniform_subset(10, 3, np.random.default_rng(s))] += 1
    # Each index is chosen with probability 3/10: 900 of 3000, sd about 25.
    assert np.all(np.abs(hits - 900) < 125)


def test_local_std_equals_the_window_deviation():
    from segment.quantize.diffusion import local_std

    a = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    y = a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    p = np.pad(y, 1, mode="edge")
    ref = np.array([[p[i : i + 3, j : j + 3].std() for j in range(9)] for i in range(7)])
    np.testing.assert_allclose(local_std(a), ref, atol=1e-3)


def test_lab_space_keeps_the_mixture_palette(tmp_path):
    src = save(tmp_path / "p.png", photo_like(seed=10))
    r = run(src, "--space", "lab", "-k", 4, "-o", tmp_path / "lab.png", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["k"] == 4 and (tmp_path / "lab.png").exists()
    r = run(src, src, "--space", "lab", "-o", tmp_path / "d")
    assert r.exit_code == 1 and "one input" in r.stderr


def test_entry_point_builds_only_the_command_named(tmp_path, capsys):
    from segment.cli import main

    src = save(tmp_path / "p.png", photo_like(seed=11))
    with pytest.raises(SystemExit) as exit_:
        main(["quantize", str(src), "-k", "4", "-o", str(tmp_path / "q.png"), "-q"])
    assert exit_.value.code == 0 and (tmp_path / "q.png").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["quantize", "--bogus"])
    assert exit_.value.code == 2
    assert "see 'segment quantize --help'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["nonsense"])
    assert exit_.value.code == 2 and "No such command" in capsys.readouterr().err
