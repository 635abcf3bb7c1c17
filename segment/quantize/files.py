"""Files in, palette PNGs out, for ``segment quantize``: output names (pngquant's ``--ext``
or a folder), metadata copied (ICC profile, EXIF, DPI) unless stripped, atomic writes,
``--skip-if-larger``."""

import io as _io
import os
import time
from pathlib import Path

import numpy as np

from ..colorkeys import color_keys
from ..errors import SegmentError
from .quantizer import (
    MAX_COLOURS,
    OutputLarger,
    quantize_pixels,
    refuse_missing_channels,
    to_uint8,
)

DEFAULT_EXT = ".q.png"


def output_paths(inputs, output=None, ext=None):
    """The output path of each input.

    - ``output`` ending in ``.png`` with one input: that file;
    - ``output`` otherwise: a folder (created when written), each output named
      ``STEM + ext`` in it (``ext`` default ``.png``);
    - no ``output``: beside the input, ``STEM + ext`` (default ``.q.png``).

    Raises SegmentError for an output that would replace an input or another output.
    """
    inputs = [Path(p) for p in inputs]
    if output is not None:
        output = Path(output)
        as_file = output.suffix.lower() == ".png" and not output.is_dir()
        if as_file and len(inputs) > 1:
            raise SegmentError(
                f"{output}: with several inputs, -o names a folder; give a folder, or use --ext."
            )
        if as_file:
            outs = [output]
        else:
            if output.exists() and not output.is_dir():
                raise SegmentError(f"{output} exists and is not a folder; -o DIR needs a folder.")
            outs = [output / (p.stem + (ext or ".png")) for p in inputs]
    else:
        outs = [p.with_name(p.stem + (ext or DEFAULT_EXT)) for p in inputs]
    for o in outs:
        if o.suffix.lower() != ".png":
            raise SegmentError(f"{o}: the quantised image is a PNG; use a name ending in .png.")
    seen = {}
    real_inputs = {_real(p) for p in inputs}
    for p, o in zip(inputs, outs, strict=True):
        r = _real(o)
        if r in real_inputs:
            raise SegmentError(
                f"{o} is an input; inputs are never overwritten: choose another -o or --ext."
            )
        if r in seen:
            raise SegmentError(f"{seen[r]} and {p} would both be written to {o}; rename one.")
        seen[r] = p
    return outs


def _real(p):
    return os.path.realpath(os.path.abspath(p))


def read_metadata(path, orientation):
    """PNG save parameters carrying the input's ICC profile, EXIF (orientation reset to 1,
    as the pixels are already upright) and DPI, read from the header only (``getexif``
    would decode a PNG whose eXIf chunk follows the pixels)."""
    from PIL import Image as PILImage

    params = {}
    try:
        with PILImage.open(path) as im:
            info = dict(im.info)
    except Exception:  # metadata is best effort: the pixels were readable
        return params
    if isinstance(info.get("icc_profile"), bytes) and info["icc_profile"]:
        params["icc_profile"] = info["icc_profile"]
    dpi = info.get("dpi")
    if isinstance(dpi, tuple) and all(isinstance(v, int | float) and v > 0 for v in dpi[:2]):
        params["dpi"] = tuple(float(v) for v in dpi[:2])
    raw = info.get("exif")
    if isinstance(raw, bytes) and raw:
        try:
            exif = PILImage.Exif()
            exif.load(raw)
            if 0x0112 in exif or orientation != 1:
                exif[0x0112] = 1
            params["exif"] = exif.tobytes()
        except Exception:  # an unreadable EXIF block is left out
            pass
    return params


#: zlib level of the output by --speed (level 4 is within 0.3 % of 9's size, 3× faster).
COMPRESS_LEVEL = {1: 9, 2: 9, 3: 6, 4: 4, 5: 4, 6: 4, 7: 2, 8: 2, 9: 1, 10: 1}


def compress_level(speed, colours):
    """zlib level of a palette PNG of ``colours`` colours written at ``speed``.

    With more than 128 colours the indices of a photo repeat little and zlib's lazy
    matching (levels 4 and up) gains little on them: from speed 4 on such files use level
    3 (k = 256, sample photos: 1 % smaller than level 4 at 2 MP, 1 % larger at 12 MP, both
    below pngquant's sizes, 6–10 % less encoding time; level 2 would save 15 % more time
    but be 5 % larger at 12 MP). With fewer colours level 4 is 2–6 % smaller than level 3.
    """
    level = COMPRESS_LEVEL[speed]
    return min(level, 3) if colours > 128 and speed >= 4 else level


def encode_png(indices, palette, visible=None, metadata=None, compress_level=6):
    """PNG bytes of a palette image (transparent pixels take one more entry)."""
    from PIL import Image as PILImage

    P = len(palette)
    idx = np.ascontiguousarray(indices, dtype=np.uint8)
    params = dict(metadata or {})
    if visible is not None:
        idx = np.where(visible, idx, np.uint8(P))
        params["transparency"] = P
    im = PILImage.frombuffer("P", (idx.shape[1], idx.shape[0]), idx.tobytes(), "raw", "P", 0, 1)
    # A PLTE of exactly the colours used keeps the file small (no 256-entry padding).
    n = P + (visible is not None)
    flat = np.zeros((n, 3), np.uint8)
    flat[:P] = palette
    im.putpalette(flat.ravel().tobytes(), rawmode="RGB")
    buf = _io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level, **params)
    return buf.getvalue()


def quantize_file(
    path,
    out_path,
    *,
    k=None,
    quality=None,
    max_delta_e=None,
    dither=0.0,
    speed=4,
    seed=0,
    max_iter=None,
    tol=1e-4,
    posterize=0,
    palette=None,
    strip=False,
    skip_if_larger=False,
    figures=False,
    overwrite=False,
    max_pixels=None,
):
    """Quantise one image file into a palette PNG (see :func:`quantize_pixels`).

    Returns
    -------
    dict
        The summary: ``input``, ``output``, ``k``, ``colours_used``, ``psnr_db``
        (and ``ssim``, ``delta_e`` with ``figures``), sizes, ``search``, ``notes``,
        ``seconds``.

    Raises
    ------
    SegmentError
        Bad inputs or options (exit 1); :class:`QualityTooLow` (exit 99) and
        :class:`OutputLarger` (exit 98) write nothing.
    """
    from ..imageio.read import load_image
    from ..outputs.files import atomic_write

    t0 = time.perf_counter()
    path, out_path = Path(path), Path(out_path)
    if out_path.exists() and not overwrite:
        raise SegmentError(f"{out_path} already exists; pass --overwrite to replace it.")
    image = load_image(path, max_pixels=max_pixels)
    refuse_missing_channels(image, path)
    notes = list(image.notes)
    visible = image.alpha
    k_max = MAX_COLOURS - (visible is not None)
    targeted = quality is not None or max_delta_e is not None
    k = k if k is not None else (k_max if targeted else 16)
    if k > k_max:
        notes.append(f"transparency takes one palette entry: used k={k_max}.")
        k = k_max
    if palette is not None and len(palette) > k_max:
        raise SegmentError(
            f"the image has transparent pixels, which take one palette entry: the palette "
            f"may have at most {k_max} colours; it has {len(palette)}."
        )
    pixels8 = to_uint8(image.pixels)
    if image.pixels.dtype != np.uint8:
        notes.append("the image has more than 8 bits per channel: quantised from 8-bit values.")
    if max_delta_e is not None:
        indices, pal, info = _delta_e_search(
            pixels8, visible, k, max_delta_e, quality, dither, speed, seed, max_iter, tol, posterize
        )
    else:
        indices, pal, info = quantize_pixels(
            pixels8,
            visible,
            k=k,
            quality=quality,
            dither=dither,
            speed=speed,
            seed=seed,
            max_iter=max_iter,
            tol=tol,
            posterize=posterize,
            palette=palette,
        )
    if info.get("reached") is False:
        notes.append(
            f"target not reached: the largest palette (k={info['k']}) gives PSNR "
            f"{info['psnr_undithered_db']:.2f} dB."
        )
    metadata = {} if strip else read_metadata(path, image.orientation)
    if not strip and image.icc_profile is None:
        metadata.pop("icc_profile", None)  # a non-RGB profile no longer fits the pixels
    data = encode_png(indices, pal, visible, metadata, compress_level(speed, len(pal)))
    in_size = path.stat().st_size
    if skip_if_larger and len(data) > in_size:
        raise OutputLarger(
            f"{path}: the result ({len(data)} bytes) is larger than the input ({in_size} "
            f"bytes); skipped (--skip-if-larger), nothing written."
        )
    if out_path.parent != Path():
        out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_path, overwrite=overwrite) as f:
        f.write(data)
    summary = {
        "input": str(path),
        "output": str(out_path),
        "k": int(info["k"]),
        "colours_used": int(
            np.count_nonzero(
                np.bincount((indices if visible is None else indices[visible]).ravel())
            )
        ),
        "psnr_db": info["psnr_db"],
        "ssim": None,
        "delta_e": info.get("delta_e"),
        "input_bytes": int(in_size),
        "output_bytes": len(data),
        "size_ratio": len(data) / in_size if in_size else None,
        "dither": float(dither),
        "speed": int(speed),
        "palette_given": palette is not None,
        "search": info["search"],
        "metadata": sorted(metadata) if metadata else [],
        "notes": notes,
    }
    if figures:
        from ..metrics import image_figures
        from .mapping import PaletteImage

        f = image_figures(image.pixels, PaletteImage(indices, pal), visible)
        summary.update(ssim=f["ssim"], delta_e=f["delta_e"])
        if f["ssim"] is None:  # undefined, and said why: never a bare dash or nan
            notes.append(
                "SSIM is undefined: it needs 7×7 windows with at least two visible pixels, "
                "at least 3 pixels from the border."
            )
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _delta_e_search(
    pixels8, visible, k_max, max_delta_e, quality, dither, speed, seed, max_iter, tol, posterize
):
    """The smallest k whose mean ΔE2000 (undithered) is at most ``max_delta_e`` (and whose
    PSNR reaches ``quality``'s MAX, if given)."""
    from ..metrics import row_figures
    from .search import search_k

    def evaluate(kk):
        idx, pal, info = quantize_pixels(
            pixels8,
            visible,
            k=kk,
            speed=speed,
            seed=seed,
            max_iter=max_iter,
            tol=tol,
            posterize=posterize,
        )
        rgb = pixels8.reshape(-1, 3) if visible is None else pixels8[visible]
        got = idx.reshape(-1) if visible is None else idx[visible]
        keys = color_keys(rgb)
        _, first, counts = np.unique(
            keys.astype(np.int64) * 256 + got, return_index=True, return_counts=True
        )
        f = row_figures(rgb[first] / 255.0, counts, pal[got[first]])
        info["delta_e"] = f["delta_e"]
        return idx, pal, info

    def meets(r):
        ok = r[2]["delta_e"] <= max_delta_e
        if quality is not None:
            ok &= r[2]["psnr_undithered_db"] >= quality[1]
        return ok

    best, tried = search_k(evaluate, k_max, meets)
    chosen = next(r for kk, r, _ in tried if kk == (k_max if best is None else best))
    indices, pal, info = chosen
    info["search"] = [
        {"k": kk, "psnr_db": r[2]["psnr_db"], "delta_e": r[2]["delta_e"], "reached": ok}
        for kk, r, ok in tried
    ]
    info["reached"] = best is not None
    info["k"] = k_max if best is None else best
    if dither > 0:
        from .diffusion import adaptive_dither
        from .quantizer import image_psnr

        indices = adaptive_dither(pixels8, pal, dither, visible=visible, nearest=indices)
        info["psnr_db"] = image_psnr(pixels8, pal[indices], visible)
    return indices, pal, info
