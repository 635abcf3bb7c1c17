"""The image as the rest of the application sees it: RGB pixels, a visibility mask, and
what the outputs need to know of the file."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
