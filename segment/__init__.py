"""segment: segment and colour-quantise images with Gaussian mixture models."""

from importlib.metadata import PackageNotFoundError, version

from .errors import SegmentError

try:
    # The distribution is segment-gmm: "segment" on the package index is another project.
    __version__ = version("segment-gmm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["SegmentError", "__version__"]
