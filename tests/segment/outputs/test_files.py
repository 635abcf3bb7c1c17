"""PNG writers of label images: the flat-segment zlib settings keep every pixel."""

import numpy as np
import pytest
from PIL import Image

from segment.outputs.files import write_labels_png, write_palette_png


def _segments(shape=(120, 170), k=6, seed=0):
    """Blocky segments with ragged edges, like a label map."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k, size=(shape[0] // 10 + 1, shape[1] // 10 + 1))
    labels = np.kron(coarse, np.ones((10, 10), dtype=np.int64))[: shape[0], : shape[1]]
    noise = rng.random(shape) < 0.02
    labels[noise] = rng.integers(0, k, size=int(noise.sum()))
    return labels.astype(np.uint8)


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("flat", [False, True])
def test_palette_png_round_trips(tmp_path, alpha, flat):
    labels = _segments()
    palette = np.random.default_rng(1).integers(0, 256, size=(6, 3)).astype(np.uint8)
    visible = np.random.default_rng(2).random(labels.shape) > 0.1 if alpha else None
    path = tmp_path / "seg.png"
    write_palette_png(path, labels, palette, visible, flat=flat)
    with Image.open(path) as im:
        rgba = np.asarray(im.convert("RGBA"))
    expected = palette[labels]
    where = np.ones(labels.shape, bool) if visible is None else visible
    np.testing.assert_array_equal(rgba[..., :3][where], expected[where])
    np.testing.assert_array_equal(rgba[..., 3], np.where(where, 255, 0))


def test_labels_png_round_trips_and_flat_segments_compress_well(tmp_path):
    labels = _segments(shape=(600, 800))
    visible = np.ones(labels.shape, bool)
    visible[:50, :50] = False
    path = tmp_path / "labels.png"
    write_labels_png(path, labels, 6, visible)
    with Image.open(path) as im:
        back = np.asarray(im)
    np.testing.assert_array_equal(back, np.where(visible, labels, 255))
    # Run-length matching on a label map: no larger than zlib's default strategy.
    default = tmp_path / "default.png"
    Image.fromarray(np.where(visible, labels, 255).astype(np.uint8)).save(default)
    assert path.stat().st_size <= default.stat().st_size
