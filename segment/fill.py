"""Mixture in-painting: missing or masked pixels replaced by their conditional mean.

A Gaussian mixture is fitted to the pixels' features (channels scaled to [0, 1], and the
position (x, y) / max(H, W) times ``xy``) with the missing values left missing: ``gmm``
marginalises them (exact EM for values missing at random). Each pixel with a missing channel
then gets E[x_m | x_o] = Σ_k p(k | x_o) E[x_m | x_o, k] under the mixture: from its other
channels when it has any, and from its position with ``xy > 0``. Pixels with no channel
at all are left out of the fit (their position tells nothing of colour) and filled from
their position; without position features they can only get the image's mean colour.

Missing means: NaN or infinity in a float image (per channel; scientific and satellite TIFFs
use NaN as "no data"), a fully transparent pixel, or a pixel set in ``mask``. Float and
multi-channel TIFFs that Pillow cannot read are read with tifffile (a dependency of
scikit-image).
"""

import inspect
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gmm

from .errors import SegmentError
from .imageio.read import load_image
from .imageio.tiff import read_samples
from .outputs.files import atomic_write

TIFF_SUFFIXES = (".tif", ".tiff")
OUT_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class Raster:
    """An image as numbers: ``values`` (H, W, C) float64 in the file's units, NaN where
    missing; ``dtype`` the file's sample type (what the output is written as)."""

    values: np.ndarray
    dtype: np.dtype
    path: Path

    @property
    def shape(self):
        return self.values.shape[:2]


def read_raster(path, *, max_pixels=None):
    """Read an image with its missing values as NaN (see the module's notes)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        read = read_samples(path, max_pixels)
        if read is not None:
            return Raster(read[0], np.dtype(read[1]), path)
    image = load_image(path, max_pixels=max_pixels)
    pixels = image.pixels
    values = pixels.astype(np.float64)
    if image.alpha is not None:
        values[~image.alpha] = np.nan
    return Raster(values, np.dtype(pixels.dtype), path)


def read_mask(path, shape, *, max_pixels=None):
    """Pixels to fill: the non-black, visible pixels of an image the size of the input."""
    image = load_image(path, max_pixels=max_pixels)
    if image.pixels.shape[:2] != tuple(shape):
        H, W = shape
        h, w = image.pixels.shape[:2]
        raise SegmentError(
            f"{Path(path).name}: the mask is {w}x{h} pixels but the image is {W}x{H}; give a "
            "mask of the image's size (white = pixels to fill)."
        )
    mask = image.pixels.max(axis=2) > 0
    if image.alpha is not None:
        mask &= image.alpha
    return mask


def _unit_range(raster):
    """Per-channel (lo, hi) that map the values onto [0, 1]: the full range of an integer
    type, the observed range of a float image."""
    C = raster.values.shape[2]
    if raster.dtype.kind in "ui":
        info = np.iinfo(raster.dtype)
        return np.zeros(C), np.full(C, float(info.max))
    with np.errstate(all="ignore"):
        lo = np.nanmin(raster.values.reshape(-1, C), axis=0)
        hi = np.nanmax(raster.values.reshape(-1, C), axis=0)
    if raster.dtype.kind == "f" and (np.nanmin(lo) >= 0) and (np.nanmax(hi) <= 1):
        return np.zeros(C), np.ones(C)
    return lo, np.where(hi > lo, hi, lo + 1.0)


def features(unit, xy):
    """Rows (H W, C [+2]) of the channels in [0, 1] and, with ``xy``, the scaled position."""
    H, W, C = unit.shape
    X = unit.reshape(-1, C)
    if not xy:
        return X
    scale = xy / max(H, W)
    rows, cols = np.divmod(np.arange(H * W, dtype=np.float32), np.float32(W))
    return np.column_stack([X, cols * scale, rows * scale]).astype(unit.dtype, copy=False)


def fill_image(
    raster,
    mask=None,
    *,
    k=8,
    covariance="full",
    xy=1.0,
    sample=250_000,
    seed=0,
    max_iter=100,
    tol=1e-3,
    on_iteration=None,
):
    """The raster's values with missing (NaN) and masked pixels replaced by their
    conditional mean under a mixture fitted to what is observed.

    Returns
    -------
    filled : ndarray (H, W, C) float64, in the raster's units
    info : dict
        ``n_filled`` pixels and ``n_values`` values filled, ``model`` the fitted mixture.
    """
    values = np.array(raster.values, dtype=np.float64)
    if mask is not None:
        values[mask] = np.nan
    H, W, C = values.shape
    missing = np.isnan(values)
    if not missing.any():
        return values, {"n_filled": 0, "n_values": 0, "model": None}
    if missing.all():
        raise SegmentError(
            f"{raster.path.name}: no pixel holds a value (all missing or masked); there is "
            "nothing to fill from."
        )
    lo, hi = _unit_range(raster)
    unit = ((values - lo) / (hi - lo)).astype(np.float32)
    X = features(unit, np.float32(xy))
    # Pixels with no channel at all are left out of the fit: their position says nothing
    # of colour, and holes (a mask) are not missing at random. A component fitted to them
    # would keep whatever colour it started with.
    fit_rows = np.flatnonzero(~missing.reshape(H * W, C).all(axis=1))
    if sample and fit_rows.size > sample:
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.choice(fit_rows, size=sample, replace=False))
    rows = X[fit_rows]
    model = gmm.GaussianMixture(
        k,
        covariance_type=covariance,
        random_state=seed,
        max_iter=max_iter,
        tol=tol,
        reg_covar=1e-6,
        callback=on_iteration,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gmm.UnobservedRowsWarning)  # counted in the summary
        warnings.simplefilter("ignore", gmm.ConvergenceWarning)
        model.fit(rows)
    todo = np.flatnonzero(missing.reshape(H * W, C).any(axis=1))
    filled_unit = model.impute(X[todo])[:, :C]
    out = values.reshape(H * W, C)
    holes = missing.reshape(H * W, C)[todo]
    # Only the missing values change: observed ones are returned as read.
    out[todo] = np.where(holes, lo + np.clip(filled_unit, 0.0, 1.0) * (hi - lo), out[todo])
    return out.reshape(H, W, C), {
        "n_filled": int(todo.size),
        "n_values": int(missing.sum()),
        "model": model,
    }


def write_raster(values, dtype, out_path, *, overwrite=False):
    """Write ``values`` (H, W, C) atomically: a PNG (8-bit; 16-bit for a 16-bit grey
    image) or a TIFF in the input's sample type."""
    from PIL import Image as PILImage

    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    C = values.shape[2]
    if suffix in TIFF_SUFFIXES:
        import tifffile

        data = _as_dtype(values, dtype)
        # tifffile wants a named file or a seekable buffer; the atomic temporary is neither.
        buffer = io.BytesIO()
        photometric = "rgb" if C == 3 else "minisblack"
        tifffile.imwrite(buffer, data[:, :, 0] if C == 1 else data, photometric=photometric)
        with atomic_write(out_path, overwrite=overwrite) as f:
            f.write(buffer.getbuffer())
        return
    if dtype == np.uint16 and C == 1:
        im = PILImage.fromarray(_as_dtype(values, np.uint16)[:, :, 0])
    else:
        scale = 255.0 / (65535.0 if dtype == np.uint16 else 1.0 if dtype.kind == "f" else 255.0)
        if dtype.kind == "f" and (np.nanmax(values) > 1 or np.nanmin(values) < 0):
            lo, hi = np.nanmin(values), np.nanmax(values)
            scale = 255.0 / max(hi - lo, 1e-300)
            values = values - lo
        px = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        im = PILImage.fromarray(px[:, :, 0] if C == 1 else px[:, :, :3])
    with atomic_write(out_path, overwrite=overwrite) as f:
        im.save(f, format="PNG")


def _as_dtype(values, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def fill_file(path, out_path, *, mask_path=None, overwrite=False, max_pixels=None, **fit):
    """Read ``path``, fill its missing and masked pixels (:func:`fill_image`, which takes the
    keywords ``fit``: k, covariance, xy, sample, seed, max_iter, tol, on_iteration), write
    ``out_path`` atomically; return a summary dict."""
    t0 = time.perf_counter()
    # Unknown keywords are refused before any file is read; k and xy go into the summary.
    chosen = inspect.signature(fill_image).bind(None, None, **fit)
    chosen.apply_defaults()
    path, out_path = Path(path), Path(out_path)
    if out_path.suffix.lower() not in OUT_SUFFIXES:
        raise SegmentError(
            f"{out_path.name}: the output must be a .png or .tif/.tiff file "
            "(TIFF keeps float and 16-bit values)."
        )
    inputs = [path] + ([Path(mask_path)] if mask_path is not None else [])
    if out_path.exists() and any(out_path.resolve() == p.resolve() for p in inputs):
        raise SegmentError(f"{out_path.name} is an input; write the result to another file.")
    if out_path.exists() and not overwrite:
        raise SegmentError(f"{out_path.name} already exists; pass --overwrite to replace it.")
    raster = read_raster(path, max_pixels=max_pixels)
    mask = None
    if mask_path is not None:
        mask = read_mask(mask_path, raster.shape, max_pixels=max_pixels)
    filled, info = fill_image(raster, mask, **fit)
    write_raster(filled, raster.dtype, out_path, overwrite=overwrite)
    model = info["model"]
    H, W = raster.shape
    return {
        "input": str(path),
        "output": str(out_path),
        "mask": None if mask_path is None else str(mask_path),
        "width": W,
        "height": H,
        "channels": int(raster.values.shape[2]),
        "missing_pixels": int(np.isnan(raster.values).any(axis=2).sum()),
        "masked_pixels": 0 if mask is None else int(mask.sum()),
        "filled_pixels": info["n_filled"],
        "filled_values": info["n_values"],
        "k": chosen.arguments["k"],
        "xy": chosen.arguments["xy"],
        "n_iter": None if model is None else int(model.n_iter_),
        "converged": None if model is None else bool(model.converged_),
        "seconds": time.perf_counter() - t0,
    }
