"""24-bit colour keys: an 8-bit colour (r, g, b) as the one integer ``r << 16 | g << 8 | b``.

Distinct colours are then found by one sort of the keys, and a table indexed by key maps
every colour at once. Only numpy is imported here: ``segment quantize`` starts without
the mixture library.
"""

import sys

import numpy as np

__all__ = ["color_keys", "keys_to_rgb"]

_LITTLE_ENDIAN = sys.byteorder == "little"


def color_keys(pixels8, *, block=1 << 20):
    """Keys (...) uint32 of 8-bit colours (..., 3), e.g. an (H, W, 3) image or (n, 3) rows.

    Built ``block`` keys at a time along the first axis, so that no full-size temporary is
    made beside the result.
    """
    p = np.asarray(pixels8)
    keys = np.empty(p.shape[:-1], dtype=np.uint32)
    if keys.size == 0:
        return keys
    step = max(1, block // max(1, keys[0].size))
    as_bytes = _LITTLE_ENDIAN and p.dtype == np.uint8
    for a in range(0, len(keys), step):
        rows, k = p[a : a + step], keys[a : a + step]
        if as_bytes:
            # The key's bytes are (b, g, r, 0) in memory: three byte copies, no shifts.
            octets = k.view(np.uint8).reshape(*k.shape, 4)
            octets[..., 0] = rows[..., 2]
            octets[..., 1] = rows[..., 1]
            octets[..., 2] = rows[..., 0]
            octets[..., 3] = 0
            continue
        np.left_shift(rows[..., 0], 16, out=k, dtype=np.uint32)
        k |= np.left_shift(rows[..., 1], 8, dtype=np.uint32)
        k |= rows[..., 2]
    return keys


def keys_to_rgb(keys, dtype):
    """Colours (..., 3) of ``dtype`` in 0–255 units of keys (...)."""
    keys = np.asarray(keys, dtype=np.uint32)
    out = np.empty((*keys.shape, 3), dtype=dtype)
    out[..., 0] = keys >> 16
    out[..., 1] = (keys >> 8) & 255
    out[..., 2] = keys & 255
    return out
