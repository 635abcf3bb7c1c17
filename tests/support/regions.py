"""Region maps shared by the region-merging tests."""

import numpy as np
from scipy import ndimage


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
