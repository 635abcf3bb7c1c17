"""Reading images: :mod:`.read` opens files with Pillow (frames, pixel limits, warnings as
notes), :mod:`.decode` turns every Pillow mode into RGB with a visibility mask and applies
the EXIF orientation, :mod:`.explain` turns whatever goes wrong into a one-line
:class:`~segment.errors.SegmentError` naming the file. :class:`Image` is the result."""

from . import read
from .image import Image
from .read import count_frames, iter_frames, load_image

__all__ = ["READABLE_EXTENSIONS", "Image", "count_frames", "iter_frames", "load_image"]


def __getattr__(name):
    if name == "READABLE_EXTENSIONS":  # computed when first asked for (see .read)
        return read.READABLE_EXTENSIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
