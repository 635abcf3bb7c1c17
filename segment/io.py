"""Reading images and writing outputs safely.

Images are read with Pillow and normalised to one shape: an ``(H, W, 3)`` RGB array with the
EXIF orientation applied, plus a boolean mask of the visible pixels. Whatever goes wrong with
a file (missing, not an image, truncated, corrupt, a decompression bomb) comes out as a
:class:`~segment.errors.SegmentError` whose one-line message names the file.

Outputs are written atomically: into a temporary file in the target folder, flushed, then
renamed over the final name, so a reader never sees a half-written file and an interrupted
run leaves no partial output under the final name. :func:`atomic_group` extends this to a
set of files: all renamed at the end, or none.
"""

import contextlib
import contextvars
import errno
import operator
import os
import re
import stat
import struct
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, ImageFile, ImageOps, UnidentifiedImageError
from PIL import Image as PILImage

from .errors import SegmentError

__all__ = [
    "READABLE_EXTENSIONS",
    "TEMP_PREFIX",
    "Image",
    "atomic_group",
    "atomic_write",
    "count_frames",
    "iter_frames",
    "load_image",
]

#: Prefix of temporary files; a leftover one (process killed) can be recognised and removed.
TEMP_PREFIX = ".segment-tmp-"

# =============================================================================================
# The loaded image
# =============================================================================================


@dataclass(frozen=True, eq=False)
class Image:
    """One frame of an image file, normalised to RGB.

    Equality is identity (``eq=False``): element-wise comparison of arrays has no single
    truth value.

    Attributes
    ----------
    pixels : ndarray, shape (H, W, 3)
        RGB values with the EXIF orientation applied. ``uint8`` for 8-bit (and 1-bit)
        sources, ``uint16`` for 16-bit sources (full precision kept), ``float32`` in [0, 1]
        for float and wide 32-bit integer sources. Grey sources are replicated to 3 channels.
        Invisible pixels keep whatever colour the file stores (0 for NaN/inf float pixels).
    alpha : ndarray of bool, shape (H, W), or None
        True where the pixel is visible (alpha > 0, not the transparent palette index or
        tRNS colour key, finite for float data). None when every pixel is visible.
    path : Path
        The file, as given.
    format : str
        Pillow's format name, e.g. ``"PNG"``, ``"JPEG"``, ``"MPO"``.
    mode : str
        Pillow's mode of this frame before normalisation, e.g. ``"P"``, ``"I;16"``, ``"CMYK"``.
        Frames after the first of a GIF are ``"RGB"`` / ``"RGBA"`` (Pillow composes them).
    frame : int
        Index of this frame, from 0.
    n_frames : int
        Number of frames in the file (1 for still images).
    bit_depth : int
        Bits per channel of the decoded data: 1 (mode ``"1"``), 8, 16 (``I;16`` modes and
        ``I`` images whose values fit 0..65535) or 32 (``F`` and wider ``I`` images).
        16-bit RGB(A) PNGs report 8: Pillow decodes them to 8 bits.
    orientation : int
        The EXIF orientation (1-8) that was applied; 1 when there was none, it was invalid,
        or the EXIF block could not be read.
    icc_profile : bytes or None
        The embedded ICC profile when it describes RGB data (so it still fits ``pixels``);
        None otherwise. Useful to embed in outputs so they display like the input.
    notes : tuple of str
        What Pillow warned about while reading the file (e.g. a malformed MPO header it
        read past), one line each. Such warnings are recorded here instead of being printed.
    """

    pixels: np.ndarray = field(repr=False)
    alpha: np.ndarray | None = field(repr=False)
    path: Path
    format: str
    mode: str
    frame: int
    n_frames: int
    bit_depth: int = 8
    orientation: int = 1
    icc_profile: bytes | None = field(default=None, repr=False)
    notes: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self):
        if self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(f"pixels must have shape (H, W, 3), got {self.pixels.shape}")
        if self.alpha is not None and (
            self.alpha.dtype != np.bool_ or self.alpha.shape != self.pixels.shape[:2]
        ):
            raise ValueError(
                f"alpha must be a bool array of shape {self.pixels.shape[:2]}, "
                f"got {self.alpha.dtype} {self.alpha.shape}"
            )

    @property
    def height(self) -> int:
        """Rows of ``pixels`` (after orientation)."""
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        """Columns of ``pixels`` (after orientation)."""
        return self.pixels.shape[1]


# =============================================================================================
# Public API
# =============================================================================================


def load_image(path, *, frame=0, max_pixels=None) -> Image:
    """Read one frame of an image file as RGB with a visibility mask.

    Parameters
    ----------
    path : str or Path
        The image file; any format Pillow reads. It is opened read-only.
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
    notes = []
    with _pillow_session(path, max_pixels, notes) as limit, _open(path, limit) as im:
        n_frames = _count(im)
        if frame >= n_frames:
            raise SegmentError(
                f"{_name(path)}: there is no frame {frame}; the file has {n_frames} "
                f"frame{'s' if n_frames != 1 else ''} (0 to {n_frames - 1})."
            )
        return _load_frame(im, path, frame, n_frames, limit, notes)


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

#: Lower-case file extensions (".png", ".jpg", ...) of the formats this Pillow can decode,
#: for picking image files out of a folder.
READABLE_EXTENSIONS: frozenset[str] = _readable_extensions()

# =============================================================================================
# Argument checks
# =============================================================================================


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


# =============================================================================================
# Pillow session: global settings, opening, frames
# =============================================================================================

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
                with _as_segment_errors(path, limit):
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
        raise SegmentError(f"{_name(path)}: a file name cannot contain a NUL character.")
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or never end.
        raise SegmentError(f"{_name(path)}: not a regular file; pass an image file.")
    if st.st_size == 0:
        raise SegmentError(
            f"{_name(path)}: the file is empty (0 bytes); re-download or re-export it."
        )
    with PILImage.open(path) as im:
        if im.format in _IDENTIFY_ONLY:
            raise SegmentError(
                f"{_name(path)}: Pillow can identify {im.format} files but not decode them; "
                "convert it to PNG or TIFF."
            )
        _check_size(im, path, limit)
        yield im


def _count(im):
    # Some TIFFs announce odd page counts; there is always the frame that opened.
    return max(1, int(getattr(im, "n_frames", 1)))


def _check_size(im, path, limit):
    width, height = im.size
    if width <= 0 or height <= 0:
        raise SegmentError(
            f"{_name(path)}: the image declares an empty size ({width} x {height} pixels); "
            "the file is corrupt."
        )
    if limit is not None and width * height > limit:
        raise SegmentError(_bomb_message(path, width * height, limit))


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
                image = _load_frame(im, path, index, n_frames, limit, notes)
            yield image


def _load_frame(im, path, index, n_frames, limit, notes=()):
    if index != im.tell():
        im.seek(index)
        # A GIF frame may enlarge the canvas, and TIFF pages have their own sizes.
        _check_size(im, path, limit)
    mode = im.mode
    # Needed for PNG tRNS of 2- and 4-bit grey; the tile list is gone after load().
    rawmode = _rawmode(im)
    declared = _tiff_orientation(im)
    im.load()
    oriented, orientation = _apply_orientation(im, declared)
    # The transposed copy has no format: PNG-specific tRNS rules need it from the original.
    pixels, visible, bit_depth = _to_rgb(oriented, rawmode, png=im.format == "PNG")
    return Image(
        pixels=pixels,
        alpha=None if visible is None or visible.all() else visible,
        path=path,
        format=im.format or "",
        mode=mode,
        frame=index,
        n_frames=n_frames,
        bit_depth=bit_depth,
        orientation=orientation,
        icc_profile=_rgb_icc_profile(im),
        notes=tuple(notes),
    )


def _rawmode(im):
    with contextlib.suppress(Exception):
        args = im.tile[0].args
        if isinstance(args, tuple) and args:
            args = args[0]
        if isinstance(args, str):
            return args
    return None


def _rgb_icc_profile(im):
    profile = im.info.get("icc_profile")
    # Bytes 16-19 of an ICC header name the colour space of the data it describes.
    if isinstance(profile, bytes) and profile[16:20] == b"RGB ":
        return profile
    return None


# =============================================================================================
# EXIF orientation
# =============================================================================================


def _exif_orientation(im):
    """The EXIF (or XMP) orientation, 1-8; 1 when absent, out of range or unreadable."""
    try:
        orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a broken EXIF block must not stop the load
        return 1
    return orientation if orientation in range(1, 9) else 1


def _tiff_orientation(im):
    """The orientation tag of a TIFF page (1-8), to be read before load().

    Pillow's TIFF plugin applies the orientation while loading and removes the tag. Other
    formats report 1: their getexif() may itself load, which must not happen before the
    checked load (a failed load would be swallowed and leave a grey image behind).
    """
    with contextlib.suppress(Exception):
        if im.format == "TIFF":
            orientation = int(im.tag_v2.get(ExifTags.Base.Orientation, 1))
            return orientation if orientation in range(1, 9) else 1
    return 1


def _apply_orientation(im, declared):
    """Return ``(upright image, orientation applied)`` for a loaded frame.

    ``declared`` is the TIFF orientation read before loading; if it is gone now, Pillow has
    applied it while loading. A transposition that fails leaves the image as it is.
    """
    remaining = _exif_orientation(im)
    if remaining == 1:
        return im, declared
    try:
        return ImageOps.exif_transpose(im), remaining
    except Exception:
        return im, 1


# =============================================================================================
# Mode normalisation: every Pillow mode to (H, W, 3) RGB + visibility
# =============================================================================================

_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _to_rgb(im, rawmode, *, png):
    """Convert a loaded Pillow image to ``(pixels, visible or None, bit depth)``.

    ``pixels`` has shape (H, W, 3); ``visible`` is a bool (H, W) array or None when the mode
    and metadata carry no transparency at all. ``rawmode`` is how the file stored the
    samples (e.g. ``"L;4"``, ``"RGB;16B"``) and ``png`` whether it is a PNG: PNG colour keys
    are in the file's bit depth, not in Pillow's.
    """
    mode = im.mode
    key = im.info.get("transparency")
    if mode in _UINT16_MODES:
        grey = np.asarray(im).astype(np.uint16)
        return _grey_to_rgb(grey), _key_mask(grey, key), 16
    if mode == "I":
        return _int32_to_rgb(np.asarray(im), key)
    if mode == "F":
        return _float_to_rgb(np.asarray(im, dtype=np.float32))
    if mode in ("1", "L"):
        grey = np.asarray(im.convert("L") if mode == "1" else im)
        if isinstance(key, int) and png:
            key = _png_grey_key(key, rawmode)
        return _grey_to_rgb(grey), _key_mask(grey, key), 1 if mode == "1" else 8
    # 16-bit RGB, RGBA and grey+alpha PNGs arrive here as 8-bit RGB / RGBA: Pillow has no
    # 16-bit colour modes and decodes them to their high bytes. Accepted (pixels are uint8).
    if mode == "RGB":
        # asarray wraps Pillow's byte copy instead of copying it again: a 24 MP photo would
        # otherwise hold three full-size buffers at once. The array is read-only.
        rgb = np.asarray(im)
        if isinstance(key, tuple) and png and rawmode == "RGB;16B":
            # The tRNS key of a 16-bit PNG is 16-bit, but Pillow keeps only the high bytes of
            # the samples: the match is approximate (pixels sharing the high bytes of the key
            # also become invisible).
            key = tuple(int(k) >> 8 for k in key)
        return rgb, _key_mask(rgb, key), 8
    if mode == "LAB":
        return _lab_to_rgb(np.asarray(im)), None, 8
    return _via_pillow_convert(im)


def _via_pillow_convert(im):
    # Palette (with or without tRNS), alpha and premultiplied modes, CMYK, YCbCr, HSV, RGBX:
    # Pillow's converters apply palettes and transparency and undo premultiplication.
    has_alpha = bool({"A", "a"} & set(im.getbands())) or "transparency" in im.info
    if im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA":
        has_alpha = True
    try:
        if im.mode == "La":
            im = im.convert("LA")  # Pillow has no direct La -> RGBA converter
        converted = im.convert("RGBA" if has_alpha else "RGB")
    except ValueError as err:
        raise _UnsupportedMode(im.mode) from err
    arr = np.asarray(converted)
    if not has_alpha:
        return arr, None, 8
    return np.ascontiguousarray(arr[..., :3]), arr[..., 3] > 0, 8


class _UnsupportedMode(Exception):
    """Pillow has no converter from this mode to RGB(A); turned into a SegmentError."""

    def __init__(self, mode):
        super().__init__(mode)
        self.mode = mode


def _grey_to_rgb(grey):
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def _key_mask(values, key):
    """Visibility for a colour-key transparency (PNG tRNS, GIF index on L); None if no key.

    ``values`` has shape (H, W) or (H, W, 3); ``key`` is an int or an RGB tuple.
    """
    if key is None or isinstance(key, bytes):
        return None
    if values.ndim == 3:
        if not isinstance(key, tuple) or len(key) != values.shape[2]:
            return None
        return np.any(values != np.asarray(key, dtype=values.dtype), axis=2)
    if not isinstance(key, int):
        return None
    return values != key


def _png_grey_key(key, rawmode):
    # PNG stores the tRNS grey value in the file's bit depth, but Pillow scales 1/2/4-bit
    # grey samples to 0..255 ("1" keys Pillow already gives as 0/255).
    bits = {"L;2": 2, "L;4": 4}.get(rawmode or "")
    if bits is None:
        return key
    return key * 255 // (2**bits - 1)


def _int32_to_rgb(values, key):
    """Mode ``I``: uint16 when the values fit 0..65535, else min..max scaled to [0, 1]."""
    visible = _key_mask(values, key)
    shown = values if visible is None else values[visible]
    if shown.size == 0 or (shown.min() >= 0 and shown.max() <= 65535):
        return _grey_to_rgb(np.clip(values, 0, 65535).astype(np.uint16)), visible, 16
    return _grey_to_rgb(_scale_to_unit(values, shown.min(), shown.max())), visible, 32


def _float_to_rgb(values):
    """Mode ``F``: kept if within [0, 1], else min..max scaled; NaN/inf become invisible."""
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    shown = values if all_finite else values[finite]
    if shown.size == 0:
        return np.zeros((*values.shape, 3), np.float32), finite, 32
    lo, hi = shown.min(), shown.max()
    if lo >= 0 and hi <= 1:
        unit = values.copy()
    else:
        unit = _scale_to_unit(values, lo, hi)
    if not all_finite:
        unit[~finite] = 0
    return _grey_to_rgb(unit), None if all_finite else finite, 32


def _scale_to_unit(values, lo, hi):
    """Map ``lo..hi`` to [0, 1] as float32; a constant image is clipped instead."""
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        return np.clip(values, 0, 1).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        unit = (values.astype(np.float64) - lo) / (hi - lo)
    return np.clip(unit, 0, 1).astype(np.float32)


# Chromatic adaptation from the D50 white of ICC / TIFF CIELab to the D65 white of sRGB
# (Bradford, as tabulated by Lindbloom), applied to XYZ column vectors.
_BRADFORD_D50_TO_D65 = np.array(
    [
        [0.9555766, -0.0230393, 0.0631636],
        [-0.0282895, 1.0099416, 0.0210077],
        [0.0122982, -0.0204830, 1.3299098],
    ]
)


def _lab_to_rgb(lab):
    """Pillow ``LAB`` (H, W, 3) uint8 to sRGB uint8 (H, W, 3).

    Pillow stores L* scaled to 0..255 and a*, b* as signed bytes (two's complement, as TIFF
    CIELab does; checked against Pillow's own LittleCMS conversion), relative to D50.
    """
    # Imported here: skimage.color pulls in scipy, too slow for every start of the CLI.
    from skimage.color import lab2xyz, xyz2rgb

    lab = np.ascontiguousarray(lab)
    lab_f = np.empty(lab.shape, np.float64)
    lab_f[..., 0] = lab[..., 0] * (100.0 / 255.0)
    lab_f[..., 1:] = lab[..., 1:].view(np.int8)
    with warnings.catch_warnings():
        # Out-of-gamut colours are clipped, which is what we want; skimage warns about it.
        warnings.simplefilter("ignore", UserWarning)
        xyz = lab2xyz(lab_f, illuminant="D50") @ _BRADFORD_D50_TO_D65.T
        rgb = xyz2rgb(xyz)
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


# =============================================================================================
# Errors: every failure of Pillow (or the OS) to a one-line SegmentError
# =============================================================================================


@contextlib.contextmanager
def _as_segment_errors(path, limit):
    try:
        yield
    except SegmentError:
        raise
    except Exception as err:  # the boundary: nothing but SegmentError leaves a load
        raise SegmentError(_explain(err, path, limit)) from err


def _explain(err, path, limit):
    name = _name(path)
    bomb = (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning)
    if isinstance(err, bomb):
        match = re.search(r"\((\d+) pixels\)", str(err))
        return _bomb_message(path, int(match[1]) if match else None, limit)
    if isinstance(err, _UnsupportedMode):
        return (
            f"{name}: Pillow cannot convert its colour mode {err.mode!r} to RGB; "
            "convert it to an RGB PNG or TIFF."
        )
    if isinstance(err, MemoryError):
        return (
            f"{name}: not enough memory to decode this image; close other programs or downscale it."
        )
    if isinstance(err, UnidentifiedImageError):
        return _explain_unidentified(path)
    if isinstance(err, FileNotFoundError):
        return f"{name}: no such file; check the path."
    if isinstance(err, IsADirectoryError):
        return f"{name}: is a folder, not an image file; pass an image file."
    if isinstance(err, PermissionError):
        return f"{name}: permission denied; make the file readable or copy it somewhere readable."
    if isinstance(err, OSError):
        return _explain_oserror(err, name)
    if isinstance(err, ValueError) and "MAX_TEXT_CHUNK" in str(err):
        return (
            f"{name}: a compressed metadata chunk expands to too much data (decompression-bomb "
            "protection); re-export the image without its metadata."
        )
    if isinstance(err, ValueError) and "not enough image data" in str(err):
        # Pillow's raw and plain-text (Netpbm) decoders say so when the samples run out.
        return f"{name}: the image data is truncated ({_detail(err)}); re-download or re-export it."
    if isinstance(err, EOFError):
        return f"{name}: the file ends unexpectedly ({_detail(err)}); re-download or re-export it."
    if isinstance(err, ValueError | SyntaxError | struct.error | IndexError | KeyError):
        return f"{name}: the file is malformed ({_detail(err)}); re-export it with another program."
    if isinstance(err, ArithmeticError | TypeError):
        return f"{name}: the file has impossible values ({_detail(err)}); re-export it."
    return (
        f"{name}: Pillow could not read it ({_detail(err)}); the file may be corrupt or use a "
        "feature Pillow does not support."
    )


def _explain_oserror(err, name):
    # Pillow's decoder failures are OSErrors without an errno; real I/O errors have one.
    if err.errno == errno.ENAMETOOLONG:
        return f"{name}: the file name is too long for the file system; check the path."
    if err.errno == errno.ENOTDIR:
        return f"{name}: no such file (a part of the path is not a folder); check the path."
    if err.errno == errno.ELOOP:
        return f"{name}: the path is a loop of symbolic links; check the path."
    if err.errno is not None:
        return f"{name}: cannot read the file ({err.strerror or _detail(err)}); check the disk."
    text = str(err)
    if "Ghostscript" in text:
        return (
            f"{name}: reading EPS needs Ghostscript, which is not installed; install it or "
            "convert the file to PNG."
        )
    if "cannot find loader" in text or ("decoder" in text and "not available" in text):
        return (
            f"{name}: this Pillow has no decoder for this file ({_detail(err)}); convert it "
            "to PNG or TIFF."
        )
    if "truncat" in text.lower():
        return f"{name}: the image data is truncated ({_detail(err)}); re-download or re-export it."
    return f"{name}: the image data is corrupt ({_detail(err)}); re-download or re-export it."


def _explain_unidentified(path):
    name = _name(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    text = _as_text(head)
    if text is not None and re.search(r"<svg[\s>]", text):
        return f"{name}: SVG vector images cannot be read; export it to PNG first."
    # Netpbm, XPM and XBM headers are text too: those are damaged images, not text files.
    if text is not None and not re.match(r"P[1-7Ff][\s\d]|/\* XPM \*/|#define ", text):
        return f"{name}: this is a text file, not an image; check that you passed the right file."
    return (
        f"{name}: not an image file Pillow can read (unknown format, not an image, or a "
        "damaged header)."
    )


def _as_text(head):
    """The sample as a string if it looks like text, else None."""
    if not head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The sample may end inside a multi-byte character.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if all(ch.isprintable() or ch in "\t\r\n\f" for ch in text):
        return text
    return None


def _bomb_message(path, pixels, limit):
    if pixels is None:
        return (
            f"{_name(path)}: the image is over the limit of {limit} pixels (decompression-bomb "
            "protection); pass a higher --max-pixels if you trust this file."
        )
    return (
        f"{_name(path)}: {pixels} pixels is over the limit of {limit} (decompression-bomb "
        f"protection); pass --max-pixels {pixels} if you trust this file."
    )


def _name(path):
    # Messages are one line, whatever characters the file name holds.
    return "".join(ch if ch.isprintable() else "?" for ch in str(path)) or "''"


def _detail(err):
    text = " ".join(str(err).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# =============================================================================================
# Atomic writes
# =============================================================================================


def _is_dir(path):
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # e.g. a name too long to look up
        return False


def _write_error(path, err):
    """The one-line SegmentError for an OSError met while writing ``path``."""
    name = _name(path)
    code = getattr(err, "errno", None)
    if isinstance(err, IsADirectoryError) or _is_dir(path):
        return SegmentError(f"cannot write {name}: it is a directory; choose a file name.")
    if isinstance(err, PermissionError):
        return SegmentError(
            f"cannot write {name}: permission denied; choose an output folder you can write to."
        )
    if isinstance(err, FileNotFoundError):
        return SegmentError(
            f"cannot write {name}: the folder {_name(Path(path).parent)} does not exist; "
            "create it first."
        )
    if code == errno.ENOSPC:
        return SegmentError(f"cannot write {name}: no space left on the device; free some space.")
    if code == getattr(errno, "EDQUOT", None):
        return SegmentError(f"cannot write {name}: the disk quota is exceeded; free some space.")
    if code == errno.EROFS:
        return SegmentError(
            f"cannot write {name}: the file system is read-only; choose another output folder."
        )
    if code == errno.ENAMETOOLONG:
        return SegmentError(
            f"cannot write {name}: the file name is too long for the file system; rename the "
            "input or choose a shorter output folder."
        )
    return SegmentError(f"cannot write {name}: {_detail_os(err)}.")


def _detail_os(err):
    text = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    return text[:160]


@contextlib.contextmanager
def atomic_write(path, *, overwrite=False):
    """Open a temporary file beside ``path`` for binary writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final name of the output.
    overwrite : bool
        Replace an existing ``path``; without it an existing file is an error.

    Raises
    ------
    SegmentError
        If ``path`` exists (and not ``overwrite``), is a directory, or cannot be written
        (permissions, missing folder, full disk). Nothing is left behind in any case.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if path.exists() and not overwrite:
            raise SegmentError(f"{_name(path)} already exists; pass --overwrite to replace it.")
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not overwrite and path.exists():
            raise SegmentError(f"{_name(path)} already exists; pass --overwrite to replace it.")
        os.chmod(tmp, 0o644 & ~_umask())
        group = _GROUP.get()
        if group is not None:
            group.append((tmp, path, overwrite))  # renamed when the group ends
            return
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise _write_error(path, err) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    # The rename is atomic but lives in the folder's metadata: make it durable, so that a
    # crash right after a successful run cannot lose the new name. Best effort: some file
    # systems cannot sync a folder.
    _fsync_folder(path.parent)


#: The files written (to temporaries) in the current atomic_group, or None outside a group.
_GROUP = contextvars.ContextVar("segment_io_atomic_group", default=None)


@contextlib.contextmanager
def atomic_group():
    """Make the :func:`atomic_write` calls inside the block one all-or-nothing write.

    Each file is written and synced under its temporary name as usual, but renamed to its
    final name only when the block ends without an exception, all together, in the order
    they were written (so a file written last, like ``NAME.model.json``, lands last). If the
    block raises (a full disk at the third file, Ctrl-C, anything), or a final name has
    appeared meanwhile without ``overwrite``, no file is renamed and every temporary file
    is removed: the folder is as it was. A group inside a group belongs to the outer one.
    The group is per thread (and per asyncio task).

    Raises
    ------
    SegmentError
        At the end of the block, if a final name is taken (without ``overwrite``) or a
        rename fails; the files renamed before a failing rename stay (renames in one folder
        fail only if the folder itself goes away or becomes read-only).
    """
    if _GROUP.get() is not None:
        yield
        return
    pending = []
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _, _ in pending:
            _unlink_quietly(tmp)
        raise
    finally:
        _GROUP.reset(token)
    _commit(pending)


def _commit(pending):
    done = 0
    try:
        for _, path, overwrite in pending:
            if not overwrite and path.exists():
                raise SegmentError(f"{_name(path)} already exists; pass --overwrite to replace it.")
        for tmp, path, _ in pending:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise _write_error(path, err) from None
            done += 1
    finally:
        for tmp, _, _ in pending[done:]:
            _unlink_quietly(tmp)
    for folder in dict.fromkeys(path.parent for _, path, _ in pending):
        _fsync_folder(folder)


def _fsync_folder(folder):
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask():
    # os.umask() can only be read by setting it, and a process-wide umask changed even
    # briefly lets another thread create a file with the wrong permissions; Linux reports it.
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            line = next(line for line in f if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _unlink_quietly(p):
    with contextlib.suppress(OSError):
        os.unlink(p)
