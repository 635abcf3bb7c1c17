"""The speckle clean-up (segment.speckle, through segment.hierarchy.merge_regions) against a
naive one-at-a-time reference: the same merges, in the same order, with the same gains."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment.coding import merge_gain
from segment.hierarchy import merge_regions, region_borders, region_statistics
from tests.support.regions import regions_of


def reference_cleanup(n, s, q, edges, *, eps, boundary_bits, weight, min_size):
    """One region at a time, from the definition: the live region under ``min_size`` with a
    neighbour and the least (size, id) joins the neighbour of least gain (the first by id
    among equals); the one with more neighbours survives (the small one if equal)."""
    n, s, q = n.copy(), s.copy(), q.copy()
    nb = {r: {} for r in range(len(n))}
    for a, b, c in zip(*edges, strict=True):
        nb[int(a)][int(b)] = nb[int(b)][int(a)] = c
    alive = n > 0
    alive[0] = False
    merges, gains = [], []
    while True:
        due = [(n[r], r) for r in np.flatnonzero(alive) if n[r] < min_size and nb[r]]
        if not due:
            return np.array(merges, dtype=np.int64).reshape(-1, 2), np.array(gains)
        r = int(min(due)[1])
        ks = sorted(nb[r])
        g = [
            merge_gain(n, s, q, [r], [k], [nb[r][k]], eps, boundary_bits, weight=weight)[0]
            for k in ks
        ]
        best = int(np.argmin(g))
        k = ks[best]
        i, j = (k, r) if len(nb[k]) > len(nb[r]) else (r, k)
        n[i] += n[j]
        s[i] += s[j]
        q[i] += q[j]
        alive[j] = False
        for x, c in nb.pop(j).items():
            del nb[x][j]
            if x != i:
                nb[i][x] = nb[x][i] = nb[i].get(x, 0) + c
        nb[j] = {}
        merges.append((i, j))
        gains.append(g[best])


def speckled(seed, shape=(24, 30), D=3, n_labels=3, ties=False):
    """Features and regions of a noisy label image: hundreds of regions, most of a few
    pixels. With ``ties``, few distinct colours, so that many merges cost the same."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, shape)
    labels[: shape[0] // 2, : shape[1] // 2] = 0  # one large region among the speckle
    regions, n = regions_of(labels, n_labels)
    colours = rng.normal(0, 10, (n_labels, D))
    feats = colours[labels]
    if not ties:
        feats = feats + rng.normal(0, 2, (*shape, D))
    return feats, regions, n


def compare(feats, regions, n, *, eps, bb, pre, weight=1.0, weighted_borders=False, seed=0):
    stats = region_statistics(feats, regions, n)[:3]
    cost = None
    if weighted_borders:
        rng = np.random.default_rng(seed)
        w = rng.uniform(0.2, 1.0, regions.shape)
        cost = lambda a, b: w[a:b]  # noqa: E731
    edges = region_borders(regions, n, pixel_cost=cost)
    result = merge_regions(
        *stats, edges, eps=eps, boundary_bits=bb, weight=weight, pre_size=pre, n_regions=1
    )
    merges, gains = reference_cleanup(
        *stats, edges, eps=eps, boundary_bits=bb, weight=weight, min_size=pre
    )
    assert result.pre == len(merges)
    np.testing.assert_array_equal(result.merges[: result.pre], merges)
    np.testing.assert_allclose(result.gains[: result.pre], gains, rtol=1e-12, atol=1e-9)
    return result


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    D=st.sampled_from([3, 5]),
    eps=st.sampled_from([0.5, 4.0]),
    bb=st.sampled_from([0.0, 2.0, 20.0]),
    pre=st.sampled_from([3.0, 12.0, 60.0]),
    weight=st.sampled_from([1.0, 0.3]),
    weighted_borders=st.booleans(),
)
def test_speckle_cleanup_matches_one_at_a_time(seed, D, eps, bb, pre, weight, weighted_borders):
    feats, regions, n = speckled(seed, D=D)
    compare(
        feats, regions, n, eps=eps, bb=bb, pre=pre, weight=weight,
        weighted_borders=weighted_borders, seed=seed,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speckle_cleanup_breaks_ties_as_one_at_a_time(seed):
    # Flat colours: many neighbours cost exactly the same, the first by id must win.
    feats, regions, n = speckled(seed, ties=True)
    result = compare(feats, regions, n, eps=4.0, bb=1.0, pre=30.0)
    assert result.pre > 50


def test_speckle_cleanup_on_a_large_field():
    # Enough speckle for many windows of guesses, some of them wrong.
    feats, regions, n = speckled(11, shape=(90, 120), D=5)
    assert n > 2000
    result = compare(feats, regions, n, eps=2.0, bb=4.0, pre=40.0)
    assert result.pre > 0.9 * n


def test_speckle_cleanup_with_gains_that_are_not_numbers():
    # A region whose statistics are not finite has NaN gains: argmin takes the first NaN.
    feats, regions, n = speckled(4)
    stats = region_statistics(feats, regions, n)[:3]
    sizes = stats[0]
    for r in np.flatnonzero((sizes > 0) & (sizes < 4))[::7][:6]:
        stats[1][r] = np.nan
    edges = region_borders(regions, n)
    with np.errstate(invalid="ignore"):
        result = merge_regions(*stats, edges, eps=4.0, boundary_bits=2.0, pre_size=20.0)
        merges, gains = reference_cleanup(
            *stats, edges, eps=4.0, boundary_bits=2.0, weight=1.0, min_size=20.0
        )
    assert np.isnan(gains).any()
    np.testing.assert_array_equal(result.merges[: result.pre], merges)
    np.testing.assert_array_equal(np.isnan(result.gains[: result.pre]), np.isnan(gains))


def state_after(stats, edges, merges):
    """Statistics and borders after ``merges`` (pairs: the second joins the first), summed
    in that order as the merging does (borders are pixel counts here: exact in any order)."""
    n, s, q = (a.copy() for a in stats)
    root = np.arange(len(n))
    for i, j in merges:
        n[i] += n[j]
        s[i] += s[j]
        q[i] += q[j]
        n[j] = 0
        root[root == j] = i
    border = {}
    for a, b, c in zip(*edges, strict=True):
        ra, rb = int(root[a]), int(root[b])
        if ra != rb:
            key = (min(ra, rb), max(ra, rb))
            border[key] = border.get(key, 0) + int(c)
    keys = sorted(border)
    a = np.array([k[0] for k in keys], dtype=np.int64)
    b = np.array([k[1] for k in keys], dtype=np.int64)
    return (n, s, q), (a, b, np.array([border[k] for k in keys], dtype=np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_final_cleanup_matches_one_at_a_time(seed):
    # The default cut: best-first merging, then regions under min_size join their
    # cheapest neighbour; that last pass against the reference, from the state it starts in.
    feats, regions, n = speckled(seed, shape=(40, 50), D=3)
    stats = region_statistics(feats, regions, n)[:3]
    edges = region_borders(regions, n)
    kw = {"eps": 1.0, "boundary_bits": 0.5, "weight": 1.0}
    result = merge_regions(*stats, edges, min_size=80.0, pre_size=3.0, **kw)
    start = result.pre + result.greedy
    assert len(result.merges) - start > 5
    after, after_edges = state_after(stats, edges, result.merges[:start])
    merges, gains = reference_cleanup(*after, after_edges, min_size=80.0, **kw)
    np.testing.assert_array_equal(result.merges[start:], merges)
    np.testing.assert_allclose(result.gains[start:], gains, rtol=1e-12, atol=1e-9)
