"""Regions merged by description length (segment.coding, segment.hierarchy, segment.mdl):
coding lengths against a naive formula, known answers on small synthetic images, merges
that never lengthen the description, cuts of the hierarchy, determinism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segment.coding import coding_length, merge_gain, partition_length
from segment.hierarchy import merge_regions, region_borders, region_statistics, relabel
from segment.mdl import describe_regions
from segment.metrics import compare_labels
from segment.pipeline import segment_regions
from tests.support.regions import assert_merge_gains, regions_of


def naive_length(X, eps):
    """CTM's lossy coding length of the rows of X (m, D), straight from its definition."""
    m, D = X.shape
    mu = X.mean(axis=0)
    W = (X - mu).T  # D x m
    det = np.linalg.det(np.eye(D) + D / (eps**2 * m) * W @ W.T)
    return (m + D) / 2 * np.log2(det) + D / 2 * np.log2(1 + mu @ mu / eps**2)


def stats_of(X):
    return len(X), X.sum(axis=0), X.T @ X


@pytest.mark.parametrize("D", [1, 3, 4])
@pytest.mark.parametrize("eps", [0.5, 4.0])
def test_coding_length_matches_naive_formula(D, eps):
    rng = np.random.default_rng(D)
    X = rng.normal(3.0, 2.0, size=(57, D)) @ rng.normal(size=(D, D))
    n, s, q = stats_of(X)
    got = coding_length([n], [s], [q], eps)[0]
    assert got == pytest.approx(naive_length(X, eps), rel=1e-9)
    # A pixel weight w codes the rows as if each were w rows (repeating them w times).
    got2 = coding_length([n], [s], [q], eps, weight=2.0)[0]
    assert got2 == pytest.approx(naive_length(np.repeat(X, 2, axis=0), eps) - 0.0, rel=1e-9)


def test_merge_gain_is_the_change_of_the_partition_length():
    rng = np.random.default_rng(1)
    A, B = rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (30, 3))
    n = np.array([0, 40, 30], float)
    s = np.array([np.zeros(3), A.sum(0), B.sum(0)])
    q = np.array([np.zeros((3, 3)), A.T @ A, B.T @ B])
    gain = merge_gain(n, s, q, [1], [2], [7], 2.0, 3.0)[0]
    before = partition_length(n[1:], s[1:], q[1:], 7, 2.0, 3.0)
    after = partition_length([70.0], [s[1] + s[2]], [q[1] + q[2]], 0, 2.0, 3.0)
    assert gain == pytest.approx(after - before)


def halves(h=24, w=32, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3))
    img[:, : w // 2] = (20.0, 10.0, -5.0)
    img[:, w // 2 :] = (70.0, -20.0, 30.0)
    return img + rng.normal(0, noise, img.shape)


def checkerboard_labels(h, w, cell):
    yy, xx = np.mgrid[:h, :w]
    return ((yy // cell) * 7 + (xx // cell) * 3) % 5


def test_two_flat_halves_give_two_regions():
    img = halves()
    labels = checkerboard_labels(*img.shape[:2], 4)  # an over-segmentation cutting both
    out, result = describe_regions(labels, 5, img, eps=4.0, boundary_bits=2.0, min_size=0)
    assert result.n_final == 2
    assert (out[:, :16] == out[0, 0]).all() and (out[:, 16:] == out[0, -1]).all()
    assert out[0, 0] != out[0, -1]


def test_constant_image_gives_one_region():
    img = np.full((20, 30, 3), 50.0)
    labels = checkerboard_labels(20, 30, 3)
    out, result = describe_regions(labels, 5, img, eps=4.0, boundary_bits=1.0, min_size=0)
    assert result.n_final == 1
    assert (out == 0).all()


def test_segment_regions_on_pixels():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (200, 40, 30)
    rgb[:, 30:] = (20, 60, 190)
    rng = np.random.default_rng(0)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    out = segment_regions(rgb, k=4)
    assert compare_labels(out, (np.arange(60) >= 30)[None].repeat(40, 0).astype(int))[
        "variation_of_information"
    ] == pytest.approx(0.0, abs=1e-9)
    constant = segment_regions(np.full((30, 30, 3), 90, np.uint8), k=3)
    assert (constant == 0).all()


def _setup(seed, shape=(18, 22), n_labels=4, D=3):
    rng = np.random.default_rng(seed)
    feats = (
        rng.normal(0, 1, (*shape, D))
        + 10
        * rng.integers(0, 3, (3, 3, D))
        .repeat(shape[0] // 3 + 1, 0)
        .repeat(shape[1] // 3 + 1, 1)[: shape[0], : shape[1]]
    )
    labels = rng.integers(0, n_labels, shape)
    regions, n = regions_of(labels, n_labels)
    return feats, regions, n


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([0.5, 2.0, 8.0]),
    bb=st.sampled_from([0.5, 2.0, 8.0]),
)
def test_greedy_merges_never_lengthen_the_description(seed, eps, bb):
    feats, regions, n = _setup(seed)
    stats = region_statistics(feats, regions, n)[:3]
    edges = region_borders(regions, n)
    result = merge_regions(*stats, edges, eps=eps, boundary_bits=bb)
    assert (result.gains < 0).all()
    assert_merge_gains(result, regions, n, feats, eps=eps, boundary_bits=bb)


@pytest.mark.parametrize("target", [1, 3, 7])
def test_cut_at_n_gives_n_connected_regions(target):
    feats, regions, n = _setup(3)
    stats = region_statistics(feats, regions, n)[:3]
    edges = region_borders(regions, n)
    result = merge_regions(*stats, edges, eps=2.0, boundary_bits=1.0, n_regions=target)
    out = relabel(regions, result.mapping)
    assert result.n_final == target
    assert len(np.unique(out)) == target
    for r in range(target):  # each label is one connected region
        assert ndimage.label(out == r)[1] == 1


def test_sampled_statistics_estimate_the_exact_ones():
    yy, xx = np.mgrid[:60, :66]
    regions = (yy // 10) * 6 + xx // 11 + 1  # 36 blocks of 10 x 11 pixels
    rng = np.random.default_rng(7)
    feats = rng.normal(0, 1, (60, 66, 3)) + rng.normal(0, 20, (37, 3))[regions]
    n1, s1, _, seen1 = region_statistics(feats, regions, 36)
    n2, s2, _, seen2 = region_statistics(feats, regions, 36, step=2)
    assert np.array_equal(n1, n2) and np.array_equal(n1, seen1)
    assert seen2.sum() == 30 * 33
    mean1, mean2 = s1[1:] / n1[1:, None], s2[1:] / n2[1:, None]
    assert np.abs(mean1 - mean2).max() < 1.0  # unit noise, ~30 pixels per estimate


def test_speckle_and_small_regions_are_cleaned_up():
    feats, regions, n = _setup(5)
    out, result = describe_regions(
        regions, n + 1, feats, eps=0.5, boundary_bits=0.0, min_size=0.05, pre_size=0.01
    )
    sizes = np.bincount(out.ravel())
    assert sizes.min() >= 0.05 * out.size
    assert result.pre > 0


def test_deterministic_and_input_untouched():
    rgb = (halves(noise=8.0, seed=2) * 2 + 60).clip(0, 255).astype(np.uint8)
    copy = rgb.copy()
    a = segment_regions(rgb, seed=3)
    b = segment_regions(rgb, seed=3)
    assert a.tobytes() == b.tobytes()
    assert np.array_equal(rgb, copy)


def test_invisible_pixels_get_no_region():
    img = halves()
    labels = checkerboard_labels(*img.shape[:2], 4)
    visible = np.ones(labels.shape, bool)
    visible[:5] = False
    out, result = describe_regions(
        labels, 5, img, visible=visible, eps=4.0, boundary_bits=2.0, min_size=0
    )
    assert (out[:5] == -1).all() and (out[5:] >= 0).all()
    assert result.n_final == 2


def test_missing_values_count_but_do_not_vote():
    img = halves()
    labels = checkerboard_labels(*img.shape[:2], 4)
    holes = img.copy()
    holes[::3, ::5, 1] = np.nan  # a channel missing here and there
    out, result = describe_regions(labels, 5, holes, eps=4.0, boundary_bits=2.0, min_size=0)
    assert result.n_final == 2
    ref, _ = describe_regions(labels, 5, img, eps=4.0, boundary_bits=2.0, min_size=0)
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("step", [1, 2])
def test_region_statistics_are_pixel_by_pixel_sums_in_raster_order(step):
    """The sums are float64 additions pixel after pixel in raster order (bit for bit: the
    greedy merges depend on them), the outer products of the upper triangle mirrored; a
    pixel with a non-finite feature is counted in n but gives no sums; with a grid step
    the sums are scaled to each region's pixel count. Against a per-pixel Python loop and
    a per-region numpy computation."""
    rng = np.random.default_rng(11)
    H, W, D = 23, 29, 4
    regions = rng.integers(0, 6, (H, W)).astype(np.int32)  # 0: pixels left out
    feats = (rng.normal(0, 40, (H, W, D)) + rng.normal(0, 1e4, D)).astype(np.float32)
    feats[3, 5, 1] = np.nan
    feats[7, 2, 0] = np.inf
    n, s, q, seen = region_statistics(feats, regions, 5, step=step)
    n_ref, seen_ref = np.zeros(6), np.zeros(6)
    s_ref, q_ref = np.zeros((6, D)), np.zeros((6, D, D))
    for y in range(H):
        for x in range(W):
            r = regions[y, x]
            n_ref[r] += 1
            f = feats[y, x].astype(np.float64)
            if y % step or x % step or not np.isfinite(f).all():
                continue
            seen_ref[r] += 1
            for d in range(D):
                s_ref[r, d] += f[d]
                for e in range(d, D):
                    q_ref[r, d, e] += f[d] * f[e]
    q_ref = np.triu(q_ref) + np.triu(q_ref, 1).transpose(0, 2, 1)
    scale = np.where(seen_ref > 0, n_ref / np.maximum(seen_ref, 1), 1.0)
    partial = (seen_ref != n_ref) & (seen_ref > 0)
    s_ref[partial] *= scale[partial, None]
    q_ref[partial] *= scale[partial, None, None]
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(seen, seen_ref)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(q, q_ref)
    # The same, per region, with numpy (another summation order: equal to rounding).
    grid = regions[::step, ::step]
    rows = feats[::step, ::step].reshape(-1, D).astype(np.float64)
    ok = np.isfinite(rows).all(axis=1)
    for r in range(1, 6):
        X = rows[(grid.ravel() == r) & ok]
        c = n_ref[r] / len(X)
        np.testing.assert_allclose(s[r], X.sum(axis=0) * c, rtol=1e-12)
        np.testing.assert_allclose(q[r], X.T @ X * c, rtol=1e-12)
    # A callable giving rows a:b:step, columns ::step, gives the same.
    call = region_statistics(lambda a, b, st=1: feats[a:b:st, ::st], regions, 5, step=step)
    for got, want in zip(call, (n, s, q, seen), strict=True):
        np.testing.assert_array_equal(got, want)
