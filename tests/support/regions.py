"""Region maps shared by the region-merging tests."""

import numpy as np
import pytest
from scipy import ndimage

from segment.coding import partition_length
from segment.hierarchy import region_borders, region_statistics, relabel


def regions_of(labels, n_labels):
    """The connected regions (4-neighbours) of each label of ``labels`` (H, W), numbered
    1..n label after label, as (regions int32 (H, W), n): written directly from
    ``scipy.ndimage.label``, independently of segment's own connected regions."""
    regions = np.zeros(labels.shape, np.int32)
    n = 0
    for k in range(n_labels):
        lab, m = ndimage.label(labels == k)
        regions[lab > 0] = lab[lab > 0] + n
        n += m
    return regions, n


def assert_merge_gains(result, regions, n, feats, *, eps, boundary_bits, pixel_cost=None):
    """Check a :func:`segment.hierarchy.merge_regions` result against description lengths
    computed from scratch: the final partition is no longer to describe than the start,
    and each of the first five recorded gains is the change of the total when the merges
    are replayed one by one."""

    def total(mapping):
        final = relabel(regions, mapping) + 1
        m = int(final.max())
        n_, s, q = region_statistics(feats, final, m)[:3]
        border = region_borders(final, m, pixel_cost=pixel_cost)[2].sum()
        return partition_length(n_[1:], s[1:], q[1:], border, eps, boundary_bits)

    start = total(np.arange(n + 1) - 1)
    assert total(result.mapping) <= start + 1e-6
    parent = np.arange(n + 1)
    before = start
    for (i, j), g in zip(result.merges[:5], result.gains[:5], strict=False):
        parent[parent == j] = i
        _, mapping = np.unique(parent, return_inverse=True)
        after = total(mapping - 1)
        assert after - before == pytest.approx(g, abs=1e-6)
        before = after
