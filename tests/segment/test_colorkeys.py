"""24-bit colour keys against the formula, in blocks and back."""

import numpy as np
import pytest

from segment.colorkeys import color_keys, keys_to_rgb


@pytest.mark.parametrize("shape", [(37, 23, 3), (101, 3), (1, 1, 3), (0, 5, 3)])
@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_keys_are_the_formula_in_any_block_size(shape, block):
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    keys = color_keys(rgb, block=block)
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    assert keys.dtype == np.uint32 and keys.shape == shape[:-1]
    np.testing.assert_array_equal(keys, r * 65536 + g * 256 + b)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_keys_back_to_colours(dtype):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    back = keys_to_rgb(color_keys(rgb), dtype)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, rgb.astype(dtype))


def test_input_is_not_modified_and_extremes_are_exact():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 1]], np.uint8)
    before = rgb.copy()
    np.testing.assert_array_equal(color_keys(rgb), [0, 0xFFFFFF, 0xFF0001])
    np.testing.assert_array_equal(rgb, before)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_keys_of_unsigned_dtypes_holding_8_bit_values(dtype):
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3)).astype(dtype)
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    np.testing.assert_array_equal(color_keys(rgb), r * 65536 + g * 256 + b)
    # A non-contiguous view (every other column) gives the keys of its own pixels.
    np.testing.assert_array_equal(color_keys(rgb[:, ::2]), (r * 65536 + g * 256 + b)[:, ::2])
