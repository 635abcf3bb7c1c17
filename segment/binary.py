"""Clustering of black-and-white images of one size with a Bernoulli mixture (``segment
binary``): every image is one row of bits (1 = ink, i.e. dark), the mixture's components
are "prototype" images (Bishop, PRML §9.3.3, Fig. 9.10).
"""

import csv
import io as _io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

import gmm

from .errors import SegmentError
from .imageio import load_image
from .outputs.files import png_bytes, write_bytes, write_json
from .outputs.paths import make_dir

#: Shortest side, in screen pixels, of one component in the means picture.
MEAN_TILE = 64


@dataclass
class BinaryImages:
    """Images of one folder as rows of bits.

    Attributes
    ----------
    X : ndarray (N, H*W) uint8
        1 where a pixel is ink (darker than the threshold), 0 elsewhere (and where invisible).
    names : list of str
        The files, relative to the folder, in the order of the rows.
    shape : tuple (H, W)
    n_thresholded : int
        Images that held more than two grey levels and were thresholded.
    notes : list of str
    """

    X: np.ndarray
    names: list
    shape: tuple
    n_thresholded: int = 0
    notes: list = field(default_factory=list)


def parse_threshold(text):
    """``"otsu"`` or a number in (0, 1) (a fraction of the grey range)."""
    if str(text).lower() == "otsu":
        return "otsu"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise SegmentError(f"--threshold must be 'otsu' or a number between 0 and 1; got {text!r}.")
    return value


def _grey(image):
    """Grey levels in [0, 1] (Rec. 601 luma), invisible pixels white (paper, no ink)."""
    pixels = image.pixels.astype(np.float64)
    top = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.pixels.dtype, 1.0)
    grey = (pixels @ np.array([0.299, 0.587, 0.114])) / top
    if image.alpha is not None:
        grey[~image.alpha] = 1.0
    return grey


def image_bits(grey, threshold):
    """1 where ``grey`` is ink. Two-level images keep their two levels (the darker is ink);
    others are cut at Otsu's threshold or at ``threshold``. Returns the bits and whether a
    threshold was applied."""
    levels = np.unique(grey)
    if levels.size <= 2:
        # Already black and white (or blank): the darker level is ink unless it is white.
        return (grey < levels.max()) if levels.size == 2 else (grey < 0.5), False
    if threshold == "otsu":
        from skimage.filters import threshold_otsu

        cut = threshold_otsu(grey)
    else:
        cut = threshold
    return grey <= cut, True


def load_binary_folder(folder, paths, *, threshold="otsu", max_pixels=None):
    """Read ``paths`` (relative to ``folder``) as bits; every image must have one size."""
    rows, shape, first, n_cut = [], None, None, 0
    for rel in paths:
        image = load_image(Path(folder) / rel, max_pixels=max_pixels)
        grey = _grey(image)
        if shape is None:
            shape, first = grey.shape, rel
        elif grey.shape != shape:
            raise SegmentError(
                f"{rel} is {grey.shape[1]}×{grey.shape[0]} pixels but {first} is "
                f"{shape[1]}×{shape[0]}; segment binary needs images of one size (resize or "
                "pad them first)."
            )
        bits, cut = image_bits(grey, threshold)
        n_cut += cut
        rows.append(bits.ravel())
    if not rows:
        raise SegmentError(f"{folder} holds no image files.")
    notes = []
    if n_cut:
        how = "Otsu's threshold" if threshold == "otsu" else f"grey level {threshold:g}"
        notes.append(
            f"{n_cut} of {len(rows)} images had more than two grey levels and were cut at "
            f"{how} (darker = ink)."
        )
    X = np.array(rows, dtype=np.uint8)
    return BinaryImages(X, [Path(p).as_posix() for p in paths], shape, n_cut, notes)


def means_picture(means, shape, weights=None):
    """The component means as one row of grey images (ink black), PRML Fig. 9.10.

    Components are shown by decreasing weight when ``weights`` is given; each tile is
    enlarged by pixel repetition to at least :data:`MEAN_TILE` pixels and framed by a gap.
    """
    H, W = shape
    order = np.argsort(-np.asarray(weights), kind="stable") if weights is not None else None
    tiles = means if order is None else means[order]
    scale = max(1, int(np.ceil(MEAN_TILE / min(H, W))))
    gap = max(2, scale // 2)
    K = tiles.shape[0]
    canvas = np.full((H * scale + 2 * gap, K * (W * scale + gap) + gap), 255, dtype=np.uint8)
    for i, mu in enumerate(tiles):
        tile = np.round(255.0 * (1.0 - mu.reshape(H, W))).astype(np.uint8)
        tile = np.kron(tile, np.ones((scale, scale), dtype=np.uint8))
        x = gap + i * (W * scale + gap)
        canvas[gap : gap + H * scale, x : x + W * scale] = tile
    return canvas


def clusters_csv(names, R, order):
    """CSV text: file, cluster (numbered by decreasing weight, as in the picture) and the
    responsibility of that cluster, then every responsibility."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    K = R.shape[1]
    writer.writerow(["file", "cluster", "responsibility", *[f"p{k}" for k in range(K)]])
    for name, r in zip(names, R, strict=True):
        best = int(np.argmax(r))
        writer.writerow([name, int(rank[best]), f"{r[best]:.6f}", *[f"{r[k]:.6f}" for k in order]])
    return buf.getvalue()


def purity(labels, truth):
    """Fraction of items whose cluster's most frequent true class is their own."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    hits = sum(np.unique(truth[labels == k], return_counts=True)[1].max() for k in set(labels))
    return hits / len(truth)


def cluster_folder(
    folder,
    paths,
    out_dir,
    *,
    k,
    threshold="otsu",
    seed=0,
    restarts=1,
    max_iter=200,
    tol=1e-4,
    plots=True,
    overwrite=False,
    max_pixels=None,
    on_iteration=None,
):
    """Fit a K-component Bernoulli mixture to the images and write the outputs.

    Writes into ``out_dir``: ``means.png`` (the component means, by decreasing weight),
    ``clusters.csv``, ``loglik.png`` (unless ``plots`` is False) and ``model.json``.
    Returns a summary dict.
    """
    t0 = time.perf_counter()
    data = load_binary_folder(folder, paths, threshold=threshold, max_pixels=max_pixels)
    N = data.X.shape[0]
    if k > N:
        raise SegmentError(f"-k {k} is more than the {N} images; use at most {N} clusters.")
    model = gmm.BernoulliMixture(
        k, n_init=restarts, max_iter=max_iter, tol=tol, random_state=seed, callback=on_iteration
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gmm.ConvergenceWarning)
        model.fit(data.X)
    notes = list(data.notes) + [str(w.message) for w in caught]
    R = model.predict_proba(data.X)
    order = np.argsort(-model.weights_, kind="stable")
    out_dir = Path(out_dir)
    make_dir(out_dir)
    paths_out = {
        "means": out_dir / "means.png",
        "clusters": out_dir / "clusters.csv",
        "model": out_dir / "model.json",
    }
    if plots:
        paths_out["loglik"] = out_dir / "loglik.png"
    existing = [p.name for p in paths_out.values() if p.exists()]
    if existing and not overwrite:
        raise SegmentError(
            f"{out_dir / existing[0]} already exists; pass --overwrite to replace it."
        )
    picture = means_picture(model.means_, data.shape, model.weights_)
    write_bytes(paths_out["means"], png_bytes(PILImage.fromarray(picture)), overwrite=overwrite)
    write_bytes(
        paths_out["clusters"],
        clusters_csv(data.names, R, order).encode("utf-8"),
        overwrite=overwrite,
    )
    if plots:
        from .outputs.plots import plot_loglik, save_figure

        fig = plot_loglik(
            model.history_,
            converged=model.converged_,
            title="EM for a Bernoulli mixture",
            ylabel="mean log-posterior per image",
        )
        save_figure(fig, paths_out["loglik"], overwrite=overwrite)
    loglik = float(model.score(data.X))
    summary = {
        "input": str(folder),
        "k": int(k),
        "images": int(N),
        "shape": list(data.shape),
        "thresholded": int(data.n_thresholded),
        "threshold": threshold,
        "iterations": int(model.n_iter_),
        "converged": bool(model.converged_),
        "log_likelihood": loglik,
        "bic": float(model.bic(data.X)),
        "cluster_sizes": np.bincount(R.argmax(axis=1), minlength=k)[order].tolist(),
        "notes": notes,
    }
    document = {
        "model": model.to_dict(),
        "image_shape": list(data.shape),
        "ink": "1 = pixel darker than the threshold",
        "cluster_order": order.tolist(),
        "summary": summary,
    }
    write_json(paths_out["model"], document, overwrite=overwrite)
    summary["seconds"] = time.perf_counter() - t0
    summary["outputs"] = {name: str(p) for name, p in paths_out.items()}
    return summary
