"""The picture of `segment fill` in README.md: a photo with scribbles masked out, the holes,
and the mixture in-painting (images/readme/fill-example.jpg).

Usage: python benchmarks/readme_fill.py [IMAGE] [-k 64] [--xy 3]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "images" / "readme" / "fill-example.jpg"


def scribbles(size, seed=0, strokes=7, width=9):
    """A mask (mode L, white = to fill) of random thick strokes, the same for a seed."""
    rng = np.random.default_rng(seed)
    W, H = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(strokes):
        pts = np.cumsum(rng.normal(0, 0.12, (6, 2)) * (W, H), axis=0) + rng.random(2) * (W, H)
        draw.line([tuple(p) for p in pts], fill=255, width=width, joint="curve")
    return mask


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=ROOT / "images" / "chelsea.png", type=Path)
    ap.add_argument("-k", type=int, default=64)
    ap.add_argument("--xy", type=float, default=3.0)
    args = ap.parse_args()
    photo = Image.open(args.image).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        mask_path, filled_path = Path(tmp) / "mask.png", Path(tmp) / "filled.png"
        mask = scribbles(photo.size)
        mask.save(mask_path)
        options = ["-k", str(args.k), "--xy", str(args.xy), "-o", str(filled_path), "-q"]
        command = ["fill", str(args.image), "--mask", str(mask_path), *options]
        subprocess.run([sys.executable, "-m", "segment", *command], check=True)
        filled = Image.open(filled_path).convert("RGB")
        holes = Image.composite(Image.new("RGB", photo.size, (255, 0, 255)), photo, mask)
        tiles = [photo, holes, filled]
        gap = 6
        out = Image.new("RGB", (sum(t.width for t in tiles) + gap * 2, photo.height), "white")
        for i, t in enumerate(tiles):
            out.paste(t, (i * (photo.width + gap), 0))
        scale = 260 / out.height
        out = out.resize((round(out.width * scale), 260), Image.LANCZOS)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        out.save(OUT, quality=88, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
