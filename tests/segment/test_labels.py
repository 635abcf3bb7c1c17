"""Spatial post-processing: smoothing the responsibilities and merging small regions."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import variation_of_information

import segment.labels as labelling
from segment import regions
from segment.features import pixel_data
from segment.fit import fit_data
from segment.imageio import Image
from segment.options import FitOptions


def noisy_regions(seed=0, shape=(90, 120), n=5, noise=30.0, alpha=False):
    """Voronoi regions of flat colours under heavy noise, and the region map (the truth)."""
    rng = np.random.default_rng(seed)
    H, W = shape
    pts = rng.random((n, 2)) * [H, W]
    yy, xx = np.mgrid[:H, :W]
    truth = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 220], [230, 220, 60], [60, 60, 60]])
    img = colours[truth % len(colours)] + rng.normal(0, noise, (H, W, 3))
    pix = np.clip(img, 0, 255).astype(np.uint8)
    visible = None
    if alpha:
        visible = np.ones((H, W), bool)
        visible[: H // 5] = False
    return Image(
        pixels=pix,
        alpha=visible,
        path=Path("noisy.png"),
        format="PNG",
        mode="RGB",
        frame=0,
        n_frames=1,
    ), truth


def fit(image, **opts):
    options = FitOptions(**{"k": 5, "xy": 0.0, "space": "rgb", "regions": 0, **opts})
    data = pixel_data(image, space=options.space, xy=options.xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_data(data, options)


def n_regions(labels, mask=None):
    total = 0
    for k in np.unique(labels if mask is None else labels[mask]):
        sel = labels == k
        if mask is not None:
            sel &= mask
        total += ndimage.label(sel)[1]
    return total


def test_smoothing_removes_speckle_and_agrees_better_with_the_truth():
    image, truth = noisy_regions()
    raw = fit(image, smooth=0.0, min_region=0).label_image()
    smooth = fit(image, smooth=2.0, min_region=0).label_image()
    assert n_regions(smooth) < n_regions(raw) / 10
    vi_raw = sum(variation_of_information(truth, raw))
    vi_smooth = sum(variation_of_information(truth, smooth))
    assert vi_smooth < 0.6 * vi_raw


def test_small_regions_are_merged_into_their_neighbour():
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 1
    labels[5:7, 3:5] = 1  # a 4-pixel island of 1 inside 0
    labels[12, 15] = 0  # a 1-pixel island of 0 inside 1
    out = regions.merge_small_regions(labels.copy(), 5, n_labels=2)
    expect = np.zeros((20, 20), np.uint8)
    expect[:, 10:] = 1
    assert np.array_equal(out, expect)
    # big enough islands stay
    assert (regions.merge_small_regions(labels.copy(), 2, n_labels=2)[5:7, 3:5] == 1).all()


def test_every_region_reaches_the_minimum_size():
    image, _ = noisy_regions(seed=3)
    seg = fit(image, smooth=0.0, min_region=30)
    labels = seg.label_image()
    for k in np.unique(labels):
        sizes = np.bincount(ndimage.label(labels == k)[0].ravel())[1:]
        assert sizes.min() >= 30


@pytest.mark.parametrize("alpha", [False, True])
def test_strips_do_not_change_the_result(alpha):
    image, _ = noisy_regions(seed=1, alpha=alpha)
    seg = fit(image, smooth=1.5, min_region=0)
    whole = labelling.smoothed_labels(seg.model, seg.data, 1.5, budget_mib=1024)
    for budget in (0.05, 0.2):  # strips of a few rows, then a few dozen
        assert labelling.strip_height(seg.data.shape, seg.k, budget, 6) < seg.data.shape[0]
        strips = labelling.smoothed_labels(seg.model, seg.data, 1.5, budget_mib=budget)
        assert np.array_equal(whole, strips)


def test_invisible_pixels_neither_vote_nor_get_a_label():
    image, _ = noisy_regions(alpha=True)
    seg = fit(image, smooth=2.0, min_region=20)
    labels = seg.label_image()
    assert (labels[~image.alpha] == 255).all()
    assert labels[image.alpha].max() < 5


def test_non_deduplicated_features_follow_the_same_path():
    image, truth = noisy_regions(seed=2)
    seg = fit(image, smooth=2.0, min_region=0, xy=0.5)
    assert not seg.data.deduplicated
    labels = seg.label_image()
    assert labels.shape == truth.shape and labels.max() < 5
    assert n_regions(labels) < 60


def test_psnr_is_that_of_the_written_labels():
    image, _ = noisy_regions(seed=4)
    seg = fit(image, smooth=2.0, min_region=10)
    labels = seg.label_image()
    q = seg.quantized_palette[labels].astype(np.float64) / 255
    ref = 10 * np.log10(1 / ((image.pixels / 255.0 - q) ** 2).mean())
    assert seg.psnr() == pytest.approx(ref, rel=1e-5)


def test_default_sigma_and_region_scale_with_the_image():
    o = FitOptions()  # regions merged by description length: half the smoothing
    assert o.smooth_sigma((321, 481)) == pytest.approx(0.5)
    assert o.smooth_sigma((3000, 4000)) == pytest.approx(5000 / 1200)
    plain = FitOptions(regions=0)
    assert plain.smooth_sigma((321, 481)) == pytest.approx(1.0)
    assert plain.smooth_sigma((3000, 4000)) == pytest.approx(5000 / 600)
    assert FitOptions(smooth=0, min_region=0).smooth_sigma((10, 10)) == 0
    assert o.min_region_pixels((3000, 4000)) == 24000  # 1/500 when regions are merged
    assert FitOptions(regions=0).min_region_pixels((3000, 4000)) == 120000


def test_soft_maps_have_the_right_ranges():
    from segment import soft

    image, _ = noisy_regions(seed=5)
    seg = fit(image, smooth=0.0, min_region=0)
    maps = soft.soft_maps(seg)
    assert maps["entropy_max"] == pytest.approx(np.log(5))
    # entropy from the model directly, per pixel, scaled the same way
    X = image.pixels.reshape(-1, 3).astype(np.float32) / 255
    r = seg.model.predict_proba(X).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(r > 0, r * np.log(r), 0).sum(axis=1)
    assert h.min() >= -1e-6 and h.max() <= np.log(5) + 1e-6
    expect = np.clip(np.rint(h / np.log(5) * 255), 0, 255).reshape(image.pixels.shape[:2])
    assert np.abs(maps["uncertainty"].astype(int) - expect).max() <= 1
    mix = (r @ seg.quantized_palette.astype(np.float64)).reshape(image.pixels.shape)
    assert np.abs(maps["soft"].astype(float) - mix).max() <= 1.0
    lo, hi = maps["loglik_range"]
    assert lo < hi
    ll = seg.model.score_samples(X).reshape(image.pixels.shape[:2])
    assert (maps["outliers"][ll <= lo] >= 254).all() and (maps["outliers"][ll >= hi] <= 1).all()


def test_overlay_draws_boundaries_only_between_segments():
    from segment import soft

    labels = np.zeros((10, 12), np.uint8)
    labels[:, 6:] = 1
    edge = soft.boundaries(labels)
    assert edge[:, 5:7].all() and not edge[:, :5].any() and not edge[:, 7:].any()


@pytest.mark.parametrize("alpha", [False, True])
def test_wide_smoothing_on_blocks_is_strip_invariant_and_close_to_full(alpha):
    image, truth = noisy_regions(seed=6, shape=(150, 170), alpha=alpha)
    seg = fit(image, smooth=0.0, min_region=0)
    sigma = 6.0  # blocks of 3 x 3
    whole = labelling.smoothed_labels(seg.model, seg.data, sigma, budget_mib=1024)
    for budget in (0.1, 0.4):
        strips = labelling.smoothed_labels(seg.model, seg.data, sigma, budget_mib=budget)
        assert np.array_equal(whole, strips)
    full = labelling._smoothed_full(seg.model, seg.data, sigma, 1024, np.uint8, 255)
    visible = np.ones(truth.shape, bool) if image.alpha is None else image.alpha
    assert (whole == full)[visible].mean() > 0.97


def test_block_factor_keeps_the_memory_of_the_default_smoothing():
    from segment.options import default_smooth

    for shape in [(3000, 4000), (4000, 6000), (1200, 1600), (321, 481)]:
        plain = default_smooth(shape, regions=False)
        region = default_smooth(shape, regions=True)
        f_plain = labelling._block_factor(plain, shape) if plain > labelling.BOX_SIGMA else 1
        f_region = labelling._block_factor(region, shape) if region > labelling.BOX_SIGMA else 1
        assert f_region == f_plain  # the same low-resolution field
        # A block mean's own spread stays within the Gaussian's.
        assert (f_region**2 - 1) / 12 <= region**2
    assert labelling._block_factor(20.0, (3000, 4000)) == 10  # wide: sigma / 2 as before


def test_blocks_as_wide_as_sigma_stay_close_to_full():
    image, _ = noisy_regions(seed=7, shape=(150, 170))
    seg = fit(image, smooth=0.0, min_region=0)
    sigma = 4.0
    blocks = labelling._smoothed_blocks(seg.model, seg.data, sigma, 4, 1024, np.uint8, 255)
    full = labelling._smoothed_full(seg.model, seg.data, sigma, 1024, np.uint8, 255)
    assert (blocks == full).mean() > 0.97


def test_interpolated_argmax_equals_brute_force():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(4, 7, 9)).astype(np.float32)
    # Areas where neighbouring blocks agree, one of them at the clamped last row and column.
    low[:, 2:5, 3:7] += 3 * np.eye(4)[:, 1, None, None]
    low[:, 5:, 7:] += 3 * np.eye(4)[:, 2, None, None]
    rows = labelling._linear(20, 0, 3, 7)
    cols = labelling._linear(26, 0, 3, 9)
    winners = labelling._block_winners(low, np.uint8)
    fast = labelling._interpolated_argmax(low, winners, rows, cols)
    (r0, r1, wr), (c0, c1, wc) = rows, cols
    wy, wx = wr[:, None], wc[None, :]
    full = (
        low[:, r0][:, :, c0] * (1 - wy) * (1 - wx)
        + low[:, r0][:, :, c1] * (1 - wy) * wx
        + low[:, r1][:, :, c0] * wy * (1 - wx)
        + low[:, r1][:, :, c1] * wy * wx
    )
    assert np.array_equal(fast, np.argmax(full, axis=0))


@pytest.mark.parametrize("shape", [(2, 12, 15), (3, 13, 17), (4, 16, 16), (9, 5)])
@pytest.mark.parametrize("f", [2, 3, 4])
def test_block_mean_equals_the_mean_of_the_edge_padded_array(shape, f):
    x = np.random.default_rng(f).normal(size=shape).astype(np.float32)
    h, w = shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(0, -h % f), (0, -w % f)]
    padded = np.pad(x, pad, mode="edge").astype(np.float64)
    blocks = padded.reshape(*shape[:-2], padded.shape[-2] // f, f, padded.shape[-1] // f, f)
    naive = blocks.mean(axis=(-3, -1))
    fast = labelling._block_mean(x, f)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("f", [2, 3, 5])
@pytest.mark.parametrize("weighted", [False, True])
def test_gathered_block_mean_equals_the_block_mean_of_the_gathered_array(f, weighted):
    rng = np.random.default_rng(f)
    table = rng.normal(size=(4, 50)).astype(np.float32)
    rows = rng.integers(0, 50, size=(13, 17))
    weight = (rng.random((13, 17)) > 0.3).astype(np.float32) if weighted else None
    x = table[:, rows]
    if weighted:
        x = x * weight
    fast = labelling._gathered_block_mean(np.ascontiguousarray(table.T), rows, f, weight)
    np.testing.assert_array_equal(fast, labelling._block_mean(x, f))


def test_loglik_measured_while_labelling_equals_a_separate_pass():
    from segment.fit import figures_of

    image, _ = noisy_regions(seed=7, shape=(120, 160))
    options = FitOptions(k=4, xy=1.0, sample=5000, smooth=1.5)
    data = pixel_data(image, **options.data_kwargs())
    assert data.sampled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = fit_data(data, options)
    figures = figures_of(seg)
    assert seg._pixel_totals["pixels"] == data.n_pixels
    separate = seg.model.score(data.pixel_source())
    assert figures["log_likelihood"] == pytest.approx(separate, rel=1e-5)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_regions_by_strips_equal_one_labelling(connectivity):
    rng = np.random.default_rng(3)
    labels = ndimage.zoom(rng.integers(0, 3, (12, 15)), 5, order=0).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.05] = 1
    visible = rng.random(labels.shape) > 0.02
    structure = ndimage.generate_binary_structure(2, connectivity)
    strips, n = regions._regions(labels, 3, visible, structure, rows=7)
    whole, m = regions._regions(labels, 3, visible, structure, rows=10_000)
    assert n == m and ((strips > 0) == visible).all()
    # the same partition (ids may differ): a one-to-one map between the two labellings
    pairs = np.unique(np.stack([strips[visible], whole[visible]]), axis=1)
    assert pairs.shape[1] == n


def _regions_label_by_label(labels, n_labels, visible, structure):
    """Reference: each label's mask labelled on its own, ids offset label after label."""
    out = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for k in range(n_labels):
        mask = labels == k
        if visible is not None:
            mask &= visible
        lab, n = ndimage.label(mask, structure=structure)
        out[mask] = lab[mask] + offset
        offset += n
    return out, offset


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("alpha", [False, True])
def test_regions_are_numbered_as_labelling_each_label_in_turn(connectivity, alpha):
    rng = np.random.default_rng(connectivity)
    labels = ndimage.zoom(rng.integers(0, 5, (30, 40)), 3, order=0).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.1] = 2
    labels[rng.random(labels.shape) < 0.01] = 7  # outside [0, n_labels): no region
    visible = rng.random(labels.shape) > 0.05 if alpha else None
    structure = ndimage.generate_binary_structure(2, connectivity)
    # one strip: the ids themselves must agree, not only the partition
    fast, n = regions._regions(labels, 5, visible, structure, rows=10_000)
    reference, m = _regions_label_by_label(labels, 5, visible, structure)
    assert n == m
    np.testing.assert_array_equal(fast, reference)


@pytest.mark.parametrize("alpha", [False, True])
def test_pixel_features_equal_the_distinct_colour_features(alpha):
    """RGB features are computed from the pixels (no colour table); they must be exactly
    the features of each pixel's distinct colour, as used by the colour-only fit."""
    image, _ = noisy_regions(seed=8, alpha=alpha)
    H, W = image.pixels.shape[:2]
    dedup = pixel_data(image)
    assert dedup.deduplicated
    p = image.pixels.astype(np.int64)
    keys = (p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]
    want = dedup.color_X[np.searchsorted(dedup.unique_keys, keys.ravel())]
    seen = np.ones(H * W, bool) if image.alpha is None else image.alpha.ravel()
    for data in (dedup, pixel_data(image, xy=1.0), pixel_data(image, xy=1.0, max_rows=500)):
        X, visible = data.strip_features(0, H)
        assert np.array_equal(X[seen, :3], want[seen])  # invisible pixels: any value
        assert (visible is None) == (not alpha)
    positioned = pixel_data(image, xy=1.0)
    assert positioned.unique_keys is None and positioned.pixels8 is None  # no sort, no table
    sample = pixel_data(image, xy=1.0, max_rows=500)
    assert sample.sampled and sample.X.shape == (500, 5)
    rows = np.rint(sample.X[:, 4] / np.float32(1.0 / max(H, W))).astype(int)
    cols = np.rint(sample.X[:, 3] / np.float32(1.0 / max(H, W))).astype(int)
    assert np.array_equal(sample.X[:, :3], want.reshape(H, W, 3)[rows, cols])
    lab = pixel_data(image, xy=1.0, space="lab")
    assert lab.unique_keys is not None  # CIELAB: converted once per distinct colour


def test_colour_table_with_rows_first_is_the_transpose():
    """The (colours, K) table the wide smoothing gathers from holds the values of the
    (K, colours) one, and log r of each row is log of gmm's responsibilities, clipped."""
    image, _ = noisy_regions(seed=4)
    seg = fit(image, space="lab")
    logr, ll = labelling.colour_table(seg.model, seg.data)
    logr_t, ll_t = labelling.colour_table(seg.model, seg.data, rows_first=True)
    assert logr_t.shape == (len(seg.data.color_X), seg.k) and logr_t.flags.c_contiguous
    np.testing.assert_array_equal(logr_t, logr.T)
    np.testing.assert_array_equal(ll_t, ll)
    resp = seg.model.predict_proba(seg.data.color_X)
    want = np.maximum(np.log(resp.astype(np.float32)), labelling.LOG_FLOOR)
    np.testing.assert_allclose(logr_t, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", [False, True])
def test_grid_lookup_gives_the_rows_of_a_search(alpha, monkeypatch):
    """Within grid_lookup (rows looked up through the pass's table on entry) the grid's
    colour rows are those a binary search gives, invisible pixels' arbitrary rows too."""
    import segment.features

    monkeypatch.setattr(segment.features, "SEARCH_PIXELS", 1)  # a table even when small
    image, _ = noisy_regions(seed=6, shape=(61, 47), alpha=alpha)
    image.pixels[::3, ::2] = 255  # a colour of no visible pixel, where some are hidden
    data = pixel_data(image, space="lab")
    H = data.shape[0]
    want = {a: data.colour_rows(a, min(H, a + 9), 3) for a in range(0, H, 9)}
    with data.strip_pass():
        data.colour_rows(0, 1)  # the pass's table, as the smoothing makes it
        assert data._lut is not None
        with data.grid_lookup(3):
            assert data._grid is not None
            for a, rows in want.items():
                np.testing.assert_array_equal(data.colour_rows(a, min(H, a + 9), 3), rows)
    assert data._grid is None
