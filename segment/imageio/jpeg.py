"""A JPEG too short for the size it declares.

libjpeg decodes a file whose entropy-coded data end early by warning and filling the rest
of the image with grey; Pillow ignores the warning. A 600-byte file whose header says
9000×9000 is then 81 megapixels of grey, after seconds of decoding. Every 8×8 block of a
Huffman-coded JPEG (baseline, extended or progressive) costs at least one bit (its DC
code), so a file smaller than one bit per minimum coded unit cannot hold the image it
declares: it is refused as truncated before decoding. Arithmetic-coded and lossless JPEGs
have no such floor and are not checked.
"""

import math
import os
import struct

__all__ = ["least_bytes"]

#: Start-of-frame markers of Huffman-coded DCT JPEGs: baseline, extended, progressive.
_HUFFMAN_DCT = {0xC0, 0xC1, 0xC2}
#: Every other start-of-frame marker (lossless, hierarchical, arithmetic-coded).
_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: Markers without a length field.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def least_bytes(path):
    """``(width, height, least, size)`` when the JPEG at ``path`` is smaller (``size``
    bytes) than the ``least`` bytes its declared size needs; else None (also when the
    file cannot be parsed: the decoder then says what is wrong)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            frame = _frame_header(f)
    except (OSError, struct.error, ValueError):
        return None
    if frame is None:
        return None
    width, height, sampling = frame
    if len(sampling) == 1:  # one component: its scans are not interleaved
        units = math.ceil(width / 8) * math.ceil(height / 8)
    else:
        hmax = max(h for h, _ in sampling)
        vmax = max(v for _, v in sampling)
        units = math.ceil(width / (8 * hmax)) * math.ceil(height / (8 * vmax))
    least = math.ceil(units / 8)
    return (width, height, least, size) if size < least else None


def _frame_header(f):
    """(width, height, [(h, v) sampling per component]) of a Huffman DCT JPEG, or None."""
    if f.read(2) != b"\xff\xd8":
        return None
    for _ in range(10_000):  # markers before the frame header; a corrupt file may loop
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _STANDALONE or code == 0:
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if code in _HUFFMAN_DCT:
            _, height, width, n = struct.unpack(">BHHB", f.read(6))
            comps = f.read(3 * n)
            if n == 0 or len(comps) != 3 * n or width == 0 or height == 0:
                return None
            sampling = [(max(1, c >> 4), max(1, c & 15)) for c in comps[1::3]]
            return width, height, sampling
        if code in _OTHER_SOF or code == 0xDA:  # no floor, or scan data before a frame
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None
