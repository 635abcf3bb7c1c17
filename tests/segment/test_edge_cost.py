"""Edge-aware border coding: a border pixel on a strong colour edge costs less."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segment.hierarchy import merge_regions, region_borders, region_statistics
from segment.mdl import describe_regions, edge_cost, edge_strength
from segment.pipeline import segment_regions
from tests.support.regions import assert_merge_gains, regions_of


def random_regions(seed, shape=(17, 23), n_labels=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, shape)
    return regions_of(labels, n_labels)


def naive_borders(regions, weight):
    """Sum over 4-neighbour pixel pairs of different regions of min(weight) of the pair."""
    H, W = regions.shape
    out = {}
    for y in range(H):
        for x in range(W):
            for yy, xx in ((y, x + 1), (y + 1, x)):
                if yy < H and xx < W:
                    u, v = regions[y, x], regions[yy, xx]
                    if u != v and u > 0 and v > 0:
                        key = (min(u, v), max(u, v))
                        out[key] = out.get(key, 0.0) + min(weight[y, x], weight[yy, xx])
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_borders_match_naive_sum(seed):
    regions, n = random_regions(seed)
    regions[:2, :3] = 0  # pixels left out
    weight = np.random.default_rng(seed + 9).uniform(0.1, 1.0, regions.shape)
    a, b, length = region_borders(regions, n, pixel_cost=lambda lo, hi: weight[lo:hi])
    expect = naive_borders(regions, weight)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == sorted(expect)
    for x, y, c in zip(a.tolist(), b.tolist(), length.tolist(), strict=True):
        assert c == pytest.approx(expect[(x, y)])
    ones = region_borders(regions, n, pixel_cost=lambda lo, hi: np.ones((hi - lo, 23)))
    plain = region_borders(regions, n)
    assert plain[2].dtype == np.int64
    assert np.array_equal(ones[0], plain[0]) and np.allclose(ones[2], plain[2])


def step_image(h=30, w=40, jump=(40.0, 0.0, 0.0), noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 30.0) + rng.normal(0, noise, (h, w, 3))
    img[:, w // 2 :] += jump
    return img


def test_edge_cost_is_low_on_the_edge_and_full_where_smooth():
    img = step_image()
    cost = edge_cost(img, img.shape[:2], ratio=0.25, scale=2.0)(0, 30)
    assert cost.shape == (30, 40)
    assert (cost >= 0.25 - 1e-6).all() and (cost <= 1 + 1e-6).all()
    assert cost[:, 19:21].max() < 0.3  # the step: about the ratio
    assert np.median(cost[:, :10]) > 0.8  # noise only: about the full cost


def test_edge_cost_follows_the_photos_own_contrast():
    img = step_image(noise=2.0)
    one = edge_cost(img, img.shape[:2], ratio=0.3, scale=2.0)(0, 30)
    twice = edge_cost(img * 2.0, img.shape[:2], ratio=0.3, scale=2.0)(0, 30)
    assert np.allclose(one, twice, atol=1e-5)


def test_edge_cost_on_a_grid_and_in_strips():
    img = step_image(h=24, w=30)
    g2 = edge_strength(img, img.shape[:2], step=2)
    assert np.allclose(g2, edge_strength(img[::2, ::2], (12, 15)))
    strips = edge_strength(lambda a, b, step=1: img[a:b:step, ::step], img.shape[:2], step=2)
    assert np.array_equal(strips, g2)
    cost = edge_cost(img, img.shape[:2], step=2, ratio=0.5, scale=2.0)
    full = cost(0, 24)
    assert full.shape == (24, 30)
    assert np.array_equal(full[::2, ::2], full[1::2, 1::2])  # one value per grid cell
    assert np.array_equal(cost(5, 9), full[5:9])


def test_border_on_a_strong_edge_survives_where_a_constant_cost_merges():
    # Two noisy halves whose colours differ by a sharp step: coding both with one Gaussian
    # costs less than a full-price border, but more than a border priced as an edge.
    img = step_image(h=30, w=40, jump=(6.0, 0.0, 0.0), noise=1.0)
    labels = (np.arange(40) >= 20)[None].repeat(30, 0).astype(int)
    _, r1 = describe_regions(labels, 2, img, eps=4.0, boundary_bits=40.0, min_size=0)
    edges, r2 = describe_regions(
        labels, 2, img, eps=4.0, boundary_bits=40.0, edge_ratio=0.1, edge_scale=2.0, min_size=0
    )
    assert r1.n_final == 1
    assert r2.n_final == 2
    assert np.array_equal(edges, labels)


def test_false_borders_through_smooth_areas_still_merge():
    img = step_image(h=30, w=40, jump=(40.0, -20.0, 25.0), noise=1.0)
    yy, xx = np.mgrid[:30, :40]
    labels = ((yy // 5) * 7 + (xx // 5) * 3) % 5  # an over-segmentation cutting both halves
    out, result = describe_regions(
        labels, 5, img, eps=4.0, boundary_bits=4.0, edge_ratio=0.1, edge_scale=2.0, min_size=0
    )
    assert result.n_final == 2
    assert (out[:, :20] == out[0, 0]).all() and (out[:, 20:] == out[0, -1]).all()
    constant = np.full((20, 30, 3), 50.0)
    out, result = describe_regions(
        labels[:20, :30], 5, constant, eps=4.0, boundary_bits=1.0, edge_ratio=0.1, min_size=0
    )
    assert result.n_final == 1


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([0.5, 2.0, 8.0]),
    bb=st.sampled_from([0.5, 2.0, 8.0]),
    ratio=st.sampled_from([0.0, 0.25, 0.6]),
)
def test_merges_never_lengthen_the_description_with_edge_costs(seed, eps, bb, ratio):
    regions, n = random_regions(seed, shape=(18, 22))
    rng = np.random.default_rng(seed)
    feats = (
        rng.normal(0, 1, (18, 22, 3))
        + 10 * rng.integers(0, 3, (3, 3, 3)).repeat(7, 0).repeat(8, 1)[:18, :22]
    )
    cost = edge_cost(feats, feats.shape[:2], ratio=ratio, scale=2.0)
    stats = region_statistics(feats, regions, n)[:3]
    edges = region_borders(regions, n, pixel_cost=cost)
    result = merge_regions(*stats, edges, eps=eps, boundary_bits=bb)
    assert (result.gains < 0).all()
    assert_merge_gains(result, regions, n, feats, eps=eps, boundary_bits=bb, pixel_cost=cost)


@pytest.mark.parametrize("target", [1, 4])
def test_cut_at_n_with_edge_costs(target):
    img = step_image(h=24, w=30, jump=(20.0, 5.0, 0.0), noise=3.0)
    regions, n = random_regions(4, shape=(24, 30))
    out, result = describe_regions(
        regions, n + 1, img, eps=2.0, boundary_bits=2.0, edge_ratio=0.2, n_regions=target
    )
    assert result.n_final == target
    for r in range(target):
        assert ndimage.label(out == r)[1] == 1


def test_edge_costs_deterministic():
    rng = np.random.default_rng(1)
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[:, 25:] = 120
    rgb = np.clip(rgb + rng.normal(60, 10, rgb.shape), 0, 255).astype(np.uint8)
    a = segment_regions(rgb, seed=2, edge_ratio=0.3, edge_scale=3.0)
    b = segment_regions(rgb, seed=2, edge_ratio=0.3, edge_scale=3.0)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("step", [1, 2])
def test_edge_strength_is_the_gradient_magnitude_of_each_colour_channel(step):
    """Against scipy on each channel of the whole grid, bit for bit, whether the features
    come as an (H, W, D) array, a callable giving strips, or a callable giving (rows, cols,
    D) views of channel planes (what segment.mdl.region_features returns)."""
    rng = np.random.default_rng(3)
    img = rng.normal(50.0, 20.0, (45, 37, 5)).astype(np.float32)
    grid = img[::step, ::step]
    want = np.sqrt(
        sum(
            ndimage.gaussian_gradient_magnitude(grid[..., d], 1.0, mode="nearest") ** 2
            for d in range(3)
        )
    )
    planes = np.ascontiguousarray(np.moveaxis(img, -1, 0))

    def as_planes(a, b, s=1):
        return np.ascontiguousarray(planes[:, a:b:s, ::s]).transpose(1, 2, 0)

    for features in (img, lambda a, b, s=1: img[a:b:s, ::s], as_planes):
        np.testing.assert_array_equal(edge_strength(features, img.shape[:2], step), want)
