"""EM you can watch: an animated GIF of the mixture's ellipses moving over the pixels'
colours, iteration by iteration (Bishop, PRML Fig. 9.8), with the log-likelihood so far.

:class:`EMRecorder` is a ``gmm`` callback that keeps, at every EM iteration, the parameters
the objective was computed for (only the weights, means and the covariance blocks of the
shown features, so memory stays small); :func:`write_em_gif` draws a thinned selection of
those iterations plus the final fitted mixture and writes the GIF atomically.
"""

import io as _io
import math

import numpy as np
from PIL import Image as PILImage

from .files import atomic_write

#: At most this many frames (iterations are thinned, keeping the first and the last).
MAX_FRAMES = 40
#: Frames per second of the GIF; the final frame is held longer.
FPS = 4
#: Width and height of the GIF in pixels (figure inches times DPI).
FIGSIZE, DPI = (7.5, 3.0), 80


class EMRecorder:
    """A ``gmm.GaussianMixture`` callback recording the parameters at every iteration.

    Parameters
    ----------
    covariance_type : str
        The fitted model's covariance type (to read its covariance layout).
    dims : sequence of int
        Features whose means and covariance blocks are kept (e.g. the 3 colour channels).
    then : callable, optional
        Called as ``then(iteration, objective)`` after recording (a progress bar).
    """

    def __init__(self, covariance_type, dims, then=None):
        self.covariance_type = covariance_type
        self.dims = list(dims)
        self.then = then
        self.frames = []  # (iteration, objective, weights, means, covariances)
        self.history = []

    def __call__(self, iteration, objective, *, params):
        K, D = params.means.shape
        covs = block_covariances(self.covariance_type, params.covariances, K, D, self.dims)
        # Iterations are counted across fits (a fit on a sample, then its polish on all
        # pixels, make one animation).
        count = len(self.frames) + 1
        self.frames.append(
            (count, float(objective), params.weights.copy(), params.means[:, self.dims], covs)
        )
        self.history.append(float(objective))
        if self.then is not None:
            self.then(iteration, objective)


def block_covariances(covariance_type, covariances, K, D, dims):
    """The (K, d, d) covariance blocks of features ``dims`` in any covariance layout."""
    C = np.asarray(covariances, dtype=np.float64)
    idx = np.ix_(dims, dims)
    if covariance_type == "full":
        return np.stack([c[idx] for c in C])
    if covariance_type == "tied":
        return np.broadcast_to(C[idx], (K, len(dims), len(dims))).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(c[dims]) for c in C])
    if covariance_type == "tied_diag":
        return np.broadcast_to(np.diag(C[dims]), (K, len(dims), len(dims))).copy()
    return C[:, None, None] * np.eye(len(dims))


def thin(n, max_frames=MAX_FRAMES):
    """Indices of at most ``max_frames`` of ``n`` iterations: the first and the last, and
    between them evenly spaced in the square root of the index (EM moves most early)."""
    if n <= max_frames:
        return list(range(n))
    u = np.linspace(0.0, 1.0, max_frames)
    idx = np.unique(np.round((u**2) * (n - 1)).astype(int))
    return idx.tolist()


def _ellipse(mean2, cov2, n_sigma, n_points=60):
    """Points of the n-sigma ellipse of a 2-D Gaussian."""
    vals, vecs = np.linalg.eigh(cov2)
    vals = np.maximum(vals, 0.0)
    t = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (vecs @ (n_sigma * np.sqrt(vals)[:, None] * circle)).T + mean2


def _limits(values):
    lo, hi = np.percentile(values, [0.5, 99.5])
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def render_frames(points, colours, frames, final, *, names, max_frames=MAX_FRAMES):
    """RGB frames (list of (H, W, 3) uint8) of EM's progress.

    Parameters
    ----------
    points : ndarray (n, 3)
        A sample of the rows in the shown features.
    colours : ndarray (n, 3)
        Display colour of every point, RGB in [0, 1].
    frames : list
        :attr:`EMRecorder.frames`.
    final : tuple (weights, means, covariances)
        The fitted mixture in the shown features; it is the last frame.
    names : sequence of 3 str
        Feature names for the axes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    history = np.array([f[1] for f in frames])
    picked = [frames[i] for i in thin(len(frames), max_frames - 1)] if frames else []
    steps = [*picked, (len(frames), None, *final)]
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.2]})
    pairs = [(0, 1), (0, 2)] if points.shape[1] >= 3 else [(0, 1), (1, 0)]
    limits = [_limits(points[:, d]) for d in range(points.shape[1])]
    for ax, (i, j) in zip(axes[:2], pairs, strict=True):
        ax.scatter(points[:, i], points[:, j], s=3, c=colours, linewidths=0, alpha=0.6)
        ax.set_xlim(*limits[i])
        ax.set_ylim(*limits[j])
        ax.set_xlabel(names[i], fontsize=8)
        ax.set_ylabel(names[j], fontsize=8)
        ax.tick_params(labelsize=6)
    curve = axes[2]
    curve.set_xlabel("EM iteration", fontsize=8)
    curve.set_ylabel("mean log-likelihood", fontsize=8)
    curve.tick_params(labelsize=6)
    if len(history):
        curve.set_xlim(0.5, max(len(history), 2) + 0.5)
        lo, hi = float(history.min()), float(history.max())
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        curve.set_ylim(lo - pad, hi + pad)
    (line,) = curve.plot([], [], color="black", lw=1.2, marker=".", ms=3, animated=True)
    title = fig.text(0.5, 0.97, "", ha="center", va="top", fontsize=9, animated=True)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.88, wspace=0.35)
    # The points and axes are drawn once; every frame restores them and draws only what
    # moves (blitting) with artists made once and moved, several times cheaper than a
    # full redraw.
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    K = len(final[0])
    moving = []
    for ax, (i, j) in zip(axes[:2], pairs, strict=True):
        ellipses = [
            [ax.plot([], [], style, color="black", lw=1.0, animated=True)[0] for k in range(K)]
            for style in ("-", "--")
        ]
        centres = ax.plot([], [], "x", color="red", ms=4, mew=1.0, animated=True)[0]
        moving.append((ax, i, j, ellipses, centres))
    images = []
    for step, (iteration, _, weights, means, covs) in enumerate(steps):
        fig.canvas.restore_region(background)
        alpha = np.clip(0.35 + 0.65 * weights / max(float(weights.max()), 1e-300), 0.35, 1.0)
        for ax, i, j, ellipses, centres in moving:
            for n_sigma, lines in zip((1, 2), ellipses, strict=True):
                for k, artist in enumerate(lines):
                    e = _ellipse(means[k, [i, j]], covs[k][np.ix_([i, j], [i, j])], n_sigma)
                    artist.set_data(e[:, 0], e[:, 1])
                    artist.set_alpha(alpha[k])
                    ax.draw_artist(artist)
            centres.set_data(means[:, i], means[:, j])
            ax.draw_artist(centres)
        shown = history[:iteration]
        line.set_data(np.arange(1, len(shown) + 1), shown)
        curve.draw_artist(line)
        last = step == len(steps) - 1
        title.set_text(f"EM iteration {iteration}" + (" — the fitted mixture" if last else ""))
        fig.draw_artist(title)
        images.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    fig.clear()
    return images


def gif_bytes(images, fps=FPS):
    """An animated GIF, the last frame held for two seconds; one adaptive palette per frame."""
    frames = [
        PILImage.fromarray(im).quantize(
            colors=128, method=PILImage.Quantize.FASTOCTREE, dither=PILImage.Dither.NONE
        )
        for im in images
    ]
    durations = [math.ceil(1000 / fps)] * len(frames)
    durations[-1] = 2000
    buf = _io.BytesIO()
    frames[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=False,
    )
    return buf.getvalue()


def write_em_gif(
    path, points, colours, recorder, final, *, names, overwrite=False, max_frames=MAX_FRAMES
):
    """Render ``recorder``'s iterations and the ``final`` mixture and write ``path``
    atomically. Returns the number of frames."""
    images = render_frames(
        points, colours, recorder.frames, final, names=names, max_frames=max_frames
    )
    data = gif_bytes(images)
    with atomic_write(path, overwrite=overwrite) as f:
        f.write(data)
    return len(images)
