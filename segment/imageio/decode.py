"""Pillow images to RGB arrays: every mode (palette, grey, 1-bit, 16-bit, 32-bit integer and
float, CMYK, LAB, ...) to ``uint8`` / ``uint16`` / ``float32`` RGB with a visibility mask
(alpha, palette transparency, tRNS colour keys, non-finite floats), after the EXIF or TIFF
orientation is applied."""

import contextlib

import numpy as np
from PIL import ExifTags, ImageOps

from ..color import pillow_lab_to_rgb
from ..errors import SegmentError, printable
from .explain import UnsupportedMode, bomb_message
from .image import Image
from .png16 import key_mask_16, low_bytes, needs_low_bytes


def load_frame(im, path, index, n_frames, limit, notes=()):
    if index != im.tell():
        im.seek(index)
        # A GIF frame may enlarge the canvas, and TIFF pages have their own sizes.
        check_size(im, path, limit)
    mode = im.mode
    # Needed for PNG tRNS of 2- and 4-bit grey; the tile list is gone after load().
    rawmode = _rawmode(im)
    declared = _tiff_orientation(im)
    im.load()
    oriented, orientation = _apply_orientation(im, declared)
    low = None
    if needs_low_bytes(im, rawmode, im.info.get("transparency")):
        low = np.asarray(_apply_orientation(low_bytes(path, index), declared)[0])
    # The transposed copy has no format: PNG-specific tRNS rules need it from the original.
    pixels, visible, bit_depth = _to_rgb(oriented, rawmode, png=im.format == "PNG", low=low)
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


_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _to_rgb(im, rawmode, *, png, low=None):
    """Convert a loaded Pillow image to ``(pixels, visible or None, bit depth)``.

    ``pixels`` has shape (H, W, 3); ``visible`` is a bool (H, W) array or None when the mode
    and metadata carry no transparency at all. ``rawmode`` is how the file stored the
    samples (e.g. ``"L;4"``, ``"RGB;16B"``) and ``png`` whether it is a PNG: PNG colour keys
    are in the file's bit depth, not in Pillow's. ``low``: the low bytes of a 16-bit RGB
    PNG's samples (:mod:`.png16`), to match its colour key at full precision.
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
            # The tRNS key of a 16-bit PNG is 16-bit; Pillow keeps the high bytes only.
            return rgb, key_mask_16(rgb, low, key), 8
        return rgb, _key_mask(rgb, key), 8
    if mode == "LAB":
        return pillow_lab_to_rgb(np.asarray(im)), None, 8
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
        raise UnsupportedMode(im.mode) from err
    arr = np.asarray(converted)
    if not has_alpha:
        return arr, None, 8
    return np.ascontiguousarray(arr[..., :3]), arr[..., 3] > 0, 8


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


def check_size(im, path, limit):
    width, height = im.size
    if width <= 0 or height <= 0:
        raise SegmentError(
            f"{printable(path)}: the image declares an empty size ({width} x {height} pixels); "
            "the file is corrupt."
        )
    if limit is not None and width * height > limit:
        raise SegmentError(bomb_message(path, width * height, limit))
