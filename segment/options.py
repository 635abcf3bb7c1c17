"""Options of the segmentation commands, validated once, with messages for the CLI."""

import math
from dataclasses import asdict, dataclass

from .errors import SegmentError

#: Pixels a per-pixel fit samples by default (see FitOptions.pixel_rows).
AUTO_SAMPLE = 1_000_000

#: The largest --xy: positions a thousand times the colour range already make colour
#: irrelevant, and far beyond it the features overflow float32 (1e308) or the covariances
#: lose every colour digit ("Eigenvalues did not converge" at 1e20).
MAX_XY = 1000.0


@dataclass(frozen=True)
class FitOptions:
    """How to fit the mixture to an image's pixels.

    The defaults are those of ``segment image`` (whose options take them from here).
    """

    k: int = 10
    covariance_type: str = "full"
    space: str = "lab"
    xy: float = 0.0
    seed: int = 0
    max_iter: int = 100
    tol: float = 1e-3
    init: str = "kmeans"
    n_init: int = 1
    prior: bool = False
    reg_covar: float | None = None  # None: segment.features.quantisation_variance(space)
    chunk_mib: float = 64.0
    smooth: float | None = None
    min_region: int | None = None
    sample: int | None = None
    polish: int = 2
    merge: float = 0.0
    k_range: tuple | None = None
    regions: int | None = None

    def validate(self):
        """Check every field; return self, or raise SegmentError with a one-line message."""
        # Imported here: the CLI reads the defaults above at start-up, before numpy is needed.
        from gmm import COVARIANCE_TYPES, INIT_METHODS

        from .color import COLOR_SPACES

        _check(
            isinstance(self.k, int) and 1 <= self.k <= 65535,
            f"k must be a whole number from 1 to 65535; got {self.k}.",
        )
        _check(
            self.covariance_type in (*COVARIANCE_TYPES, "auto"),
            f"unknown covariance type {self.covariance_type!r}; use one of "
            f"{', '.join(COVARIANCE_TYPES)}.",
        )
        _check(
            self.space in COLOR_SPACES,
            f"unknown colour space {self.space!r}; use one of {', '.join(COLOR_SPACES)}.",
        )
        _check(
            _finite(self.xy) and 0 <= self.xy <= MAX_XY,
            f"the xy weight must be a number from 0 to {MAX_XY:g}; got {self.xy}.",
        )
        _check(
            isinstance(self.max_iter, int) and self.max_iter >= 1,
            f"max-iter must be at least 1; got {self.max_iter}.",
        )
        _check(
            _finite(self.tol) and self.tol >= 0,
            f"tol must be a finite number >= 0; got {self.tol}.",
        )
        _check(
            self.init in INIT_METHODS,
            f"unknown init {self.init!r}; use one of {', '.join(INIT_METHODS)}.",
        )
        _check(
            isinstance(self.n_init, int) and self.n_init >= 1,
            f"restarts (n-init) must be at least 1; got {self.n_init}.",
        )
        _check(
            self.reg_covar is None or (_finite(self.reg_covar) and self.reg_covar >= 0),
            f"reg-covar must be a finite number >= 0; got {self.reg_covar}.",
        )
        _check(
            _finite(self.chunk_mib) and 1 / 16 <= self.chunk_mib <= 1 << 20,
            f"the memory budget must be between 0.0625 and 1048576 MiB; got {self.chunk_mib}.",
        )
        _check(
            self.smooth is None or (_finite(self.smooth) and 0 <= self.smooth <= 100),
            f"smooth must be a number of pixels from 0 to 100 (or auto); got {self.smooth}.",
        )
        _check(
            self.min_region is None or (isinstance(self.min_region, int) and 0 <= self.min_region),
            f"min-region must be a whole number of pixels >= 0 (or auto); got {self.min_region}.",
        )
        _check(
            self.sample is None
            or (
                isinstance(self.sample, int)
                and self.sample >= 0
                and (self.sample == 0 or self.sample >= 1000)
            ),
            f"sample must be 0 (no sampling) or at least 1000 pixels; got {self.sample}.",
        )
        _check(
            self.regions is None or (isinstance(self.regions, int) and self.regions >= 0),
            f"regions must be auto, off (0) or a whole number >= 1; got {self.regions}.",
        )
        _check(
            isinstance(self.polish, int) and 0 <= self.polish <= 100,
            f"polish must be a number of passes from 0 to 100; got {self.polish}.",
        )
        return self

    @property
    def selects(self):
        """Whether k (and/or the covariance type) is chosen by BIC."""
        return self.k_range is not None or self.covariance_type == "auto"

    def data_kwargs(self):
        """Arguments of :func:`segment.features.pixel_data` for these options: per-pixel
        rows are sampled to ``sample`` (default one million; 0 = never), distinct colours
        only when ``sample`` is given."""
        rows = AUTO_SAMPLE if self.sample is None else (self.sample or None)
        return {
            "space": self.space,
            "xy": self.xy,
            "max_rows": rows,
            "max_colors": self.sample or None,
            "seed": self.seed,
        }

    def smooth_sigma(self, shape):
        """Smoothing in pixels for an image of ``shape``: the option, or
        :func:`default_smooth` (finer when regions are merged by description length)."""
        if self.smooth is not None:
            return float(self.smooth)
        return default_smooth(shape, regions=self.merges_regions)

    @property
    def merges_regions(self):
        """Whether the mixture's regions are merged by description length (the default;
        ``regions=0`` keeps the mixture's own labels)."""
        return self.regions != 0

    def min_region_pixels(self, shape):
        """Smallest region kept, in pixels: the option, or by default 1/100 of the image
        (1/500 when regions are merged by description length: the merging has already
        removed what is not worth a region)."""
        if self.min_region is not None:
            return int(self.min_region)
        if self.merges_regions:
            return max(1, int(shape[0] * shape[1] / 500))
        return max(1, int(shape[0] * shape[1] / 100))

    def to_dict(self):
        return asdict(self)


def default_smooth(shape, *, regions=True):
    """Default smoothing (pixels) of an image of ``shape``, proportional to its diagonal so
    that the segments look alike at any resolution: one pixel per 600 pixels of diagonal
    (at least 1) for plain colour clustering, which relies on it against speckle; half that
    (at least 0.5) when regions are merged by description length, which removes speckle
    itself and is better served by an over-segmentation that keeps thin details (BSDS500
    train, 100 photos: VoI 1.606 vs 1.634 at σ = 1)."""
    import numpy as np

    diagonal = float(np.hypot(*shape))
    if regions:
        return max(0.5, diagonal / 1200.0)
    return max(1.0, diagonal / 600.0)


def _finite(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check(ok, message):
    if not ok:
        raise SegmentError(message)
