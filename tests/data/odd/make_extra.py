"""Generate the odd files of this folder that PngSuite and Pillow's test images lack.

Run from anywhere: ``python tests/data/odd/make_extra.py``. The output is deterministic
(fixed content, no timestamps), so re-running it rewrites identical files. Needs Pillow,
numpy and tifffile (a dependency of scikit-image).
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

HERE = Path(__file__).resolve().parent
ORIENTATION = 274  # EXIF / TIFF tag number


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width, height):
    """A syntactically valid 8-bit grey PNG announcing ``width x height`` with 1 row of data.

    Readers must refuse it from the header alone; decoding would fail (or take forever).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" + b"\x80" * min(width, 64))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def gradient_rgb(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 2 * 255], axis=-1
    ).astype(np.uint8)


def main():
    rgb = Image.fromarray(gradient_rgb(6, 8))

    # Extension lies: the content decides the format.
    rgb.save(HERE / "png_named.jpg", format="PNG")
    rgb.save(HERE / "jpeg_named.png", format="JPEG", quality=95)

    # Decompression bombs: far over the limit (Pillow raises), and between 1x and 2x
    # Pillow's default limit of 89478485 pixels (Pillow only warns there).
    (HERE / "huge_header.png").write_bytes(png_header_only(100_000, 100_000))
    (HERE / "bomb_warning_zone.png").write_bytes(png_header_only(10_000, 10_000))
    (HERE / "zero_width.png").write_bytes(png_header_only(0, 16))

    # 16-bit grey with values that 8 bits cannot hold.
    ramp = np.array([[0, 1, 1000, 4095], [30000, 40000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(ramp).save(HERE / "grey16_ramp.png")

    # RGBA with a fully transparent block and a barely visible one (alpha 1).
    rgba = np.dstack([gradient_rgb(6, 8), np.full((6, 8), 255, np.uint8)])
    rgba[1:3, 2:5, 3] = 0
    rgba[4, 6:8, 3] = 1
    Image.fromarray(rgba).save(HERE / "rgba_holes.png")

    # Animated GIF, 3 frames of one colour each (red, green, blue).
    frames = [Image.new("RGB", (5, 4), colour) for colour in ("#ff0000", "#00ff00", "#0000ff")]
    frames[0].save(
        HERE / "anim3.gif", save_all=True, append_images=frames[1:], duration=100, loop=0
    )

    # Animated WebP, 2 frames.
    frames[0].save(HERE / "anim2.webp", save_all=True, append_images=frames[1:2], lossless=True)

    # Multi-page TIFF whose pages differ in size and mode.
    pages = [
        rgb,
        Image.fromarray(np.arange(15, dtype=np.uint8).reshape(3, 5) * 17),
        Image.fromarray(ramp),
    ]
    pages[0].save(HERE / "pages3.tiff", save_all=True, append_images=pages[1:])

    # Two pages, the second with its own EXIF orientation (6: rotate 90 degrees clockwise).
    marked = np.zeros((4, 6, 3), np.uint8)
    marked[0, 0] = 255
    with tifffile.TiffWriter(HERE / "orientation_pages.tiff") as tif:
        tif.write(marked, photometric="rgb", extratags=[(ORIENTATION, "H", 1, 1, True)])
        tif.write(marked, photometric="rgb", extratags=[(ORIENTATION, "H", 1, 6, True)])

    # Float data out of [0, 1] with NaN and infinities.
    values = np.linspace(-2, 3, 16, dtype=np.float32).reshape(4, 4)
    values[0, 0] = np.nan
    values[1, 1] = np.inf
    values[2, 2] = -np.inf
    Image.fromarray(values, mode="F").save(HERE / "float_nan.tiff")

    # 32-bit integers beyond 16 bits (scaled to [0, 1]).
    wide = np.array([[-5, 0, 70000], [100000, 5, 65535]], dtype=np.int32)
    Image.fromarray(wide, mode="I").save(HERE / "int32_wide.tiff")

    # Modes Pillow stores as they are in TIFF.
    # From bytes: Pillow's convert() from I;16 to I;16B clips at 255.
    big_endian = Image.frombytes("I;16B", (4, 2), ramp.astype(">u2").tobytes())
    big_endian.save(HERE / "grey16_bigendian.tiff")
    rgb.convert("YCbCr").save(HERE / "ycbcr.tiff")
    rgb.convert("CMYK").save(HERE / "cmyk.tiff")
    pa = Image.new("PA", (4, 3))
    pa.putpalette([255, 0, 0, 0, 0, 255])
    pa.putdata([(0, 255), (1, 255), (0, 0), (1, 128)] * 3)
    pa.save(HERE / "pa.tiff")

    # Tiny JPEGs: one pixel, and an orientation tag out of the 1-8 range.
    Image.new("RGB", (1, 1), (200, 100, 50)).save(HERE / "one_pixel.jpg")
    exif = Image.Exif()
    exif[ORIENTATION] = 9
    rgb.save(HERE / "bad_orientation_value.jpg", exif=exif.tobytes())

    # A vector image: text, not something Pillow reads.
    (HERE / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<rect width="10" height="10" fill="red"/></svg>\n',
        encoding="utf-8",
    )

    reliability_extras()


def tiff_header_only(width, height):
    """A little-endian 8-bit grey TIFF announcing ``width x height`` with 16 bytes of data."""
    entries = [  # (tag, type: 3 = SHORT, 4 = LONG, value)
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, None),  # strip offset: right after the IFD
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 16),
    ]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        value = data_offset if value is None else value
        # A SHORT value sits in the first 2 bytes of the 4-byte value field.
        field = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + field
    return out + struct.pack("<I", 0) + b"\x80" * 16


def encoded(image, **params):
    buf = io.BytesIO()
    image.save(buf, **params)
    return buf.getvalue()


def reliability_extras():
    """Cases the CLI reliability tests (tests/test_reliability.py) add to the corpus."""
    rng = np.random.default_rng(6)
    noise = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))

    # A 16-bit RGB TIFF, as scanners write (Pillow reads its high bytes).
    y, x = np.mgrid[0:24, 0:32]
    rgb16 = np.stack([x * 2000, y * 2700, (x + y) * 1100], axis=-1).astype(np.uint16)
    tifffile.imwrite(HERE / "rgb16.tiff", rgb16, photometric="rgb")

    # A TIFF bomb: the header announces 100000 x 100000 pixels.
    (HERE / "bomb_header.tiff").write_bytes(tiff_header_only(100_000, 100_000))

    # Truncated downloads in other containers than PNG and baseline JPEG.
    data = encoded(noise, format="TIFF")
    (HERE / "truncated_strip.tiff").write_bytes(data[: len(data) // 2])
    data = encoded(noise.convert("P"), format="GIF")
    (HERE / "truncated_still.gif").write_bytes(data[: len(data) // 2])
    frames = [
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).convert("P")
        for _ in range(3)
    ]
    data = encoded(frames[0], format="GIF", save_all=True, append_images=frames[1:])
    # Cut inside the second frame: the first frame is whole.
    (HERE / "truncated_anim.gif").write_bytes(data[: int(len(data) * 0.6)])
    data = encoded(noise, format="JPEG", progressive=True, quality=80)
    (HERE / "progressive_truncated.jpg").write_bytes(data[: len(data) // 3])
    (HERE / "truncated_header.jpg").write_bytes(data[:200])
    data = encoded(noise, format="WEBP", quality=80)
    (HERE / "truncated.webp").write_bytes(data[: len(data) // 2])
    (HERE / "ascii_truncated.pgm").write_text("P2\n4 4\n255\n1 2 3 4\n5 6\n", encoding="ascii")

    # What a failed download often saves: the server's error page, under the image's name.
    (HERE / "html_error_page.jpg").write_text(
        "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
        "<body><h1>Not Found</h1></body></html>\n",
        encoding="utf-8",
    )

    # Nothing visible: alpha 0 everywhere, and float data that is all NaN / infinite.
    Image.new("RGBA", (6, 4), (10, 200, 30, 0)).save(HERE / "all_transparent.png")
    nan = np.full((4, 5), np.nan, np.float32)
    nan[0, 0] = np.inf
    Image.fromarray(nan, mode="F").save(HERE / "float_all_nan.tiff")

    # Extreme aspect ratios (plots, label maps, smoothing of a one-pixel-high image).
    ramp = (np.arange(2000) % 256).astype(np.uint8)
    Image.fromarray(ramp[None, :]).save(HERE / "line_1x2000.png")
    Image.fromarray(ramp[:, None]).save(HERE / "line_2000x1.png")

    # 16-bit images (not fitted on distinct colours) with one and two values for k=3.
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(HERE / "grey16_flat.png")
    two = np.full((8, 8), 1000, np.uint16)
    two[4:] = 50000
    Image.fromarray(two).save(HERE / "grey16_two_values.png")


if __name__ == "__main__":
    main()
