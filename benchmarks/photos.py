"""Real-photo test material of any size, built from the bundled sample photos.

The four photos in ``images/`` (0.2–0.3 MP each) are resized to a common height and laid
side by side into one strip; the strip is then tiled row after row (every other row
mirrored, so that seams do not repeat exactly) and the result resized with Lanczos filtering
to the requested number of pixels. Resizing up interpolates new colours, as a real
high-resolution photo has; the content stays photographic (skin, fabric, sky, wood, metal).
"""

from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = Path(__file__).resolve().parent.parent / "images"


def _strip(height=400):
    tiles = []
    for p in sorted(IMAGES.glob("*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        im = Image.open(p).convert("RGB")
        w = round(im.width * height / im.height)
        tiles.append(np.asarray(im.resize((w, height), Image.Resampling.LANCZOS)))
    return np.concatenate(tiles, axis=1)


def photo(megapixels, aspect=1.5):
    """An (H, W, 3) uint8 photo of about ``megapixels`` million pixels (W = aspect × H)."""
    strip = _strip()
    h = round(np.sqrt(megapixels * 1e6 / aspect))
    w = round(h * aspect)
    rows = max(1, int(np.ceil(h / strip.shape[0] * strip.shape[1] / w)))
    block = np.concatenate([strip if i % 2 == 0 else strip[:, ::-1] for i in range(rows)], axis=0)
    return np.asarray(Image.fromarray(block).resize((w, h), Image.Resampling.LANCZOS))


def photo_pixels(megapixels):
    """RGB pixels of :func:`photo` as (N, 3) float32 in [0, 1]."""
    return photo(megapixels).reshape(-1, 3).astype(np.float32) / 255.0


def save_photo(megapixels, path):
    Image.fromarray(photo(megapixels)).save(path, quality=92)
    return path
