"""``segment quantize`` on one file: load, fit (or search) the palette, map, write the
palette PNG, and report the figures."""

import time
from pathlib import Path

import numpy as np

from ..errors import SegmentError
from ..features import pixel_data
from ..imageio.read import load_image
from ..metrics import image_figures
from ..outputs.files import write_palette_png
from ..outputs.paths import check_outputs, make_dir
from .mapping import PaletteImage
from .palette import FIT_ROWS, MAX_COLOURS
from .quantizer import refuse_missing_channels
from .search import Quantizer, check_target, meets_target, not_reached_note, search_k


def quantize_file_mixture(
    path,
    out_path,
    *,
    k=None,
    quality=None,
    max_delta_e=None,
    dither=False,
    lloyd=True,
    seed=0,
    space="rgb",
    max_iter=100,
    tol=1e-3,
    overwrite=False,
    max_pixels=None,
    on_iteration=None,
):
    """Colour-quantise an image into a palette PNG.

    With no target, the palette has at most ``k`` colours (default 16). With ``quality``
    (PSNR in dB) and/or ``max_delta_e`` (mean CIEDE2000), the smallest k up to ``k``
    (default 256) whose result reaches the target(s) is searched for (:func:`search_k`);
    each k after the first starts from the largest mixture fitted below it. Fully
    transparent pixels stay transparent and take one palette entry (so k <= 255 then).

    Parameters
    ----------
    path, out_path : str or Path
        Input image; output ``.png``.
    k : int, optional
        Colours (1–256); with a target, the largest k tried.
    quality : float, optional
        Target PSNR in dB (> 0).
    max_delta_e : float, optional
        Target mean ΔE (CIEDE2000, >= 0).
    dither : bool, default False
        Floyd–Steinberg error diffusion onto the palette (:func:`dither_indices`).
    lloyd : bool, default True
        Lloyd-polish the mixture's means into the least-squared-error palette.
    seed, space, max_iter, tol
        Options of the mixture fit (features in ``space``; the mapping is always RGB).
    overwrite, max_pixels, on_iteration
        As for the other commands.

    Returns
    -------
    dict
        ``k``, ``colours_used``, ``psnr_db``, ``ssim``, ``delta_e``, sizes and their
        ratio, ``dither``, ``mapping``, ``target`` and ``search`` (the k tried, with their
        figures) when a target was given, ``iterations``, ``converged``, ``notes``,
        ``seconds``.

    Raises
    ------
    SegmentError
        For invalid options, unreadable inputs, existing outputs without ``overwrite``.
    """

    t0 = time.perf_counter()
    path, out_path = Path(path), Path(out_path)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 256):
        raise SegmentError(f"k must be between 1 and 256 for a palette PNG; got {k}.")
    quality = check_target("the PSNR target (--quality)", quality, 0.0, True)
    max_delta_e = check_target("the ΔE target (--max-delta-e)", max_delta_e, 0.0, False)
    if out_path.suffix.lower() != ".png":
        raise SegmentError(
            f"{out_path}: the quantised image is a PNG; give the output a .png name."
        )
    check_outputs([out_path], [path], overwrite=overwrite)
    if out_path.parent != Path():
        make_dir(out_path.parent)
    image = load_image(path, max_pixels=max_pixels)
    refuse_missing_channels(image, path)
    # 8-bit images: the distinct colours with their counts (exact); others: at most
    # FIT_ROWS pixels sampled for the fit, every pixel mapped strip by strip.
    data = pixel_data(image, space=space, max_rows=FIT_ROWS, seed=seed)
    notes = list(getattr(image, "notes", ()))
    targeted = quality is not None or max_delta_e is not None
    k_max = MAX_COLOURS - (data.visible is not None)
    k = k if k is not None else (k_max if targeted else 16)
    if k > k_max:
        notes.append(f"transparency takes one palette entry: used k={k_max}.")
        k = k_max
    q = Quantizer(
        image.pixels,
        data,
        dither=bool(dither),
        lloyd=bool(lloyd),
        fit_options={"seed": seed, "max_iter": max_iter, "tol": tol},
        on_iteration=on_iteration,
    )
    search = target = None
    if targeted:

        def meets(c):
            return meets_target(c.figures, quality, max_delta_e)

        def evaluate(kk):
            # Keep the mapping only of the last k tried if it meets the target (the smallest
            # so far that does); others are recomputed if chosen after all.
            c = q.evaluate(kk)
            drop = [o for o in q.tried.values() if o is not c] if meets(c) else [c]
            for o in drop:
                o.indices = o.row_indices = None
            return c

        best, tried = search_k(evaluate, k, meets)
        search = [{"k": kk, **c.figures, "reached": ok} for kk, c, ok in tried]
        target = {"psnr_db": quality, "delta_e": max_delta_e, "reached": best is not None}
        chosen = q.tried[k if best is None else best]
        if best is None:
            notes.append(not_reached_note(chosen, quality, max_delta_e))
    else:
        chosen = q.evaluate(k)
    palette = chosen.fit.palette
    indices = q.indices(chosen)
    q.tried.clear()
    size = write_palette_png(out_path, indices, palette, data.visible, overwrite=overwrite)
    figures = image_figures(image.pixels, PaletteImage(indices, palette), data.visible)
    if figures["ssim"] is None:  # undefined, and said why: never a bare dash or nan
        notes.append(
            "SSIM is undefined: it needs 7×7 windows with at least two visible pixels, "
            "at least 3 pixels from the border."
        )
    used = np.unique(indices if data.visible is None else indices[data.visible])
    in_size = path.stat().st_size
    model = chosen.fit.model
    return {
        "input": str(path),
        "output": str(out_path),
        "k": int(chosen.k),
        "colours_used": len(used),
        "psnr_db": figures["psnr_db"],
        "ssim": figures["ssim"],
        "delta_e": figures["delta_e"],
        "input_bytes": int(in_size),
        "output_bytes": int(size),
        "size_ratio": float(size / in_size) if in_size else None,
        "dither": bool(dither),
        "mapping": "nearest palette colour" + (" with Floyd–Steinberg dithering" if dither else ""),
        "lloyd": bool(lloyd),
        "target": target,
        "search": search,
        "iterations": None if model is None else int(model.n_iter_),
        "converged": None if model is None else bool(model.converged_),
        "notes": notes + chosen.fit.notes,
        "seconds": time.perf_counter() - t0,
    }
