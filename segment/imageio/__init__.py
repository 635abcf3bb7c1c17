"""Reading images: :mod:`.read` opens files with Pillow (frames, pixel limits, warnings as
notes), :mod:`.decode` turns every Pillow mode into RGB with a visibility mask and applies
the EXIF orientation, :mod:`.explain` turns whatever goes wrong into a one-line
:class:`~segment.errors.SegmentError` naming the file. :class:`Image` is the result."""

from .image import Image
from .read import READABLE_EXTENSIONS, count_frames, iter_frames, load_image

__all__ = ["READABLE_EXTENSIONS", "Image", "count_frames", "iter_frames", "load_image"]
