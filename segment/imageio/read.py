"""Reading image files with Pillow: one frame, every frame, or the number of frames.

Images are normalised to one shape (see :mod:`.decode`): an ``(H, W, 3)`` RGB array with
the EXIF orientation applied, plus a boolean mask of the visible pixels. Pillow's
process-wide settings (pixel limit, truncated images) are set for one call at a time under
a lock, and its warnings become the image's ``notes``. Whatever goes wrong comes out as a
one-line :class:`~segment.errors.SegmentError` naming the file (see :mod:`.explain`).
"""

import contextlib
import errno
import operator
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile

from ..errors import SegmentError, printable
from .decode import check_size, load_frame
from .explain import as_segment_errors
from .image import Image
from .jpeg import least_bytes
from .tiff import is_float_multisample, load_tiff


def load_image(path, *, frame=0, max_pixels=None) -> Image:
    """Read one frame of an image file as RGB with a visibility mask.

    Parameters
    ----------
    path : str or Path
        The image file; any format Pillow reads, and TIFFs of several float samples per
        pixel (see :mod:`.tiff`). It is opened read-only.
    frame : int
        Which frame of a multi-frame file (GIF, APNG, multi-page TIFF, MPO, ...), from 0.
    max_pixels : int, optional
        Refuse images with more pixels (width x height) than this, before decoding them
        (decompression-bomb protection). Defaults to Pillow's ``Image.MAX_IMAGE_PIXELS``
        (no limit if that is None). May be above or below Pillow's value.

    Returns
    -------
    Image
        ``pixels`` of shape (H, W, 3), ``alpha`` of shape (H, W) or None, and metadata.

    Raises
    ------
    SegmentError
        For every problem with the file (missing, unreadable, not an image, truncated,
        corrupt, over the pixel limit, no such frame) and for invalid ``frame`` or
        ``max_pixels``; the message is one line naming the file.

    Notes
    -----
    Pillow's pixel limit is a process-wide setting: it is changed only while a module lock
    is held and restored afterwards, so loads in several threads of one process run one at
    a time (use processes for parallel decoding).
    """
    path = Path(path)
    frame = _validate_frame(frame)
    _validate_max_pixels(max_pixels)
    if is_float_multisample(path):  # Pillow reads one float sample per pixel only
        return load_tiff(path, frame=frame, max_pixels=max_pixels)
    notes = []
    with _pillow_session(path, max_pixels, notes) as limit, _open(path, limit) as im:
        n_frames = _count(im)
        if frame >= n_frames:
            raise SegmentError(
                f"{printable(path)}: there is no frame {frame}; the file has {n_frames} "
                f"frame{'s' if n_frames != 1 else ''} (0 to {n_frames - 1})."
            )
        return load_frame(im, path, frame, n_frames, limit, notes)


def iter_frames(path, *, max_pixels=None) -> Iterator[Image]:
    """Read every frame of an image file, in order.

    Parameters
    ----------
    path : str or Path
        The image file; it stays open (read-only) until the iterator is exhausted or closed.
    max_pixels : int, optional
        The pixel limit, as in :func:`load_image`; applied to every frame.

    Yields
    ------
    Image
        One per frame; a still image yields one.

    Raises
    ------
    SegmentError
        As :func:`load_image`, at the frame where the problem shows (earlier frames have
        been yielded by then). ``max_pixels`` is checked before iteration starts.
    """
    path = Path(path)
    _validate_max_pixels(max_pixels)
    if is_float_multisample(path):
        return iter([load_tiff(path, max_pixels=max_pixels)])
    return _frames(path, max_pixels)


def count_frames(path, *, max_pixels=None) -> int:
    """Number of frames in an image file, without decoding the pixels.

    Parameters
    ----------
    path : str or Path
        The image file.
    max_pixels : int, optional
        The pixel limit, as in :func:`load_image` (a file whose header is over it is
        refused here already).

    Returns
    -------
    int
        1 for still images.

    Raises
    ------
    SegmentError
        As :func:`load_image`.
    """
    path = Path(path)
    _validate_max_pixels(max_pixels)
    if is_float_multisample(path):
        return 1
    with _pillow_session(path, max_pixels) as limit, _open(path, limit) as im:
        return _count(im)


def _readable_extensions():
    PILImage.init()
    readable = set()
    for ext, fmt in PILImage.registered_extensions().items():
        # MPO files are opened by the JPEG plugin, so MPO has no opener of its own.
        factory = PILImage.OPEN.get("JPEG" if fmt == "MPO" else fmt, (None,))[0]
        if factory is None or fmt in _IDENTIFY_ONLY:
            continue
        # Stub plugins (HDF5, GRIB, BUFR, WMF off Windows) identify files they cannot decode.
        if (
            isinstance(factory, type)
            and issubclass(factory, ImageFile.StubImageFile)
            and factory._handler is None
        ):
            continue
        readable.add(ext.lower())
    with contextlib.suppress(Exception):
        from PIL import EpsImagePlugin

        if not EpsImagePlugin.has_ghostscript():
            readable -= {".eps", ".ps", ".epsf", ".epsi"}
    return frozenset(readable)


#: Formats Pillow identifies but cannot decode (it would return a blank image).
_IDENTIFY_ONLY = frozenset({"MPEG"})


def __getattr__(name):
    # READABLE_EXTENSIONS: lower-case file extensions (".png", ".jpg", ...) of the formats
    # this Pillow can decode, for picking image files out of a folder. Computed when first
    # asked for: Image.init() imports every Pillow plugin, tens of milliseconds of the
    # start-up of commands that open one file (Image.open loads the plugins it needs).
    if name == "READABLE_EXTENSIONS":
        value = globals()[name] = _readable_extensions()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validate_frame(frame):
    frame = operator.index(frame)
    if frame < 0:
        raise SegmentError(f"frame must be 0 or more, got {frame}.")
    return frame


def _validate_max_pixels(max_pixels):
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise SegmentError(f"--max-pixels must be a whole number, got {max_pixels!r}.")
    if max_pixels < 1:
        raise SegmentError(f"--max-pixels must be at least 1, got {max_pixels}.")


# Pillow reads its pixel limit (and LOAD_TRUNCATED_IMAGES) from module globals at open, seek
# and load time, so they can only be changed for one call at a time.
_PILLOW_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_session(path, max_pixels, notes=None):
    """Hold the lock with Pillow's globals set for one call; yield the pixel limit in force.

    Every exception from the body other than SegmentError leaves as a SegmentError. Warnings
    raised meanwhile are appended to ``notes`` (a list) as one-line strings, never shown: a
    command line tool must not print library warnings with source lines, even with --quiet.
    """
    with _PILLOW_LOCK:
        saved_limit = PILImage.MAX_IMAGE_PIXELS
        saved_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        # Resolve the default inside the lock: outside it, another thread's value may be set.
        limit = saved_limit if max_pixels is None else int(max_pixels)
        try:
            PILImage.MAX_IMAGE_PIXELS = limit
            # Someone else may have set it; a truncated file must be an error, not grey.
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            # catch_warnings() swaps the process-wide filter list; only this one category
            # is affected, and the lock keeps two loads from interleaving their filters.
            with warnings.catch_warnings():
                # Record every warning, whatever filters the caller has set ...
                warnings.simplefilter("always")
                warnings.showwarning = _note_recorder([] if notes is None else notes)
                # ... but Pillow only warns between 1x and 2x its limit; we refuse everything
                # above.
                warnings.simplefilter("error", PILImage.DecompressionBombWarning)
                with as_segment_errors(path, limit):
                    yield limit
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved_limit
            ImageFile.LOAD_TRUNCATED_IMAGES = saved_truncated


def _note_recorder(notes):
    def record(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if len(text) > 200:
            text = text[:197] + "..."
        if text and text not in notes:
            notes.append(text)

    return record


@contextlib.contextmanager
def _open(path, limit):
    """Open ``path`` with Pillow after checking it is a non-empty regular file."""
    if "\0" in str(path):
        raise SegmentError(f"{printable(path)}: a file name cannot contain a NUL character.")
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or never end.
        raise SegmentError(f"{printable(path)}: not a regular file; pass an image file.")
    if st.st_size == 0:
        raise SegmentError(
            f"{printable(path)}: the file is empty (0 bytes); re-download or re-export it."
        )
    with PILImage.open(path) as im:
        if im.format in _IDENTIFY_ONLY:
            raise SegmentError(
                f"{printable(path)}: Pillow can identify {im.format} files but not decode them; "
                "convert it to PNG or TIFF."
            )
        check_size(im, path, limit)
        if im.format in ("JPEG", "MPO"):
            _check_jpeg_data(path)
        yield im


def _check_jpeg_data(path):
    short = least_bytes(path)
    if short is not None:
        width, height, least, size = short
        raise SegmentError(
            f"{printable(path)}: the image data is truncated (the header declares "
            f"{width}×{height} pixels, which take at least {least} bytes, but the file has "
            f"{size}); re-download or re-export it."
        )


def _count(im):
    # Some TIFFs announce odd page counts; there is always the frame that opened.
    return max(1, int(getattr(im, "n_frames", 1)))


def _frames(path, max_pixels):
    with contextlib.ExitStack() as stack:
        opening = []  # what Pillow warned about at open concerns every frame
        with _pillow_session(path, max_pixels, opening) as limit:
            im = stack.enter_context(_open(path, limit))
            n_frames = _count(im)
        for index in range(n_frames):
            # The lock is taken per frame, never across a yield: the consumer may load
            # other images (or take its time) between frames.
            notes = list(opening)
            with _pillow_session(path, max_pixels, notes) as limit:
                image = load_frame(im, path, index, n_frames, limit, notes)
            yield image
