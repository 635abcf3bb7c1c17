"""Window-PCA texture features (segment.texture): against a naive per-pixel computation,
the principal directions against numpy's PCA of the same windows, strips equal the whole
image, determinism, and the region method with them."""

import numpy as np
import pytest
from scipy import ndimage

from segment.mdl import region_features, rgb_features
from segment.pipeline import segment_regions
from segment.texture import fit_window_basis, window_features


def lab_image(h=37, w=45, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(0, 4, (h, w, 3))
    img[..., 0] += 50 + 20 * np.sin(xx / 1.5)  # vertical stripes on the left
    img[:, w // 2 :, 0] = 50 + 20 * np.sin(yy[:, w // 2 :] / 1.5)  # horizontal on the right
    return img.astype(np.float32)


def naive_window(img, y, x, size, scale):
    """The mean-removed window around (y, x), taps ``scale`` apart on the scale × scale box
    means, the image edge extended, as a flat (size, size, 3) vector."""
    H, W, _ = img.shape
    if scale > 1:
        img = ndimage.uniform_filter(img.astype(np.float64), (scale, scale, 1), mode="nearest")
    r = size // 2
    ys = np.clip(y + np.arange(-r, r + 1) * scale, 0, H - 1)
    xs = np.clip(x + np.arange(-r, r + 1) * scale, 0, W - 1)
    win = img[np.ix_(ys, xs)].astype(np.float64)
    return (win - win.mean(axis=(0, 1))).ravel()


@pytest.mark.parametrize("size,scale,step", [(5, 1, 1), (7, 1, 2), (3, 2, 1), (5, 3, 2)])
def test_features_match_a_naive_per_pixel_projection(size, scale, step):
    img = lab_image()
    basis = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=size, dims=3, scale=scale)
    got = window_features(img, basis, step=step)
    H, W, _ = img.shape
    ys, xs = np.arange(0, H, step), np.arange(0, W, step)
    want = np.array(
        [
            [(naive_window(img, y, x, size, scale) - basis.mean) @ basis.components for x in xs]
            for y in ys
        ]
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(want).max())


def test_basis_is_the_pca_of_the_sampled_windows():
    img = lab_image(seed=3)
    H, W, _ = img.shape
    size = 5
    basis = fit_window_basis(lambda a, b: img[a:b], (H, W), size=size, dims=4, n_windows=10**6)
    # Every window that lies inside the image, and numpy's PCA of them.
    r = size // 2
    X = np.array(
        [naive_window(img, y, x, size, 1) for y in range(r, H - r) for x in range(r, W - r)]
    )
    values, vectors = np.linalg.eigh(np.cov(X.T, bias=True))
    values, vectors = values[::-1][:4], vectors[:, ::-1][:, :4]
    np.testing.assert_allclose(basis.variances, values, rtol=1e-6)
    # Same directions up to sign; the basis fixes signs (largest entry positive).
    dots = np.abs((basis.components * vectors).sum(axis=0))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)
    big = np.argmax(np.abs(basis.components), axis=0)
    assert (basis.components[big, np.arange(4)] > 0).all()
    np.testing.assert_allclose(basis.components.T @ basis.components, np.eye(4), atol=1e-9)


def test_stripes_of_two_orientations_are_told_apart():
    img = lab_image()
    basis = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=7, dims=4)
    f = window_features(img, basis)
    left, right = f[5:-5, 5:18].reshape(-1, 4), f[5:-5, 27:-5].reshape(-1, 4)
    # The pattern's energy goes to different directions on the two sides.
    e_left, e_right = (left**2).mean(axis=0), (right**2).mean(axis=0)
    assert np.argmax(e_left) != np.argmax(e_right)


@pytest.mark.parametrize("shape", [(300, 40), (31, 29)])
def test_strips_equal_the_whole_image(shape):
    """Features made strip by strip (as region statistics ask for them) equal those of the
    whole image, on an image large enough for taps several pixels apart."""
    rng = np.random.default_rng(5)
    rgb = ndimage.uniform_filter(rng.random((*shape, 3)), (3, 3, 1)).astype(np.float32)
    rgb_calls = []

    def strip_rgb(a, b):
        rgb_calls.append((a, b))
        return rgb[a:b]

    kwargs = dict(window=5, window_dims=3, window_weight=0.7)
    features = region_features(strip_rgb, shape, **kwargs)
    whole = features(0, shape[0])
    assert whole.shape == (*shape, 6)
    np.testing.assert_allclose(whole[..., :3], rgb_features(rgb), rtol=1e-6)
    for step in (1, 3):
        parts = np.concatenate(
            [features(a, min(a + 9 * step, shape[0]), step) for a in range(0, shape[0], 9 * step)]
        )
        np.testing.assert_allclose(parts, whole[::step, ::step], rtol=1e-5, atol=1e-3)


def test_large_images_space_the_taps():
    from segment.mdl import REFERENCE_PIXELS
    from segment.texture import window_scale

    assert window_scale(REFERENCE_PIXELS, REFERENCE_PIXELS) == 1
    assert window_scale(4 * REFERENCE_PIXELS, REFERENCE_PIXELS) == 2
    assert window_scale(12_000_000, REFERENCE_PIXELS) == 9


def test_deterministic_and_input_untouched():
    img = lab_image(seed=1)
    copy = img.copy()
    a = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=5, dims=2)
    b = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=5, dims=2)
    np.testing.assert_array_equal(a.components, b.components)
    np.testing.assert_array_equal(window_features(img, a), window_features(img, b))
    np.testing.assert_array_equal(img, copy)


def test_bad_window_size_is_refused():
    img = lab_image()
    with pytest.raises(ValueError, match="odd"):
        fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=4)


def test_region_method_with_texture_features():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (200, 40, 30)
    rgb[:, 30:] = (20, 60, 190)
    rng = np.random.default_rng(0)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    settings = dict(k=4, window=5, window_dims=2, window_weight=0.5)
    out = segment_regions(rgb, **settings)
    assert len(np.unique(out)) == 2
    assert (out[:, :30] == out[0, 0]).all() and (out[:, 30:] == out[0, -1]).all()
    np.testing.assert_array_equal(out, segment_regions(rgb, **settings))


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_strips_with_their_halo_equal_the_whole_image(scale):
    img = lab_image(h=61, seed=2)
    H = img.shape[0]
    basis = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=5, dims=3, scale=scale)
    whole = window_features(img, basis)
    h = basis.halo
    parts = []
    for a in range(0, H, 8):
        b = min(H, a + 8)
        lo, hi = max(0, a - h), min(H, b + h)
        parts.append(window_features(img[lo:hi], basis, rows=slice(a - lo, b - lo)))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-3)


def test_reduced_image_is_the_block_means():
    from segment.texture import reduced_image

    rng = np.random.default_rng(4)
    rgb = rng.random((23, 31, 3)).astype(np.float32)
    small = reduced_image(lambda a, b: rgb[a:b], rgb.shape[:2], 4)
    assert small.shape == (6, 8, 3)
    padded = np.pad(rgb, ((0, 1), (0, 1), (0, 0)), mode="edge")
    for i in range(6):
        for j in range(8):
            want = padded[4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(axis=(0, 1))
            np.testing.assert_allclose(small[i, j], want, rtol=1e-5)
    np.testing.assert_array_equal(reduced_image(lambda a, b: rgb[a:b], rgb.shape[:2], 1), rgb)


def _sequential_block_mean(block):
    """A block's mean as one float32 sum in row-major order, divided in float64."""
    acc = np.float32(0.0)
    for v in block.reshape(-1):
        acc = np.float32(acc + v)
    return np.float32(np.float64(acc) / block.size)


@pytest.mark.parametrize("scale", [2, 3, 5])
def test_reduced_image_is_the_sequential_block_sum_bit_for_bit(scale):
    from segment.texture import reduced_image

    rgb = np.random.default_rng(scale).random((13, 17, 3)).astype(np.float32)
    rgb[2, 3, 1] = np.nan  # a missing channel spoils its block only
    small = reduced_image(lambda a, b: rgb[a:b], rgb.shape[:2], scale)
    h, w = -(-13 // scale), -(-17 // scale)
    padded = np.pad(rgb, ((0, h * scale - 13), (0, w * scale - 17), (0, 0)), mode="edge")
    want = np.empty((h, w, 3), np.float32)
    for i in range(h):
        for j in range(w):
            for c in range(3):
                block = padded[i * scale : (i + 1) * scale, j * scale : (j + 1) * scale, c]
                want[i, j, c] = _sequential_block_mean(block)
    np.testing.assert_array_equal(small, want)
    assert np.isnan(small[2 // scale, 3 // scale, 1]) and np.isfinite(small[..., 0]).all()


def test_reduced_image_in_strips_equals_numpy_block_means():
    """A wide image is reduced in several strips (the last one short): the same values as
    numpy's mean of the edge-padded image's blocks."""
    from segment.texture import reduced_image

    rgb = np.random.default_rng(9).random((21, 70001, 3)).astype(np.float32)
    small = reduced_image(lambda a, b: rgb[a:b], rgb.shape[:2], 8)
    padded = np.pad(rgb, ((0, 3), (0, 7), (0, 0)), mode="edge")
    want = padded.reshape(3, 8, 8751, 8, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(small, want)


def test_texture_energy_is_the_local_energy_of_the_responses():
    from segment.texture import texture_map

    img = lab_image(seed=6)
    basis = fit_window_basis(lambda a, b: img[a:b], img.shape[:2], size=5, dims=3)
    raw = window_features(img, basis)
    np.testing.assert_allclose(texture_map(img, size=5, dims=3), raw, rtol=1e-6)
    got = texture_map(img, size=5, dims=3, energy=1.5)
    want = np.sqrt(
        np.stack(
            [ndimage.gaussian_filter(raw[..., d] ** 2, 1.5, mode="nearest") for d in range(3)],
            axis=2,
        )
    )
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # Phase-free: inside a striped area the energy varies far less than the responses.
    inner = (slice(8, -8), slice(4, 14))
    assert got[inner].std(axis=(0, 1)).max() < 0.5 * raw[inner].std(axis=(0, 1)).max()


def test_large_image_features_come_from_the_block_means():
    """Above about twice the reference size the texture is computed on the image's block
    means (the same scene at the reference scale), each pixel taking its block's value; the
    features are still strip-invariant."""
    from segment.texture import reduced_image, texture_map

    rng = np.random.default_rng(8)
    shape = (600, 620)
    rgb = ndimage.uniform_filter(rng.random((*shape, 3)), (5, 5, 1)).astype(np.float32)
    kwargs = dict(window=5, window_dims=2, window_weight=0.5, window_energy=1.0)
    features = region_features(lambda a, b: rgb[a:b], shape, **kwargs)
    whole = features(0, shape[0])
    small = rgb_features(reduced_image(lambda a, b: rgb[a:b], shape, 2))
    tex = texture_map(small, size=5, dims=2, energy=1.0) * np.float32(0.5)
    np.testing.assert_allclose(whole[..., 3:], tex.repeat(2, 0).repeat(2, 1), rtol=1e-6)
    for step in (1, 4):
        parts = np.concatenate(
            [features(a, min(a + 64, shape[0]), step) for a in range(0, shape[0], 64)]
        )
        np.testing.assert_allclose(parts, whole[::step, ::step], rtol=1e-6)


def test_rgb_colour_features():
    rgb = np.random.default_rng(9).random((5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(rgb_features(rgb, "rgb"), rgb * 100, rtol=1e-6)
    f = region_features(lambda a, b: rgb[a:b], rgb.shape[:2], space="rgb")
    np.testing.assert_allclose(f(0, 5), rgb * 100, rtol=1e-6)


def test_missing_channels_do_not_spread_through_the_texture():
    """A NaN channel (no data) leaves the texture finite everywhere (the pixel's colour
    still does not vote), and the two halves are still found."""
    rng = np.random.default_rng(0)
    img = rng.random((60, 80, 3)).astype(np.float32) * 0.2
    img[:, 40:] += 0.6
    img[10:12, 10:12, 1] = np.nan
    img[30, 50, 0] = np.nan
    features = region_features(lambda a, b: img[a:b], img.shape[:2], window=7, window_dims=4)
    f = features(0, 60)
    assert np.isfinite(f[..., 3:]).all()
    assert np.isnan(f[10, 10, :3]).any() and np.isfinite(f[20, 20]).all()
    out = segment_regions(img, k=3)
    assert len(np.unique(out)) == 2
    assert (out[:, :38] == out[0, 0]).all() and (out[:, 42:] == out[0, -1]).all()


def test_fill_missing_takes_the_nearest_known_value():
    from segment.texture import fill_missing

    rng = np.random.default_rng(11)
    img = rng.random((9, 12, 2)).astype(np.float32)
    img[rng.random((9, 12)) < 0.4, 0] = np.nan
    img[:, :, 1] = np.nan  # a channel with nothing known
    copy = img.copy()
    out = fill_missing(img)
    np.testing.assert_array_equal(img, copy, strict=True)  # input untouched
    known = np.argwhere(np.isfinite(img[..., 0]))
    for y, x in np.argwhere(~np.isfinite(img[..., 0])):
        d = ((known - (y, x)) ** 2).sum(axis=1)
        nearest = known[d == d.min()]
        assert out[y, x, 0] in {img[a, b, 0] for a, b in nearest}
    finite = np.isfinite(img[..., 0])
    np.testing.assert_array_equal(out[finite, 0], img[finite, 0])
    assert (out[..., 1] == 0).all()


def test_transparent_pixels_do_not_make_texture_at_the_alpha_edge():
    """Black transparent pixels around a flat photo: the texture windows at the edge of the
    visible part see its continuation, not an edge, so no thin regions follow that edge."""
    rng = np.random.default_rng(0)
    img = np.clip(150 + rng.normal(0, 4, (120, 160, 3)), 0, 255).astype(np.uint8)
    img[:, :40] = (200, 60, 40)
    visible = np.ones((120, 160), bool)
    visible[:30] = False
    visible[:, 130:] = False
    img[~visible] = 0
    out = segment_regions(img, visible=visible)
    assert len(np.unique(out[visible])) == 2
    assert (out[~visible] == -1).all()


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("max_rows", [None, 300])
def test_data_features_read_cielab_per_distinct_colour(alpha, max_rows):
    """An 8-bit image's region features take CIELAB from its distinct colours' table: the
    values skimage's rgb2lab gives each pixel (bit for bit), invisible pixels included
    (they are not among the distinct colours), and the texture features are those
    computed from the pixels."""
    from pathlib import Path

    from skimage.color import rgb2lab

    from segment.features import pixel_data
    from segment.imageio import Image
    from segment.mdl import data_features

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (41, 57, 3), dtype=np.uint8)
    pixels[10:30, 5:40] = pixels[10:30, 5:40] // 64 * 64  # repeated colours too
    visible = None
    if alpha:
        visible = np.ones(pixels.shape[:2], bool)
        visible[:9, 20:] = False
        visible[::5, ::7] = False
    image = Image(
        pixels=pixels,
        alpha=visible,
        path=Path("x.png"),
        format="PNG",
        mode="RGBA" if alpha else "RGB",
        frame=0,
        n_frames=1,
    )
    data = pixel_data(image, space="lab", max_rows=max_rows)
    assert data.color_X is not None
    features = data_features(data)
    reference = region_features(
        data.strip_rgb,
        data.shape,
        window=7,
        window_dims=4,
        window_weight=0.5,
        window_energy=2.0,
        visible=visible,
    )
    lab = rgb2lab((pixels.astype(np.float32) / 255.0).astype(np.float64)).astype(np.float32)
    for a, b, step in ((0, 41, 1), (3, 30, 1), (0, 41, 3), (5, 38, 2)):
        got = features(a, b, step)
        assert got.shape == (len(range(a, b, step)), len(range(0, 57, step)), 7)
        np.testing.assert_array_equal(got[..., :3], lab[a:b:step, ::step])
        np.testing.assert_array_equal(got, reference(a, b, step))
