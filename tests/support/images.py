"""Small synthetic images shared by the tests."""

import numpy as np
from PIL import Image


def stripes(path, colours, *, seed=0, size=(32, 24), noise=5):
    """Write vertical stripes of the given colours, with a little noise, as ``path`` (its
    folders created); return ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3))
    edges = np.linspace(0, w, len(colours) + 1).astype(int)
    for c, a, b in zip(colours, edges[:-1], edges[1:], strict=True):
        img[:, a:b] = c
    img += rng.normal(0, noise, img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def gradient(path, seed=0, size=(24, 32)):
    """Write a noisy colour gradient of ``size`` (H, W) as ``path``; return ``path``."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 7, y * 9, (x + y) * 4], axis=-1) + rng.normal(0, 10, (h, w, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path
