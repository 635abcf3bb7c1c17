"""Colours: conversions between RGB and the feature spaces, 24-bit colour keys, Pillow's
CIELAB, and the distinct display colours of segments and mixture components.

The conversions go through :mod:`skimage.color` (imported when first needed: it pulls in
scipy, too slow for every start of the CLI).
"""

import functools
import numbers
import warnings

import numpy as np

from .errors import SegmentError

# Chromatic adaptation from the D50 white of ICC / TIFF CIELab to the D65 white of sRGB
# (Bradford, as tabulated by Lindbloom), applied to XYZ column vectors.
_BRADFORD_D50_TO_D65 = np.array(
    [
        [0.9555766, -0.0230393, 0.0631636],
        [-0.0282895, 1.0099416, 0.0210077],
        [0.0122982, -0.0204830, 1.3299098],
    ]
)


def pillow_lab_to_rgb(lab):
    """Pillow ``LAB`` (H, W, 3) uint8 to sRGB uint8 (H, W, 3).

    Pillow stores L* scaled to 0..255 and a*, b* as signed bytes (two's complement, as TIFF
    CIELab does; checked against Pillow's own LittleCMS conversion), relative to D50.
    """
    # Imported here: skimage.color pulls in scipy, too slow for every start of the CLI.
    from skimage.color import lab2xyz, xyz2rgb

    lab = np.ascontiguousarray(lab)
    lab_f = np.empty(lab.shape, np.float64)
    lab_f[..., 0] = lab[..., 0] * (100.0 / 255.0)
    lab_f[..., 1:] = lab[..., 1:].view(np.int8)
    with warnings.catch_warnings():
        # Out-of-gamut colours are clipped, which is what we want; skimage warns about it.
        warnings.simplefilter("ignore", UserWarning)
        xyz = lab2xyz(lab_f, illuminant="D50") @ _BRADFORD_D50_TO_D65.T
        rgb = xyz2rgb(xyz)
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


COLOR_SPACES = ("rgb", "lab")


def check_space(space):
    if space not in COLOR_SPACES:
        raise SegmentError(f"unknown colour space {space!r}; use one of {', '.join(COLOR_SPACES)}.")
    return space


def rgb_to_lab(rgb):
    """CIELAB (D65; L* in [0, 100]) float64 of rows (n, 3) of sRGB in [0, 1]: the project's
    one sRGB → CIELAB conversion, scikit-image's ``rgb2lab``."""
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64)[None, :, :])[0]


def rgb_to_features(rgb, space):
    """(n, 3) RGB in [0, 1] → (n, 3) float32 features of ``space``."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if space == "rgb":
        return rgb
    return rgb_to_lab(rgb).astype(np.float32)


def features_to_rgb(features, space):
    """Colour part of features (n, >=3) → (n, 3) RGB in [0, 1], clipped."""
    f = np.asarray(features, dtype=np.float64)[:, :3]
    if space == "lab":
        from skimage.color import lab2rgb

        f = lab2rgb(f[None, :, :])[0]
    return np.clip(f, 0.0, 1.0)


def rgb_to_uint8(rgb01):
    return np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)


# Hand-picked first colours: matplotlib's tab10 without its grey (the colours people know
# from other plots), then ten more chosen far in CIELAB from these and from each other.
# Lightness L* stays within about 33..82, so no colour vanishes on white or reads as black.
_BASE_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#5b5a0a",
    "#b4c3ff",
    "#007869",
    "#2b3fd6",
    "#960069",
    "#69e1b4",
    "#ffb4a5",
    "#a5780f",
    "#ffb400",
    "#5fc80a",
    "#3c4b87",
)


# Candidate colours beyond the base palette: an sRGB grid limited to mid lightness and
# moderate chroma (neon colours are distinct but tiring, greys read as "background").
_GRID_LEVELS = 21


_L_RANGE = (35.0, 85.0)


_CHROMA_RANGE = (25.0, 70.0)


def _hex_to_rgb(code):
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (1, 3, 5))


@functools.lru_cache(maxsize=16)
def _palette(K):
    """The first K palette colours as a read-only (K, 3) array.

    Beyond the base palette, each new colour is the grid candidate farthest in CIELAB from
    every colour already taken (greedy farthest-point). Golden-ratio hues spread hue only
    and soon land on a base colour; this spreads lightness and chroma too, and stays
    deterministic and prefix-stable: the first k of K colours are the k-colour palette.
    """
    colours = [_hex_to_rgb(code) for code in _BASE_PALETTE[:K]]
    if K > len(_BASE_PALETTE):
        levels = np.linspace(0.0, 1.0, _GRID_LEVELS)
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
        grid = grid.reshape(-1, 3)
        lab = rgb_to_lab(grid)
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        keep = (
            (lab[:, 0] >= _L_RANGE[0])
            & (lab[:, 0] <= _L_RANGE[1])
            & (chroma >= _CHROMA_RANGE[0])
            & (chroma <= _CHROMA_RANGE[1])
        )
        grid, lab = grid[keep], lab[keep]
        taken = rgb_to_lab(np.array(colours))
        nearest = np.min(np.linalg.norm(lab[:, None, :] - taken[None, :, :], axis=-1), axis=1)
        while len(colours) < K:
            best = int(np.argmax(nearest))
            if nearest[best] == 0.0:
                # Every candidate is taken; repeat the palette rather than fail for huge K.
                colours.append(colours[len(colours) % len(_BASE_PALETTE)])
                continue
            colours.append(tuple(grid[best]))
            nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=1))
    out = np.array(colours, dtype=np.float64).reshape(K, 3)
    out.flags.writeable = False
    return out


def default_component_colors(K):
    """K distinct colours for mixture components, segment images and plots.

    The first 20 are a fixed qualitative palette (tab10 without grey, then ten colours far
    from those); more are added deterministically, each as far as possible in CIELAB from
    all before it. No colour is near-white or near-black, and the first ``k`` colours of
    ``default_component_colors(K)`` are ``default_component_colors(k)``.

    Parameters
    ----------
    K : int
        Number of colours, at least 1.

    Returns
    -------
    colors : ndarray of shape (K, 3)
        RGB values in [0, 1], float64; a new array the caller may modify.

    Raises
    ------
    ValueError
        If ``K`` is not a positive integer.
    """
    if isinstance(K, bool) or not isinstance(K, numbers.Integral) or K < 1:
        raise ValueError(f"K must be a positive integer (the number of colours); got {K!r}.")
    return _palette(int(K)).copy()
