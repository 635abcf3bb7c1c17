"""Powers of two that bring data and weights of any magnitude within float32's range.

The E-step works in float32 by default, whose range is about 1e-38 to 3e38: features of
X × 1e20 square to 1e40, and a weight of 1e100 is infinite, 1e-100 zero. Multiplying by a
power of two is exact in binary floating point (barring overflow), so fitting the scaled
problem and scaling the answer back gives the answer of the original problem. Data and
weights of ordinary magnitude are left alone, bit for bit.
"""

import numpy as np

from .chunks import ChunkSource

#: Magnitudes within [1 / SAFE, SAFE] are not rescaled: their squares (and products with the
#: few thousand rows of a block) stay far inside float32's range.
SAFE = 2.0**24


def power_of_two_exponent(magnitude):
    """e such that magnitude × 2**e is about 1, when ``magnitude`` is outside the safe range
    [1/SAFE, SAFE]; else 0 (also for 0, infinity and NaN, which other checks report)."""
    magnitude = float(magnitude)
    if not (np.isfinite(magnitude) and magnitude > 0.0) or 1.0 / SAFE <= magnitude <= SAFE:
        return 0
    return int(np.clip(-np.round(np.log2(magnitude)), -1000, 1000))


def feature_scale(variances):
    """The power of two that centred rows are multiplied by in the E-step (1.0 for data whose
    largest spread is of ordinary magnitude), from the per-feature variances."""
    spread = np.sqrt(np.max(variances)) if np.size(variances) else 1.0
    return float(np.ldexp(1.0, power_of_two_exponent(spread)))


class WeightScaledSource(ChunkSource):
    """A chunk source whose weights are multiplied by 2**exponent (exactly)."""

    def __init__(self, source, exponent):
        self.source = source
        self.exponent = int(exponent)
        self.n_features = source.n_features
        self.n_rows = getattr(source, "n_rows", None)

    def chunks(self, max_rows):
        for X, w in self.source.chunks(max_rows):
            yield X, None if w is None else np.ldexp(np.asarray(w, dtype=np.float64), self.exponent)


def scale_weights(source, max_weight):
    """``(source, exponent)``: the source with its weights scaled so that the largest is about
    1 when it is outside the safe range (weights are relative: only their ratios matter to
    the fit), else the source itself and 0. A source that computes elsewhere (Dask) is
    left alone."""
    exponent = power_of_two_exponent(max_weight)
    if exponent == 0 or hasattr(source, "accumulate"):
        return source, 0
    return WeightScaledSource(source, exponent), exponent
