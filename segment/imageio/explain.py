"""Every failure of Pillow (or the OS) while reading an image, as one line that says what is
wrong with the file and what to do: :func:`as_segment_errors` is the boundary. Pillow's
exceptions carry little structure, so some are recognised by their message texts."""

import contextlib
import errno
import re
import struct

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ..errors import SegmentError, printable


@contextlib.contextmanager
def as_segment_errors(path, limit):
    try:
        yield
    except SegmentError:
        raise
    except Exception as err:  # the boundary: nothing but SegmentError leaves a load
        raise SegmentError(_explain(err, path, limit)) from err


def _explain(err, path, limit):
    name = printable(path)
    bomb = (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning)
    if isinstance(err, bomb):
        match = re.search(r"\((\d+) pixels\)", str(err))
        return bomb_message(path, int(match[1]) if match else None, limit)
    if isinstance(err, UnsupportedMode):
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
    name = printable(path)
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


def bomb_message(path, pixels, limit):
    if pixels is None:
        return (
            f"{printable(path)}: the image is over the limit of {limit} pixels (decompression-bomb "
            "protection); pass a higher --max-pixels if you trust this file."
        )
    return (
        f"{printable(path)}: {pixels} pixels is over the limit of {limit} (decompression-bomb "
        f"protection); pass --max-pixels {pixels} if you trust this file."
    )


def _detail(err):
    text = " ".join(str(err).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class UnsupportedMode(Exception):
    """Pillow has no converter from this mode to RGB(A); turned into a SegmentError."""

    def __init__(self, mode):
        super().__init__(mode)
        self.mode = mode
