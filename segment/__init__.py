"""segment: segment and colour-quantise images with Gaussian mixture models."""

from .errors import SegmentError

__all__ = ["SegmentError", "__version__"]


def __getattr__(name):
    # The version is read from the installed metadata only when asked for: importing
    # importlib.metadata costs tens of milliseconds of every command's start-up.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            # The distribution is segment-gmm: "segment" on the package index is another.
            value = version("segment-gmm")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'segment' has no attribute {name!r}")
