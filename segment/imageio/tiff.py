"""TIFFs that Pillow cannot decode: several float samples per pixel (RGB float32, with NaN
as "no data", as scientific and satellite tools write them), read with tifffile (a
dependency of scikit-image).

Such a pixel may miss some channels and not others: its missing values stay NaN in the
image (``gmm`` marginalises them), and a pixel with no finite value at all is invisible,
as a NaN pixel of a one-sample float image is.
"""

import contextlib
import logging
from pathlib import Path

import numpy as np

from ..errors import SegmentError, printable
from .image import Image

SUFFIXES = (".tif", ".tiff")
#: TIFF SampleFormat of IEEE floating point samples.
_IEEEFP = 3


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs what it finds wrong in a file to stderr; a command line tool must print
    one line per error (its own), so the logger is muted while a file is parsed."""
    logger = logging.getLogger("tifffile")
    saved = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = saved


def is_float_multisample(path):
    """Whether ``path`` is a TIFF whose first page holds several float samples per pixel:
    the layout Pillow cannot read and :func:`load_tiff` can. Decided from the header."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES or not path.is_file():
        return False
    with contextlib.suppress(Exception), _quiet_tifffile():
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return int(page.sampleformat) == _IEEEFP and int(page.samplesperpixel) > 1
    return False


def read_samples(path, max_pixels=None):
    """The first page of a TIFF as (values (H, W, C) float64, sample dtype): NaN where a
    value is missing (not finite, or the pixel's extra alpha sample is 0), the alpha sample
    removed. None when tifffile cannot read it or the layout is not 1-4 samples per pixel."""
    # (An alpha sample is recognised by its ExtraSamples type; other extra samples are data.)
    path = Path(path)
    try:
        import tifffile

        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if max_pixels is not None and page.imagelength * page.imagewidth > max_pixels:
                raise SegmentError(
                    f"{printable(path)}: {page.imagewidth}x{page.imagelength} pixels is over "
                    f"the limit of {max_pixels}; raise --max-pixels if you trust the file."
                )
            # Extra samples of type 1 or 2 are (associated or unassociated) alpha.
            alpha = any(int(e) in (1, 2) for e in (getattr(page, "extrasamples", ()) or ()))
            arr = page.asarray()
    except SegmentError:
        raise
    except Exception:
        return None
    if arr.ndim == 3 and arr.shape[0] <= 4 < arr.shape[2]:  # planar: samples first
        arr = np.moveaxis(arr, 0, 2)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or arr.dtype.kind not in "uif":
        return None
    if 0 in arr.shape[:2]:
        return None
    values = arr.astype(np.float64)
    if alpha and arr.shape[2] > 1:
        alpha = values[:, :, -1]
        values = values[:, :, :-1]
        values[alpha == 0] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values, arr.dtype


def load_tiff(path, *, frame=0, max_pixels=None):
    """A float multi-sample TIFF (see :func:`is_float_multisample`) as an :class:`Image`:
    float32 RGB in [0, 1] (kept if the values are within it, else the finite values' range
    scaled to it), NaN where a channel is missing, invisible where all are."""
    path = Path(path)
    if frame != 0:
        raise SegmentError(
            f"{printable(path)}: only the first page of a float multi-sample TIFF is read; "
            f"there is no frame {frame}."
        )
    read = read_samples(path, max_pixels)
    if read is None:
        raise SegmentError(
            f"{printable(path)}: a float TIFF that tifffile cannot read either (damaged, or "
            "not 1 to 4 samples per pixel); convert it to a one- or three-band float TIFF."
        )
    values, dtype = read
    C = values.shape[2]
    if C == 2:  # two bands without alpha: no colour mapping for them
        raise SegmentError(
            f"{printable(path)}: 2 float samples per pixel; segment reads 1 (grey), 3 (RGB) "
            "or 4 (RGB + alpha)."
        )
    if C == 1:
        values = np.repeat(values, 3, axis=2)
    values = values[:, :, :3]
    if np.isnan(values).all():
        raise SegmentError(
            f"{printable(path)}: every value is missing (NaN); there is nothing to segment."
        )
    lo, hi = np.nanmin(values), np.nanmax(values)
    if lo < 0 or hi > 1:
        values = (values - lo) / (hi - lo) if hi > lo else np.clip(values, 0, 1)
    pixels = values.astype(np.float32)
    missing = np.isnan(pixels)
    visible = ~missing.all(axis=2)
    pixels[~visible] = 0.0  # what an invisible pixel holds is never used
    notes = ("read with tifffile (several float samples per pixel)",)
    if missing.any() and visible.any() and (missing.any(axis=2) & visible).any():
        n = int((missing.any(axis=2) & visible).sum())
        notes += (f"{n} pixel(s) miss some channels (NaN): segmented on the others",)
    return Image(
        pixels=pixels,
        alpha=None if visible.all() else visible,
        path=path,
        format="TIFF",
        mode=f"{dtype.name} x {C}",
        frame=0,
        n_frames=1,
        bit_depth=8 * dtype.itemsize,
        notes=notes,
    )
