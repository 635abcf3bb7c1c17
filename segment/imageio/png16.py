"""The tRNS colour key of a 16-bit RGB PNG, matched at full precision.

Pillow has no 16-bit colour mode: it decodes 16-bit RGB PNGs to their high bytes, and a
colour key compared with those alone hides every pixel that shares the key's high bytes.
The low bytes come from a second decode of the same data with the little-endian unpacker
(``RGB;16L`` takes the second byte of each sample, which in a big-endian PNG is the low
byte); a pixel is invisible only when all six bytes equal the key's.
"""

import numpy as np
from PIL import Image as PILImage

__all__ = ["key_mask_16", "low_bytes", "needs_low_bytes"]


def needs_low_bytes(im, rawmode, key):
    """Whether ``im`` (opened, not loaded) is a 16-bit RGB PNG with a colour key."""
    return im.format == "PNG" and rawmode == "RGB;16B" and isinstance(key, tuple)


def low_bytes(path, frame):
    """The low bytes of the samples of a 16-bit RGB PNG frame, as a loaded RGB image."""
    im = PILImage.open(path)
    if frame:
        im.seek(frame)
    im.tile = [_little_endian(t) for t in im.tile]
    im.load()
    return im


def key_mask_16(high, low, key):
    """Visibility (H, W) bool of 16-bit RGB pixels, given as their high and low bytes
    ((H, W, 3) uint8 each), against a 16-bit colour key ``(r, g, b)``."""
    differs = high != np.asarray([k >> 8 for k in key], np.uint8)
    if low is not None and low.shape == high.shape:
        differs |= low != np.asarray([k & 0xFF for k in key], np.uint8)
    return differs.any(axis=2)


def _little_endian(tile):
    args = tile.args
    if isinstance(args, tuple):
        args = ("RGB;16L", *args[1:]) if args and args[0] == "RGB;16B" else args
    elif args == "RGB;16B":
        args = "RGB;16L"
    return tile._replace(args=args)
