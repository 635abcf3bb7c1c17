"""Regenerate the pictures of README.md (images/readme/) with the installed `segment`.

Usage: python benchmarks/readme_figures.py
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "images" / "readme"


def segment(*args):
    subprocess.run(
        [sys.executable, "-m", "segment", *map(str, args), "-q", "--overwrite"], check=True
    )


def strip(paths, height=260, gap=6):
    tiles = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        tiles.append(im.resize((round(im.width * height / im.height), height), Image.LANCZOS))
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    out = Image.new("RGB", (width, height), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = ROOT / "images" / "coffee.png"
        segment("image", src, "-o", tmp / "default")
        d = tmp / "default"
        strip([src, d / "coffee.segmented.png", d / "coffee.quantized.png"]).save(
            OUT / "coffee-example.png", optimize=True
        )
        shutil.copy(d / "coffee.density.png", OUT / "coffee.density.png")
        shutil.copy(d / "coffee.loglik.png", OUT / "coffee.loglik.png")
        rows = []
        for name in ("chelsea.png", "rocket.jpg", "astronaut.png"):
            src = ROOT / "images" / name
            stem = Path(name).stem
            # Before: the previous release's defaults (RGB, k = 10, position features,
            # 1% minimum region, no region merging); after: today's defaults.
            segment(
                "image",
                src,
                "-o",
                tmp / "before",
                "--space",
                "rgb",
                "-k",
                10,
                "--xy",
                1,
                "--regions",
                "off",
                "--soft",
                "--no-plots",
            )
            segment("image", src, "-o", tmp / "default", "--soft", "--no-plots")
            rows.append(
                strip(
                    [
                        src,
                        tmp / "before" / f"{stem}.overlay.png",
                        tmp / "default" / f"{stem}.overlay.png",
                    ],
                    height=200,
                )
            )
        width = max(r.width for r in rows)
        grid = Image.new("RGB", (width, sum(r.height + 6 for r in rows) - 6), "white")
        y = 0
        for r in rows:
            grid.paste(r, (0, y))
            y += r.height + 6
        grid.save(OUT / "before-after.png", optimize=True)
    print("wrote", *sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
