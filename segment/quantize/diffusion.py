"""Error diffusion only where it helps.

Floyd–Steinberg error diffusion turns the banding of a small palette in smooth gradients
into fine noise the eye averages away (blurred PSNR rises), but in edges and texture the
image already masks the banding, and the diffused error only adds noise (plain PSNR falls
by several dB). As in pngquant, the dithering is therefore modulated by the local
contrast: each pixel's target is moved from its nearest palette colour q towards its true
colour x by a strength s = level × max(0, 1 − σ / :data:`SMOOTH_STD`), with σ the luma
standard deviation of its 3×3 neighbourhood; the error diffused is then that of
q + s (x − q): the full error in flat areas, none where the image is busy.

The diffusion itself is Pillow's (``Image.quantize(palette=..., dither=FLOYDSTEINBERG)``,
in C), onto the given palette.
"""

import numpy as np

#: Luma standard deviation (0–255 units) at which the dithering strength reaches 0.
SMOOTH_STD = 8.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def floyd_steinberg(pixels8, palette):
    """Pillow's Floyd–Steinberg diffusion of an (H, W, 3) uint8 image onto ``palette``
    (P, 3) uint8; (H, W) uint8 indices into ``palette``."""
    from PIL import Image

    pal = np.asarray(palette, np.uint8)
    P = len(pal)
    # Pillow uses all 256 entries: pad with repeats of the palette, then fold them back.
    padded = pal[np.arange(256) % P]
    target = Image.new("P", (1, 1))
    target.putpalette(padded.ravel().tolist())
    im = Image.fromarray(np.ascontiguousarray(pixels8), "RGB")
    out = im.quantize(palette=target, dither=Image.Dither.FLOYDSTEINBERG)
    idx = np.asarray(out, dtype=np.uint8)
    return idx % np.uint8(P) if P < 256 else idx


def local_std(pixels8):
    """Standard deviation of luma (0–255) in the 3×3 window around each pixel (edge
    pixels repeated beyond the border); the window sums are separable (rows, then
    columns)."""
    y = pixels8.astype(np.float32) @ _LUMA

    def box3(a):
        p = np.pad(a, 1, mode="edge")
        h = p[:, :-2] + p[:, 1:-1]
        h += p[:, 2:]
        v = h[:-2] + h[1:-1]
        v += h[2:]
        return v

    m = box3(y)
    m *= 1.0 / 9.0
    y *= y
    var = box3(y)
    var *= 1.0 / 9.0
    var -= m * m
    np.maximum(var, 0.0, out=var)
    return np.sqrt(var, out=var)


def adaptive_dither(pixels8, palette, level, *, visible=None, nearest=None):
    """Palette indices (H, W) uint8: error-diffused in proportion to the smoothness.

    Parameters
    ----------
    pixels8 : ndarray (H, W, 3) uint8
    palette : ndarray (P, 3) uint8
    level : float in (0, 1]
        Strength in flat areas (see the module's description).
    visible : ndarray (H, W) bool, optional
        Invisible pixels get 0.
    nearest : ndarray (H, W), optional
        The undithered (nearest-colour) indices, if already computed.
    """
    pal = np.asarray(palette, np.uint8)
    if nearest is None:
        from ..colorkeys import color_keys, keys_to_rgb
        from .histogram import count_colours, map_pixels, nearest_colour

        keys_image = color_keys(pixels8)
        keys, _ = count_colours(keys_image.ravel())
        index = nearest_colour(keys_to_rgb(keys, np.float32), pal).astype(np.uint8)
        nearest = map_pixels(keys_image, keys, index)
    strength = local_std(pixels8)
    strength *= -float(level) / SMOOTH_STD
    strength += float(level)
    np.maximum(strength, 0.0, out=strength)
    q = pal[nearest].astype(np.float32)
    target = pixels8.astype(np.float32)
    target -= q
    target *= strength[..., None]
    target += q
    np.rint(target, out=target)
    out = floyd_steinberg(target.astype(np.uint8), pal)
    if visible is not None:
        out[~visible] = 0
    return out
