"""Segments a person would draw: the mixture's over-segmentation, merged by description
length.

1. A Gaussian mixture is fitted to the pixels' colours (no position features) and each
   pixel takes its component after smoothing (:mod:`segment.labels`); the connected
   regions of equal component are the over-segmentation (a surface of one colour is one
   region, a textured one many small ones).
2. Each region is modelled as one Gaussian over per-pixel features (CIELAB colour and
   window-PCA texture energies, :mod:`segment.texture`), and adjacent regions are merged
   greedily while that shortens the description of the image: the bits of each region's
   pixels under its Gaussian plus the bits of the borders (:mod:`segment.coding`,
   :mod:`segment.hierarchy`).
   A border pixel costs less where it runs along a strong colour edge of the photo
   (:func:`edge_cost`): given the edges, such a contour is cheap to code.
3. Regions smaller than a fraction of the image then join their cheapest neighbour.

The number of regions follows from the photo; ``n_regions`` cuts the same hierarchy at a
given number instead.
"""

import functools

import numpy as np
from scipy import ndimage

from .coding import coding_length
from .color import rgb_to_features
from .hierarchy import merge_regions, region_borders, region_statistics, relabel
from .regions import connected_regions
from .texture import fill_missing, reduced_image, texture_map, window_scale

__all__ = [
    "DEFAULTS",
    "FEATURE_SETTINGS",
    "MERGE_SETTINGS",
    "data_features",
    "describe_regions",
    "region_features",
]

#: Pixels of the reference image size at which the coding constants are set (a BSDS
#: photo, 481 × 321): a larger image is coded as if it had that many pixels.
REFERENCE_PIXELS = 481 * 321

#: Default settings (chosen on BSDS500 train; see the issue note). ``eps`` is larger than
#: with colour alone (16): the coding length's distortion is shared by all D features
#: (I + D/ε² Σ), so that seven features need a larger ε for the colour to be coded as
#: coarsely as before. ``window=0, eps=16`` codes the colour alone.
DEFAULTS = dict(
    k=10,
    mixture_space="lab",
    feature_space="lab",
    smooth=None,
    eps=34.0,
    boundary_bits=20.0,
    edge_ratio=0.25,
    edge_scale=4.0,
    texture=0.0,
    texture_sigma=2.0,
    window=7,
    window_dims=4,
    window_weight=0.5,
    window_energy=2.0,
    min_size=0.002,
    pre_size=3e-4,
    components=True,
)

#: The keys of :data:`DEFAULTS` that :func:`data_features` takes (``feature_space`` is its
#: ``space``), and those that :func:`describe_regions` takes.
FEATURE_SETTINGS = (
    "texture",
    "texture_sigma",
    "window",
    "window_dims",
    "window_weight",
    "window_energy",
)
MERGE_SETTINGS = (
    "eps",
    "boundary_bits",
    "edge_ratio",
    "edge_scale",
    "min_size",
    "pre_size",
    "components",
)


def rgb_features(rgb, space="lab"):
    """Colour features (h, w, 3) float32 of colours (h, w, 3) in [0, 1]: CIELAB, or with
    ``space="rgb"`` RGB scaled to [0, 100] (the range of L*, so that ε means about as much)."""
    h, w = rgb.shape[:2]
    if space == "rgb":
        return (np.asarray(rgb, dtype=np.float32) * np.float32(100.0)).reshape(h, w, 3)
    return rgb_to_features(np.ascontiguousarray(rgb).reshape(-1, 3), "lab").reshape(h, w, 3)


def sampling_step(n_pixels):
    """Grid step of the pixels the region statistics are estimated from: 1 up to four
    times the reference size, then enough to keep about that many."""
    return max(1, int(np.sqrt(n_pixels / (4.0 * REFERENCE_PIXELS))))


def data_features(
    data,
    *,
    texture=DEFAULTS["texture"],
    texture_sigma=DEFAULTS["texture_sigma"],
    window=DEFAULTS["window"],
    window_dims=DEFAULTS["window_dims"],
    window_weight=DEFAULTS["window_weight"],
    window_energy=DEFAULTS["window_energy"],
    space=DEFAULTS["feature_space"],
):
    """:func:`region_features` of a :class:`segment.features.PixelData`: its own CIELAB
    rows when the mixture was fitted on them (no second conversion), else from its
    colours."""
    same = space == data.space == "lab"
    if same and texture <= 0 and not (window and window_weight > 0):
        return data.colour_features
    return region_features(
        data.strip_rgb,
        data.shape,
        texture=texture,
        texture_sigma=texture_sigma,
        window=window,
        window_dims=window_dims,
        window_weight=window_weight,
        window_energy=window_energy,
        space=space,
        visible=data.visible,
        colour=functools.partial(_data_colour, data) if same else None,
    )


def _data_colour(data, a, b, step=1):
    """CIELAB planes (3, rows, cols) of image rows a:b:step, columns ::step of ``data``
    (space "lab"), looked up per distinct colour; invisible pixels (not among the distinct
    colours) are converted from their own colour, as :func:`rgb_features` gives them."""
    planes = data.colour_planes(a, b, step)
    if data.visible is not None:
        hidden = ~data.visible[a:b:step, ::step]
        if hidden.any():
            rgb = data.strip_rgb(a, b)[::step, ::step][hidden]
            planes[:, hidden] = rgb_features(rgb[None], "lab")[0].T
    return planes


def region_features(
    strip_rgb,
    shape,
    *,
    texture=0.0,
    texture_sigma=2.0,
    window=0,
    window_dims=4,
    window_weight=1.0,
    window_energy=0.0,
    space="lab",
    visible=None,
    colour=None,
):
    """A callable ``features(a, b, step=1) -> (rows, cols, D)`` float32 of image rows
    ``a:b:step`` and columns ``::step``: CIELAB; with ``texture`` > 0 the local standard
    deviation of L* in a Gaussian window of ``texture_sigma`` pixels, times ``texture``;
    with ``window`` (an odd side, 0 = none) the ``window_dims`` window-PCA texture features
    of :mod:`segment.texture`, times ``window_weight``. ``space``: the colour features'
    space (:func:`rgb_features`); the texture is always of CIELAB windows.

    ``strip_rgb(a, b)`` gives the rows' colours (b - a, W, 3) in [0, 1]. The texture
    does not read pixels outside ``visible`` (H, W) bool, nor missing (NaN) channels.
    ``colour(a, b, step)``, if given, gives the colour features of those pixels as planes
    (3, rows, cols) instead of converting ``strip_rgb`` (e.g.
    :meth:`segment.features.PixelData.colour_planes`, looked up per distinct colour: the
    same values).

    The features are made as planes (D, rows, cols) and returned as their (rows, cols, D)
    view: the region statistics read them by feature.
    """
    H, W = shape
    tex, scale = None, 1
    if window and window_weight > 0:
        # On the image's block means at about the reference size: the same window covers
        # the same part of the scene at any resolution, and costs what it costs there.
        scale = window_scale(H * W, REFERENCE_PIXELS)

        def known_rgb(a, b):
            rgb = np.asarray(strip_rgb(a, b), dtype=np.float32)
            if visible is None:
                return rgb
            return np.where(visible[a:b, :, None], rgb, np.float32(np.nan))

        small = rgb_features(fill_missing(reduced_image(known_rgb, shape, scale)))
        tex = texture_map(small, size=int(window), dims=int(window_dims), energy=window_energy)
        tex *= np.float32(window_weight)
    halo = int(np.ceil(4 * texture_sigma)) if texture > 0 else 0

    if colour is None:

        def colour(a, b, step=1):
            lab = rgb_features(strip_rgb(a, b)[::step, ::step], space)
            return np.moveaxis(lab, -1, 0)

    tex_planes = None if tex is None else np.ascontiguousarray(np.moveaxis(tex, -1, 0))
    D = 3 + (0 if tex is None else tex.shape[2]) + (1 if texture > 0 else 0)

    def features(a, b, step=1):
        rows, cols = np.arange(a, b, step), np.arange(0, W, step)
        out = np.empty((D, len(rows), len(cols)), dtype=np.float32)
        out[:3] = colour(a, b, step)
        if tex is not None:
            # Rows, then columns, of the small map: two 1-D takes (a 2-D fancy index
            # costs ten times as much).
            small = np.take(tex_planes, rows // scale, axis=1)
            out[3 : 3 + len(tex_planes)] = np.take(small, cols // scale, axis=2)
        if texture > 0:
            lo, hi = max(0, a - halo), min(H, b + halo)
            light = rgb_features(strip_rgb(lo, hi))[..., 0].astype(np.float64)
            mean = ndimage.gaussian_filter(light, texture_sigma, mode="nearest")
            sq = ndimage.gaussian_filter(light * light, texture_sigma, mode="nearest")
            std = np.sqrt(np.maximum(sq - mean * mean, 0.0)) * texture
            out[-1] = std[a - lo : b - lo : step, ::step]
        return out.transpose(1, 2, 0)

    return features


def describe_regions(
    labels,
    n_labels,
    features,
    *,
    visible=None,
    eps=DEFAULTS["eps"],
    boundary_bits=DEFAULTS["boundary_bits"],
    edge_ratio=DEFAULTS["edge_ratio"],
    edge_scale=DEFAULTS["edge_scale"],
    min_size=DEFAULTS["min_size"],
    pre_size=DEFAULTS["pre_size"],
    n_regions=None,
    components=False,
    out=None,
):
    """Merge the connected regions of ``labels`` by description length.

    Parameters
    ----------
    labels : ndarray (H, W) of ints
        An over-segmentation by label (e.g. mixture components), values in [0, n_labels);
        its connected regions are the starting regions.
    n_labels : int
    features : ndarray (H, W, D) or callable ``features(a, b)``
        Per-pixel features the regions are coded with.
    visible : ndarray (H, W) bool, optional
        Pixels outside it belong to no region (label -1).
    eps, boundary_bits : float
        See :mod:`segment.coding`; ``boundary_bits`` is the cost of a border pixel where
        the image is smooth.
    edge_ratio, edge_scale : float
        Edge-aware borders (:func:`edge_cost`): a border pixel on a strong colour edge
        costs ``edge_ratio`` times ``boundary_bits``; 1 = every border pixel the same.
    min_size : float
        Smallest region of the default cut, as a fraction of the visible pixels.
    pre_size : float
        Speckle: regions under this fraction of the visible pixels join their cheapest
        neighbour before the best-first merging.
    n_regions : int, optional
        Cut the hierarchy at this many regions instead (no small-region clean-up).
    components : bool, default False
        Label each final region with the label of ``labels`` that covers most of it
        (so that a region keeps a mixture component's colour and number), instead of
        numbering the regions.
    out : ndarray (H, W), optional
        Where to write the labels (may be ``labels`` itself).

    Returns
    -------
    labels : ndarray (H, W) int32 (or ``out``)
        Region labels 0..R-1, or component labels with ``components`` (-1 outside
        ``visible``, or ``out``'s own values there).
    result : segment.hierarchy.MergeResult
    """
    regions, n = connected_regions(labels, n_labels, visible=visible)
    H, W = regions.shape
    step = sampling_step(H * W)
    if callable(features) and edge_ratio != 1.0:
        # The statistics and the edge strength read the same blocks of the same grid.
        features = functools.cache(features)
    *stats, seen = region_statistics(features, regions, n, step=step)
    label_of = functools.cache(functools.partial(_label_of, labels, regions, n))
    _fill_unseen(stats, seen, label_of, n_labels)
    cost = None
    if edge_ratio != 1.0:
        cost = edge_cost(
            features, regions.shape, step, ratio=edge_ratio, scale=edge_scale, visible=visible
        )
    edges = region_borders(regions, n, pixel_cost=cost)
    visible_pixels = float(stats[0][1:].sum())
    # Larger images are coded as if they had the reference size; smaller ones as they are
    # (weighting their pixels up would pretend to more evidence than they hold).
    weight = min(1.0, REFERENCE_PIXELS / max(visible_pixels, 1.0))
    result = merge_regions(
        *stats,
        edges,
        eps=eps,
        boundary_bits=boundary_bits,
        weight=weight,
        n_regions=n_regions,
        min_size=min_size * visible_pixels,
        pre_size=pre_size * visible_pixels,
    )
    mapping = result.mapping
    if components:
        mapping = _dominant_label(label_of, n, stats[0], mapping, result.n_final, n_labels)
    if out is not None and visible is not None:
        # Pixels outside ``visible`` keep their value in ``out``.
        lut = np.append(mapping, -1).astype(np.int64)
        H, W = regions.shape
        step = max(1, (1 << 20) // max(W, 1))
        for a in range(0, H, step):
            r = regions[a : a + step]
            inside = r > 0
            out[a : a + step][inside] = lut[r[inside]]
        return out, result
    return relabel(regions, mapping, out=out), result


def edge_strength(features, shape, step=1, *, sigma=1.0):
    """Colour gradient magnitude (features' units per pixel of the grid) of the first
    three features on the grid of ``step`` (h', w') float32, after Gaussian smoothing of
    ``sigma`` grid pixels; built strip by strip (the grid is small, the image need not be).
    """
    H = shape[0]
    rows = max(step, ((1 << 20) // max(shape[1], 1)) // step * step)
    grid = []
    for a in range(0, H, rows):
        f = (
            features(a, min(H, a + rows), step)
            if callable(features)
            else features[a : a + rows : step, ::step]
        )
        grid.append(np.moveaxis(np.asarray(f[..., :3], dtype=np.float32), -1, 0))
    grid = np.concatenate(grid, axis=1)  # (3, h', w') planes: the filters read rows
    if not np.isfinite(grid).all():  # missing channels: nan_to_num costs four passes
        grid = np.nan_to_num(grid)
    sq = np.zeros(grid.shape[1:], dtype=np.float32)
    for plane in grid:
        sq += ndimage.gaussian_gradient_magnitude(plane, sigma, mode="nearest") ** 2
    return np.sqrt(sq)


def edge_cost(features, shape, step=1, *, ratio, scale, sigma=1.0, visible=None):
    """Per-pixel weight of a border pixel (:func:`segment.hierarchy.region_borders`):

        w(g) = ratio + (1 - ratio) · exp(-½ (g / τ)²),   τ = scale · median(g)

    where g is the colour gradient magnitude at the pixel (:func:`edge_strength`). A border
    where the image is smooth (g ≪ τ) costs the full ``boundary_bits`` per pixel; one
    along an edge much stronger than the photo's typical gradient costs ``ratio`` times
    that: given the image's edges, a contour that follows one is cheap to code. τ follows
    the photo's own gradients (the median over the ``visible`` pixels), so the cost does
    not depend on its contrast or resolution.

    Returns a callable ``cost(a, b) -> (b - a, W)`` float32 of image rows [a, b).
    """
    g = edge_strength(features, shape, step, sigma=sigma)
    typical = g if visible is None else g[visible[::step, ::step]]
    tau = max(scale * float(np.median(typical)) if typical.size else 0.0, 0.1)
    w = (ratio + (1.0 - ratio) * np.exp(-0.5 * (g / tau) ** 2)).astype(np.float32)
    cols = np.arange(shape[1]) // step

    def cost(a, b):
        if step == 1:
            return w[a:b]
        return w[np.arange(a, b) // step][:, cols]

    return cost


def _fill_unseen(stats, seen, label_of, n_labels):
    """Regions no grid pixel fell in (a few pixels each) get the mean and covariance of
    their label (mixture component), pooled over the regions of that label that were;
    ``label_of()`` gives each region's label."""
    n, s, q = stats
    unseen = np.flatnonzero((seen == 0) & (n > 0))
    unseen = unseen[unseen > 0]
    if not len(unseen):
        return
    label_of = label_of()
    ok = np.flatnonzero(seen > 0)
    ok = ok[ok > 0]
    cn = np.bincount(label_of[ok], weights=n[ok], minlength=n_labels)
    cs = np.zeros((n_labels, s.shape[1]))
    cq = np.zeros((n_labels, *q.shape[1:]))
    np.add.at(cs, label_of[ok], s[ok])
    np.add.at(cq, label_of[ok], q[ok])
    c = label_of[unseen]
    per = np.divide(n[unseen], cn[c], out=np.zeros(len(c)), where=cn[c] > 0)
    s[unseen] = cs[c] * per[:, None]
    q[unseen] = cq[c] * per[:, None, None]


def _label_of(labels, regions, n):
    """Label of ``labels`` of each region id 0..n (regions are of one label each)."""
    label_of = np.zeros(n + 1, dtype=np.int64)
    H, W = regions.shape
    step = max(1, (1 << 20) // max(W, 1))
    for a in range(0, H, step):
        # Every pixel of a region writes the same label: no mask of the inside needed.
        label_of[regions[a : a + step]] = labels[a : a + step]
    label_of[0] = 0  # written by the pixels outside every region
    return label_of


def _dominant_label(label_of, n, sizes, mapping, n_final, n_labels):
    """Map initial region -> label covering most of its final region (``label_of()``: the
    label of each initial region)."""
    label_of = label_of()
    live = np.flatnonzero(mapping >= 0)
    table = np.zeros((n_final, n_labels))
    np.add.at(table, (mapping[live], label_of[live]), sizes[live])
    best = np.argmax(table, axis=1) if n_final else np.zeros(0, dtype=np.int64)
    out = np.full(n + 1, -1, dtype=np.int64)
    out[live] = best[mapping[live]]
    return out


def total_description(n, s, q, edges, eps, boundary_bits, weight=1.0):
    """Bits of a partition given its region statistics and borders (for checks)."""
    live = n > 0
    live[0] = False
    return float(
        coding_length(n[live], s[live], q[live], eps, weight=weight).sum()
        + boundary_bits * np.sqrt(weight) * edges[2].sum()
    )
