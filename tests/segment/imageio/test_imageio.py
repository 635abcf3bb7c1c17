"""Tests of segment.imageio (loading every kind of image file) and of the atomic writes of
segment.outputs.files."""

import csv
import dataclasses
import hashlib
import os
import stat
import struct
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile

import segment.outputs.files
from segment.errors import SegmentError
from segment.imageio import READABLE_EXTENSIONS, Image, count_frames, iter_frames, load_image
from segment.outputs.files import TEMP_PREFIX, atomic_write

ODD = Path(__file__).resolve().parents[2] / "data" / "odd"
NOT_IMAGES = {"INDEX.tsv", "LICENSE.md", "PngSuite.LICENSE", "make_extra.py"}
ORIENTATION = 274  # EXIF tag number


# =============================================================================================
# Helpers
# =============================================================================================


def save(tmp_path, name, im, **kwargs):
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def fake_file(tmp_path, monkeypatch, im, name="fake.img"):
    """A file whose opening yields the in-memory Pillow image ``im``.

    For modes no file format stores (La, RGBa, HSV, RGBX, I;16L, I;16N): everything after
    Pillow's open() runs as for a real file.
    """
    path = tmp_path / name
    path.write_bytes(b"placeholder")
    monkeypatch.setattr(PILImage, "open", lambda *args, **kwargs: im)
    return path


def png_bytes(width, height, bit_depth, colour_type, raw_rows, *chunks):
    """A PNG made by hand, for what Pillow cannot write. ``raw_rows``: packed, unfiltered."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in raw_rows))
    extra = b"".join(chunk(kind, data) for kind, data in chunks)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def exif_with_orientation(orientation):
    exif = PILImage.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def blocks_pattern(rows=2, cols=3, size=8):
    """(rows*size, cols*size, 3) uint8 image of distinct flat colour blocks: asymmetric under
    every flip and rotation, and coarse enough to survive JPEG."""
    colours = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
        dtype=np.uint8,
    )
    index = np.arange(rows * cols).reshape(rows, cols)
    return colours[np.kron(index, np.ones((size, size), dtype=int))]


# What each EXIF orientation asks a viewer to do with the stored rows and columns (EXIF 2.3,
# tag 274), written from the specification rather than from Pillow.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_valid(image):
    """Everything a caller may rely on in a loaded Image."""
    assert isinstance(image, Image)
    h, w, c = image.pixels.shape
    assert c == 3 and h >= 1 and w >= 1
    assert image.pixels.dtype in (np.uint8, np.uint16, np.float32)
    if image.pixels.dtype == np.float32:
        assert np.isfinite(image.pixels).all()
        assert image.pixels.min() >= 0 and image.pixels.max() <= 1
    if image.alpha is not None:
        assert image.alpha.dtype == np.bool_ and image.alpha.shape == (h, w)
        assert not image.alpha.all()
    assert 0 <= image.frame < image.n_frames
    assert image.bit_depth in (1, 8, 16, 32)
    assert image.orientation in range(1, 9)


def check_message(err, path):
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    assert Path(path).name in message


# =============================================================================================
# Every mode normalised to RGB
# =============================================================================================


def test_mode_1_is_black_and_white_uint8(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    image = load_image(save(tmp_path, "b.png", PILImage.fromarray(bits)))
    assert image.mode == "1" and image.bit_depth == 1
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (2, 3, 3)
    np.testing.assert_array_equal(image.pixels[..., 0], bits * 255)
    assert image.alpha is None


def test_mode_L_grey_is_replicated(tmp_path):
    grey = np.array([[0, 7, 128], [200, 254, 255]], dtype=np.uint8)
    image = load_image(save(tmp_path, "g.png", PILImage.fromarray(grey)))
    assert image.mode == "L" and image.pixels.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image.pixels[..., channel], grey)
    assert image.alpha is None
    assert image.pixels.flags.c_contiguous and image.pixels.flags.writeable


def test_mode_LA_alpha_zero_is_invisible(tmp_path):
    la = np.array([[[10, 0], [20, 1], [30, 255]]], dtype=np.uint8)
    image = load_image(save(tmp_path, "la.png", PILImage.fromarray(la, mode="LA")))
    assert image.mode == "LA"
    np.testing.assert_array_equal(image.pixels[0, :, 1], [10, 20, 30])
    np.testing.assert_array_equal(image.alpha, [[False, True, True]])


def test_mode_La_is_unpremultiplied(tmp_path, monkeypatch):
    la = PILImage.fromarray(np.array([[[100, 255], [60, 128], [0, 0]]], dtype=np.uint8), "LA")
    image = load_image(fake_file(tmp_path, monkeypatch, la.convert("La")))
    assert image.mode == "La"
    np.testing.assert_allclose(image.pixels[0, :2, 0], [100, 60], atol=2)
    np.testing.assert_array_equal(image.alpha, [[True, True, False]])


def test_mode_P_without_transparency(tmp_path):
    im = PILImage.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 128, 0, 1, 2, 3])
    image = load_image(save(tmp_path, "p.png", im))
    assert image.mode == "P" and image.alpha is None
    np.testing.assert_array_equal(image.pixels[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image.pixels[0, 1], [0, 128, 0])
    np.testing.assert_array_equal(image.pixels[1, 0], [1, 2, 3])


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_mode_P_single_transparent_index(tmp_path, fmt):
    im = PILImage.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 128, 0, 1, 2, 3])
    image = load_image(save(tmp_path, f"p.{fmt}", im, transparency=1))
    np.testing.assert_array_equal(image.alpha, [[True, False], [True, False]])
    np.testing.assert_array_equal(image.pixels[0, 0], [255, 0, 0])


def test_mode_P_with_per_entry_trns_alpha(tmp_path):
    # tRNS with one alpha per palette entry: 0 is invisible, 1 and 128 are visible.
    im = PILImage.fromarray(np.array([[0, 1, 2, 3]], dtype=np.uint8), "P")
    im.putpalette(list(range(12)))
    image = load_image(save(tmp_path, "trns.png", im, transparency=bytes([255, 0, 1, 128])))
    np.testing.assert_array_equal(image.alpha, [[True, False, True, True]])


def test_mode_PA(tmp_path):
    pa = PILImage.new("PA", (3, 1))
    pa.putpalette([255, 0, 0, 0, 0, 255])
    pa.putdata([(0, 255), (1, 0), (1, 7)])
    image = load_image(save(tmp_path, "pa.tiff", pa))
    assert image.mode == "PA"
    np.testing.assert_array_equal(image.pixels[0, [0, 2]], [[255, 0, 0], [0, 0, 255]])
    np.testing.assert_array_equal(image.alpha, [[True, False, True]])


def test_mode_RGB_exact(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = load_image(save(tmp_path, "rgb.png", PILImage.fromarray(rgb)))
    assert image.mode == "RGB" and image.bit_depth == 8 and image.format == "PNG"
    np.testing.assert_array_equal(image.pixels, rgb)
    assert image.alpha is None and (image.height, image.width) == (5, 7)


def test_mode_RGB_colour_key_trns(tmp_path):
    rgb = np.array([[[1, 2, 3], [1, 2, 4], [1, 2, 3]]], dtype=np.uint8)
    image = load_image(save(tmp_path, "key.png", PILImage.fromarray(rgb), transparency=(1, 2, 3)))
    np.testing.assert_array_equal(image.alpha, [[False, True, False]])


def test_mode_RGBA_alpha_mask_and_opaque_means_none(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = [[[9, 8, 7], [6, 5, 4]], [[3, 2, 1], [0, 0, 0]]]
    rgba[..., 3] = [[255, 0], [1, 128]]
    image = load_image(save(tmp_path, "rgba.png", PILImage.fromarray(rgba)))
    np.testing.assert_array_equal(image.alpha, [[True, False], [True, True]])
    np.testing.assert_array_equal(image.pixels[0, 0], [9, 8, 7])

    rgba[..., 3] = 255
    opaque = load_image(save(tmp_path, "opaque.png", PILImage.fromarray(rgba)))
    assert opaque.mode == "RGBA" and opaque.alpha is None


def test_mode_RGBa_is_unpremultiplied(tmp_path, monkeypatch):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [9, 9, 9, 0]]], np.uint8)
    premultiplied = PILImage.fromarray(rgba).convert("RGBa")
    image = load_image(fake_file(tmp_path, monkeypatch, premultiplied))
    assert image.mode == "RGBa"
    np.testing.assert_allclose(image.pixels[0, :2].astype(int), [[200, 100, 50]] * 2, atol=2)
    np.testing.assert_array_equal(image.alpha, [[True, True, False]])


def test_mode_RGBX_has_no_alpha(tmp_path, monkeypatch):
    rgbx = PILImage.new("RGBX", (2, 1), (10, 20, 30, 0))
    image = load_image(fake_file(tmp_path, monkeypatch, rgbx))
    np.testing.assert_array_equal(image.pixels, [[[10, 20, 30]] * 2])
    assert image.alpha is None


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [((0, 0, 0, 0), (255, 255, 255)), ((255, 0, 0, 0), (0, 255, 255)), ((0, 0, 0, 255), (0, 0, 0))],
)
def test_mode_CMYK(tmp_path, cmyk, rgb):
    image = load_image(save(tmp_path, "cmyk.tiff", PILImage.new("CMYK", (2, 2), cmyk)))
    assert image.mode == "CMYK"
    np.testing.assert_array_equal(image.pixels, np.broadcast_to(rgb, (2, 2, 3)))


def test_mode_YCbCr(tmp_path):
    rgb = blocks_pattern(size=2)
    image = load_image(save(tmp_path, "ycc.tiff", PILImage.fromarray(rgb).convert("YCbCr")))
    assert image.mode == "YCbCr"
    np.testing.assert_allclose(image.pixels.astype(int), rgb, atol=3)


def test_mode_HSV(tmp_path, monkeypatch):
    rgb = blocks_pattern(size=2)
    image = load_image(fake_file(tmp_path, monkeypatch, PILImage.fromarray(rgb).convert("HSV")))
    assert image.mode == "HSV"
    np.testing.assert_allclose(image.pixels.astype(int), rgb, atol=3)


def test_mode_LAB_converts_to_srgb(tmp_path):
    # Pillow's own RGB -> LAB conversion (LittleCMS, D50) as an independent round trip.
    rgb = np.concatenate([blocks_pattern(size=2), np.full((4, 6, 3), 128, np.uint8)])
    lab = PILImage.fromarray(rgb).convert("LAB")
    image = load_image(save(tmp_path, "lab.tiff", lab))
    assert image.mode == "LAB" and image.pixels.dtype == np.uint8
    # 8-bit Lab cannot hold every sRGB colour exactly: fully saturated primaries come back a
    # few steps off (Pillow's own LittleCMS round trip is off by up to 32 here).
    error = np.abs(image.pixels.astype(int) - rgb)
    assert error.max() <= 12 and error.mean() < 2


def test_mode_LAB_out_of_gamut_is_clipped_quietly(tmp_path):
    lab = np.array([[[255, 127, 127], [0, 128, 128], [128, 127, 128]]], dtype=np.uint8)
    path = save(tmp_path, "gamut.tiff", PILImage.frombytes("LAB", (3, 1), lab.tobytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = load_image(path)
    check_valid(image)


def test_mode_LAB_corpus_matches_rgb_original():
    lab = load_image(ODD / "hopper.Lab.tif").pixels.astype(int)
    rgb = load_image(ODD / "hopper.tif").pixels.astype(int)
    assert np.median(np.abs(lab - rgb)) <= 2


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_16_bit_grey_keeps_full_precision(tmp_path, monkeypatch, mode):
    values = np.array([[0, 1, 255, 256], [1000, 4095, 65534, 65535]], dtype=np.uint16)
    # Built from bytes: Pillow's convert() between 16-bit modes clips at 255.
    byte_order = {"I;16": "<u2", "I;16B": ">u2", "I;16L": "<u2", "I;16N": "=u2"}[mode]
    raw = PILImage.frombytes(mode, (4, 2), values.astype(byte_order).tobytes())
    if mode in ("I;16", "I;16B"):
        path = save(tmp_path, "g16.tiff", raw)
    else:  # no file format stores these two as such
        path = fake_file(tmp_path, monkeypatch, raw)
    image = load_image(path)
    assert image.mode == mode and image.bit_depth == 16
    assert image.pixels.dtype == np.uint16
    for channel in range(3):
        np.testing.assert_array_equal(image.pixels[..., channel], values)


def test_16_bit_grey_png_value_1000_stays_1000():
    image = load_image(ODD / "grey16_ramp.png")
    assert image.pixels.dtype == np.uint16
    assert image.pixels[0, 2].tolist() == [1000, 1000, 1000]
    assert image.pixels.max() == 65535
    big_endian = load_image(ODD / "grey16_bigendian.tiff")
    assert big_endian.mode == "I;16B"
    np.testing.assert_array_equal(big_endian.pixels, image.pixels)


def test_16_bit_grey_png_trns(tmp_path):
    rows = [struct.pack(">3H", 5, 1000, 65535)]
    data = png_bytes(3, 1, 16, 0, rows, (b"tRNS", struct.pack(">H", 1000)))
    (tmp_path / "t16.png").write_bytes(data)
    image = load_image(tmp_path / "t16.png")
    assert image.pixels[0, :, 0].tolist() == [5, 1000, 65535]
    np.testing.assert_array_equal(image.alpha, [[True, False, True]])


def test_16_bit_rgb_png_is_decoded_to_8_bits():
    # Pillow has no 16-bit RGB mode; documented and accepted.
    image = load_image(ODD / "basn2c16.png")
    assert image.pixels.dtype == np.uint8 and image.bit_depth == 8


def test_16_bit_rgb_png_colour_key_matches_at_full_precision(tmp_path):
    rows = [
        struct.pack(">9H", 0x1234, 0x5678, 0x9ABC, 0x12FF, 0x5600, 0x9A00, 0x1234, 0x5678, 0x9ABD)
    ]
    key = struct.pack(">3H", 0x1234, 0x5678, 0x9ABC)
    (tmp_path / "k16.png").write_bytes(png_bytes(3, 1, 16, 2, rows, (b"tRNS", key)))
    image = load_image(tmp_path / "k16.png")
    # Pillow keeps only the high bytes; the key is matched on all 16 bits (issue 13).
    np.testing.assert_array_equal(image.pixels[0], [[0x12, 0x56, 0x9A]] * 3)
    np.testing.assert_array_equal(image.alpha, [[False, True, True]])


@pytest.mark.parametrize(
    ("bit_depth", "packed", "key", "grey", "visible"),
    [
        (2, [0b00011011], 2, [0, 85, 170, 255], [True, True, False, True]),
        (4, [0x0F, 0x5A], 15, [0, 255, 85, 170], [True, False, True, True]),
        (1, [0b01000000], 1, [0, 255, 0, 0], [True, False, True, True]),
    ],
)
def test_low_bit_grey_png_trns_key_is_scaled(tmp_path, bit_depth, packed, key, grey, visible):
    data = png_bytes(4, 1, bit_depth, 0, [bytes(packed)], (b"tRNS", struct.pack(">H", key)))
    (tmp_path / "low.png").write_bytes(data)
    image = load_image(tmp_path / "low.png")
    assert image.pixels[0, :, 0].tolist() == grey
    assert image.alpha is not None and image.alpha[0].tolist() == visible


def test_low_bit_grey_png_trns_with_orientation(tmp_path):
    # The transposed copy loses the PNG format; the key must still be scaled.
    exif = exif_with_orientation(6)[len(b"Exif\0\0") :]  # eXIf holds the bare TIFF block
    rows = [bytes([0b00011011])]
    data = png_bytes(4, 1, 2, 0, rows, (b"tRNS", struct.pack(">H", 2)), (b"eXIf", exif))
    (tmp_path / "low6.png").write_bytes(data)
    image = load_image(tmp_path / "low6.png")
    assert image.orientation == 6 and image.pixels.shape == (4, 1, 3)
    assert image.pixels[:, 0, 0].tolist() == [0, 85, 170, 255]
    assert image.alpha[:, 0].tolist() == [True, True, False, True]


def test_mode_I_fitting_16_bits_is_uint16(tmp_path):
    values = np.array([[0, 1000, 65535]], dtype=np.int32)
    image = load_image(save(tmp_path, "i.tiff", PILImage.fromarray(values, "I")))
    assert image.mode == "I" and image.pixels.dtype == np.uint16 and image.bit_depth == 16
    assert image.pixels[0, :, 1].tolist() == [0, 1000, 65535]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([-5, 0, 100000], [0, 5 / 100005, 1]), ([-1, 0, 1], [0, 0.5, 1]), ([0, 70000], [0, 1])],
)
def test_mode_I_beyond_16_bits_is_scaled_to_unit_float(tmp_path, values, expected):
    im = PILImage.fromarray(np.array([values], dtype=np.int32), "I")
    image = load_image(save(tmp_path, "wide.tiff", im))
    assert image.pixels.dtype == np.float32 and image.bit_depth == 32
    np.testing.assert_allclose(image.pixels[0, :, 2], expected, rtol=1e-6)


def test_mode_F_within_unit_range_is_kept(tmp_path):
    values = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    image = load_image(save(tmp_path, "f.tiff", PILImage.fromarray(values, "F")))
    assert image.mode == "F" and image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels[0, :, 0], values[0])
    assert image.alpha is None


def test_mode_F_out_of_range_is_scaled_and_non_finite_is_invisible(tmp_path):
    values = np.array([[-2.0, 0.0, 3.0, np.nan, np.inf, -np.inf]], dtype=np.float32)
    image = load_image(save(tmp_path, "f.tiff", PILImage.fromarray(values, "F")))
    np.testing.assert_allclose(image.pixels[0, :3, 0], [0, 0.4, 1], rtol=1e-6)
    assert np.isfinite(image.pixels).all()
    np.testing.assert_array_equal(image.alpha, [[True, True, True, False, False, False]])


def test_mode_F_constant_outside_range_is_clipped(tmp_path):
    values = np.full((2, 2), 7.5, dtype=np.float32)
    image = load_image(save(tmp_path, "f.tiff", PILImage.fromarray(values, "F")))
    np.testing.assert_array_equal(image.pixels, np.ones((2, 2, 3), np.float32))


def test_mode_F_all_nan_is_all_invisible(tmp_path):
    values = np.full((2, 2), np.nan, dtype=np.float32)
    image = load_image(save(tmp_path, "nan.tiff", PILImage.fromarray(values, "F")))
    assert not image.alpha.any() and np.isfinite(image.pixels).all()


def test_unconvertible_mode_is_a_segment_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("conversion not supported")

    path = fake_file(tmp_path, monkeypatch, PILImage.new("CMYK", (2, 2)))
    monkeypatch.setattr(PILImage.Image, "convert", refuse)
    with pytest.raises(SegmentError, match="colour mode 'CMYK'") as err:
        load_image(path)
    check_message(err, path)


def test_rgb_icc_profile_is_kept_and_grey_profile_dropped(tmp_path):
    fake_rgb_profile = bytes(16) + b"RGB " + bytes(108)
    fake_grey_profile = bytes(16) + b"GRAY" + bytes(108)
    rgb = save(tmp_path, "icc.png", PILImage.new("RGB", (2, 2)), icc_profile=fake_rgb_profile)
    grey = save(tmp_path, "g.png", PILImage.new("L", (2, 2)), icc_profile=fake_grey_profile)
    assert load_image(rgb).icc_profile == fake_rgb_profile
    assert load_image(grey).icc_profile is None


# =============================================================================================
# EXIF orientation
# =============================================================================================


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_exact(tmp_path, orientation):
    pattern = blocks_pattern(size=2)
    path = save(
        tmp_path, "o.png", PILImage.fromarray(pattern), exif=exif_with_orientation(orientation)
    )
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, UPRIGHT[orientation](pattern))
    assert image.orientation == orientation


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_jpeg(tmp_path, orientation):
    pattern = blocks_pattern(size=8)
    im = PILImage.fromarray(pattern)
    exif = exif_with_orientation(orientation)
    path = save(tmp_path, "o.jpg", im, exif=exif, quality=95, subsampling=0)
    image = load_image(path)
    expected = UPRIGHT[orientation](pattern).astype(int)
    assert image.pixels.shape == expected.shape == (24, 16, 3)
    assert np.abs(image.pixels.astype(int) - expected).mean() < 4


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_rotates_alpha_too(tmp_path, orientation):
    rgba = np.dstack([blocks_pattern(size=1), np.full((2, 3), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    path = save(
        tmp_path, "o.png", PILImage.fromarray(rgba), exif=exif_with_orientation(orientation)
    )
    image = load_image(path)
    np.testing.assert_array_equal(image.alpha, UPRIGHT[orientation](rgba[..., 3] > 0))


def test_exif_orientation_keeps_palette_transparency(tmp_path):
    im = PILImage.fromarray(np.array([[0, 1, 2], [2, 2, 2]], dtype=np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = save(tmp_path, "p.png", im, transparency=0, exif=exif_with_orientation(8))
    image = load_image(path)
    expected_visible = UPRIGHT[8](np.array([[False, True, True], [True, True, True]]))
    np.testing.assert_array_equal(image.alpha, expected_visible)


@pytest.mark.parametrize("n", [3, 6, 8])
def test_exif_orientation_corpus_against_upright_reference(n):
    reference = load_image(ODD / "hopper.jpg").pixels.astype(int)
    image = load_image(ODD / f"hopper_orientation_{n}.jpg")
    assert image.orientation == n
    assert np.abs(image.pixels.astype(int) - reference).mean() < 8
    # The test has teeth: the stored (unrotated) pixels are far from the reference.
    with PILImage.open(ODD / f"hopper_orientation_{n}.jpg") as raw:
        stored = np.asarray(raw.convert("RGB")).astype(int)
    assert np.abs(stored - reference).mean() > 30


def test_exif_orientation_swaps_width_and_height():
    image = load_image(ODD / "orientation_rectangle.jpg")
    assert image.pixels.shape == (2, 1, 3) and image.orientation == 8


def test_xmp_orientation_is_honoured():
    assert load_image(ODD / "xmp_tags_orientation_exiftool.png").orientation == 3


@pytest.mark.parametrize("name", ["invalid-exif.jpg", "bad_orientation_value.jpg"])
def test_invalid_exif_falls_back_to_no_rotation(name):
    image = load_image(ODD / name)
    check_valid(image)
    assert image.orientation == 1


def test_exif_that_cannot_be_read_falls_back_to_no_rotation(tmp_path, monkeypatch):
    pattern = blocks_pattern(size=1)
    path = save(tmp_path, "o.png", PILImage.fromarray(pattern), exif=exif_with_orientation(6))

    def broken(self):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(PILImage.Image, "getexif", broken)
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, pattern)
    assert image.orientation == 1


def test_exif_orientation_per_frame():
    # Page 1 carries orientation 6 of its own; Pillow's TIFF plugin rotates while loading.
    first, second = iter_frames(ODD / "orientation_pages.tiff")
    assert (first.orientation, first.pixels.shape) == (1, (4, 6, 3))
    assert (second.orientation, second.pixels.shape) == (6, (6, 4, 3))
    assert second.pixels[0, 3, 0] == 255 and second.pixels[..., 0].sum() == 255


# =============================================================================================
# Multi-frame files
# =============================================================================================


def test_gif_frames():
    path = ODD / "anim3.gif"
    assert count_frames(path) == 3
    colours = [load_image(path, frame=i).pixels[0, 0].tolist() for i in range(3)]
    assert colours == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    frames = list(iter_frames(path))
    assert [f.frame for f in frames] == [0, 1, 2] and {f.n_frames for f in frames} == {3}
    assert [f.pixels[0, 0].tolist() for f in frames] == colours


def test_multi_page_tiff_pages_differ():
    path = ODD / "pages3.tiff"
    assert count_frames(path) == 3
    pages = list(iter_frames(path))
    assert [p.pixels.shape for p in pages] == [(6, 8, 3), (3, 5, 3), (2, 4, 3)]
    assert [p.pixels.dtype for p in pages] == [np.uint8, np.uint8, np.uint16]
    assert pages[2].pixels[0, 2, 0] == 1000
    np.testing.assert_array_equal(load_image(path, frame=1).pixels, pages[1].pixels)


@pytest.mark.parametrize(
    ("name", "n_frames"),
    [("frozenpond.mpo", 2), ("apng_delay.png", 5), ("anim2.webp", 2), ("multipage.tiff", 3)],
)
def test_frame_counts(name, n_frames):
    assert count_frames(ODD / name) == n_frames
    frames = list(iter_frames(ODD / name))
    assert len(frames) == n_frames
    for f in frames:
        check_valid(f)


@pytest.mark.parametrize(("name", "n_frames"), [("anim3.gif", 3), ("one_pixel.jpg", 1)])
def test_frame_out_of_range(name, n_frames):
    path = ODD / name
    with pytest.raises(SegmentError, match=f"has {n_frames} frame") as err:
        load_image(path, frame=n_frames)
    check_message(err, path)
    with pytest.raises(SegmentError, match="frame must be 0 or more"):
        load_image(path, frame=-1)


def test_still_image_has_one_frame(tmp_path):
    path = save(tmp_path, "one.png", PILImage.new("RGB", (3, 2)))
    assert count_frames(path) == 1
    (image,) = iter_frames(path)
    assert (image.frame, image.n_frames) == (0, 1)


def test_frame_with_huge_extents_is_refused_but_first_frame_loads():
    path = ODD / "decompression_bomb_extents.gif"
    check_valid(load_image(path))
    with pytest.raises(SegmentError, match="over the limit") as err:
        load_image(path, frame=1)
    check_message(err, path)


def test_iter_frames_does_not_hold_the_lock_between_frames():
    # Loading another image while iterating would deadlock if the lock were held.
    result = []

    def run():
        for f in iter_frames(ODD / "anim3.gif"):
            result.append((f.frame, load_image(ODD / "one_pixel.jpg").pixels.shape))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert result == [(0, (1, 1, 3)), (1, (1, 1, 3)), (2, (1, 1, 3))]


def test_iter_frames_can_stop_early():
    frames = iter_frames(ODD / "apng_delay.png")
    first = next(frames)
    frames.close()
    assert first.frame == 0


# =============================================================================================
# Decompression bombs and the pixel limit
# =============================================================================================


def test_huge_header_is_refused_fast():
    path = ODD / "huge_header.png"
    start = time.perf_counter()
    with pytest.raises(SegmentError) as err:
        load_image(path)
    assert time.perf_counter() - start < 1
    check_message(err, path)
    message = str(err.value)
    assert f"10000000000 pixels is over the limit of {PILImage.MAX_IMAGE_PIXELS}" in message
    assert "--max-pixels 10000000000" in message


def test_between_one_and_two_times_pillows_limit_is_refused_without_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SegmentError, match="100000000 pixels is over the limit"):
            load_image(ODD / "bomb_warning_zone.png")
    assert not [w for w in caught if issubclass(w.category, PILImage.DecompressionBombWarning)]


def test_max_pixels_lowers_the_limit_exactly(tmp_path):
    path = save(tmp_path, "ten.png", PILImage.new("RGB", (10, 10)))
    with pytest.raises(SegmentError, match="100 pixels is over the limit of 99") as err:
        load_image(path, max_pixels=99)
    check_message(err, path)
    assert "--max-pixels 100" in str(err.value)
    check_valid(load_image(path, max_pixels=100))


@pytest.mark.parametrize("side", [8, 10, 12])  # 64 (<1x), 100 (1x-2x) and 144 (>2x) of 50
def test_max_pixels_raises_the_limit_above_pillows(tmp_path, monkeypatch, side):
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 50)
    path = save(tmp_path, "img.png", PILImage.new("RGB", (side, side)))
    if side * side > 50:
        with pytest.raises(SegmentError, match="over the limit of 50"):
            load_image(path)
    image = load_image(path, max_pixels=side * side)
    assert image.pixels.shape == (side, side, 3)
    assert PILImage.MAX_IMAGE_PIXELS == 50


def test_no_limit_when_pillows_limit_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", None)
    check_valid(load_image(save(tmp_path, "a.png", PILImage.new("RGB", (300, 300)))))
    assert PILImage.MAX_IMAGE_PIXELS is None


def test_pillow_globals_are_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    before = PILImage.MAX_IMAGE_PIXELS
    load_image(ODD / "one_pixel.jpg", max_pixels=10**12)
    for name in ("huge_header.png", "truncated_jpeg.jpg"):
        with pytest.raises(SegmentError):
            load_image(ODD / name, max_pixels=5)
    # A truncated file is an error even when someone else allowed truncated images.
    with pytest.raises(SegmentError, match="truncated"):
        load_image(ODD / "truncated_jpeg.jpg")
    assert PILImage.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_count_frames_and_iter_frames_apply_the_limit():
    with pytest.raises(SegmentError, match="over the limit of 1 "):
        count_frames(ODD / "anim3.gif", max_pixels=1)
    with pytest.raises(SegmentError, match="over the limit of 19"):
        list(iter_frames(ODD / "anim3.gif", max_pixels=19))
    assert len(list(iter_frames(ODD / "anim3.gif", max_pixels=20))) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "100"])
def test_invalid_max_pixels(bad):
    with pytest.raises(SegmentError, match="--max-pixels"):
        load_image(ODD / "one_pixel.jpg", max_pixels=bad)
    with pytest.raises(SegmentError, match="--max-pixels"):
        iter_frames(ODD / "one_pixel.jpg", max_pixels=bad)  # before iterating


def test_concurrent_loads_keep_their_own_limits():
    jobs = [("grey16_ramp.png", 8, True), ("grey16_ramp.png", 7, False)] * 6
    jobs += [("huge_header.png", None, False), ("one_pixel.jpg", None, True)] * 3
    before = PILImage.MAX_IMAGE_PIXELS

    def attempt(job):
        name, limit, should_load = job
        try:
            load_image(ODD / name, max_pixels=limit)
        except SegmentError:
            return not should_load
        return should_load

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(attempt, jobs))
    assert PILImage.MAX_IMAGE_PIXELS == before


# =============================================================================================
# Errors: one line, naming the file
# =============================================================================================


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(SegmentError, match="no such file") as err:
        load_image(path)
    check_message(err, path)


def test_directory(tmp_path):
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(SegmentError, match="folder") as err:
        load_image(path)
    check_message(err, path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path):
    path = save(tmp_path, "locked.png", PILImage.new("L", (2, 2)))
    path.chmod(0)
    try:
        with pytest.raises(SegmentError, match="permission denied") as err:
            load_image(path)
        check_message(err, path)
    finally:
        path.chmod(0o644)


def test_permission_denied_message(tmp_path, monkeypatch):
    # Runs as root too: the PermissionError comes from a stand-in for Pillow's open().
    path = save(tmp_path, "locked.png", PILImage.new("L", (2, 2)))

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(PILImage, "open", deny)
    with pytest.raises(SegmentError, match="permission denied; make the file readable") as err:
        load_image(path)
    check_message(err, path)


def test_nul_in_file_name(tmp_path):
    with pytest.raises(SegmentError, match="NUL") as err:
        load_image(str(tmp_path / "a\0b.png"))
    assert "\0" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    with pytest.raises(SegmentError, match="not a regular file") as err:
        load_image(path)
    check_message(err, path)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty_zero_bytes.png", "the file is empty"),
        ("text_file_renamed.png", "text file, not an image"),
        ("drawing.svg", "SVG"),
        ("ole_document_renamed.jpg", "not an image file Pillow can read"),
        ("xs1n0g01.png", "not an image file Pillow can read"),
        ("truncated_jpeg.jpg", "truncated"),
        ("truncated_image.png", "truncated"),
        ("broken_data_stream.png", "corrupt"),
        ("xdtn0g01.png", "corrupt"),
        ("png_decompression_dos.png", "metadata chunk"),
        ("seek_too_large.tif", "malformed"),
        ("decompression_bomb.gif", "over the limit"),
    ],
)
def test_specific_messages(name, words):
    with pytest.raises(SegmentError, match=words) as err:
        load_image(ODD / name)
    check_message(err, ODD / name)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        SyntaxError("not a PNG"),
        struct.error("unpack requires a buffer"),
        EOFError(),
        IndexError("index out of range"),
        ZeroDivisionError("division by zero"),
        KeyError("mode"),
        TypeError("bad type"),
        MemoryError(),
        RecursionError("too deep"),
        RuntimeError("something\nelse"),
        OSError("decoder error -2"),
        OSError(5, "Input/output error"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("stage", ["open", "load"])
def test_any_pillow_exception_becomes_one_line_segment_error(tmp_path, monkeypatch, exc, stage):
    path = save(tmp_path, "x.png", PILImage.new("RGB", (2, 2)))

    def fail(*args, **kwargs):
        raise exc

    if stage == "open":
        monkeypatch.setattr(PILImage, "open", fail)
    else:
        monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(SegmentError) as err:
        load_image(path)
    check_message(err, path)
    assert err.value.__cause__ is exc


def test_memory_error_message(tmp_path, monkeypatch):
    path = save(tmp_path, "x.png", PILImage.new("RGB", (2, 2)))

    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(SegmentError, match="not enough memory"):
        load_image(path)


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    path = save(tmp_path, "x.png", PILImage.new("RGB", (2, 2)))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    before = PILImage.MAX_IMAGE_PIXELS
    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_image(path, max_pixels=123)
    assert PILImage.MAX_IMAGE_PIXELS == before


def test_file_name_with_newline_gives_one_line(tmp_path):
    path = tmp_path / "two\nlines.png"
    path.write_text("hello")
    with pytest.raises(SegmentError) as err:
        load_image(path)
    assert "\n" not in str(err.value) and "lines.png" in str(err.value)


def test_extension_lies_do_not_matter():
    assert load_image(ODD / "png_named.jpg").format == "PNG"
    assert load_image(ODD / "jpeg_named.png").format == "JPEG"


# =============================================================================================
# The whole odd-file corpus
# =============================================================================================


def _corpus_index():
    with open(ODD / "INDEX.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {row["file"]: row for row in rows}


CORPUS = _corpus_index()


def test_corpus_index_lists_every_file():
    on_disk = {p.name for p in ODD.iterdir()} - NOT_IMAGES
    assert on_disk == set(CORPUS)
    assert len(CORPUS) >= 60
    assert {row["expected"] for row in CORPUS.values()} == {"ok", "error"}
    assert all(row["source"] and row["exercises"] for row in CORPUS.values())


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_file(name):
    path = ODD / name
    digest = sha256(path)
    mode_bits = stat.S_IMODE(path.stat().st_mode)
    start = time.perf_counter()
    try:
        image = load_image(path)
    except SegmentError as err:
        outcome = "error"
        message = str(err)
        assert "\n" not in message and name in message
    else:
        outcome = "ok"
        check_valid(image)
        assert image.path == path and image.frame == 0
    assert time.perf_counter() - start < 5
    assert outcome == CORPUS[name]["expected"]
    assert sha256(path) == digest
    assert stat.S_IMODE(path.stat().st_mode) == mode_bits


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
@pytest.mark.parametrize("name", sorted(n for n, row in CORPUS.items() if row["expected"] == "ok"))
def test_corpus_every_frame(name):
    count = 0
    try:
        for image in iter_frames(ODD / name):
            check_valid(image)
            assert image.frame == count
            count += 1
    except SegmentError as err:
        assert "\n" not in str(err) and name in str(err)
    assert count >= 1


# =============================================================================================
# The Image record and READABLE_EXTENSIONS
# =============================================================================================


def test_image_is_frozen_and_compact_in_repr():
    image = load_image(ODD / "anim3.gif")
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.frame = 2
    assert "array" not in repr(image) and "anim3.gif" in repr(image)
    assert image == image and image != load_image(ODD / "anim3.gif")


def test_image_checks_shapes():
    with pytest.raises(ValueError, match="pixels"):
        Image(np.zeros((2, 2)), None, Path("x"), "PNG", "L", 0, 1)
    with pytest.raises(ValueError, match="alpha"):
        Image(np.zeros((2, 2, 3)), np.ones((3, 2), bool), Path("x"), "PNG", "L", 0, 1)


def test_readable_extensions():
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".bmp", ".mpo"} <= (
        READABLE_EXTENSIONS
    )
    assert all(ext.startswith(".") and ext == ext.lower() for ext in READABLE_EXTENSIONS)
    # Save-only formats and formats Pillow identifies but cannot decode.
    assert not {".pdf", ".h5", ".grib", ".bufr", ".mpeg", ".svg"} & READABLE_EXTENSIONS


# =============================================================================================
# atomic_write
# =============================================================================================


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_success(tmp_path):
    target = tmp_path / "out.png"
    with atomic_write(target) as f:
        f.write(b"data")
        assert not target.exists()  # nothing under the final name until the end
    assert target.read_bytes() == b"data"
    assert leftovers(tmp_path) == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 & ~current_umask()


def test_atomic_write_existing_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(SegmentError, match="already exists"), atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"old"
    with atomic_write(target, overwrite=True) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_atomic_write_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(SegmentError, match="permission denied"):
            with atomic_write(folder / "out.png") as f:
                f.write(b"x")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_atomic_write_permission_message(tmp_path, monkeypatch):
    # Runs as root too: the PermissionError comes from a stand-in for mkstemp().
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(segment.outputs.files.tempfile, "mkstemp", deny)
    with pytest.raises(SegmentError, match="permission denied"):
        with atomic_write(tmp_path / "out.png") as f:
            f.write(b"x")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_target_is_a_directory(tmp_path):
    with pytest.raises(SegmentError, match="directory"):
        with atomic_write(tmp_path, overwrite=True) as f:
            f.write(b"x")


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(SegmentError, match="does not exist"):
        with atomic_write(tmp_path / "no" / "out.png") as f:
            f.write(b"x")


def test_atomic_write_exception_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_atomic_write_umask_is_read_without_changing_it():
    before = current_umask()
    assert segment.outputs.files._umask() == before
    assert current_umask() == before
