"""Write tests/data/digits/digits_binary.npz: scikit-learn's 8×8 digits, thresholded.

Run once (scikit-learn is needed here only; the project never imports it):
``python benchmarks/make_digits.py tests/data/digits``. The 1797 images hold grey levels
0..16; a pixel is 1 when its level is at least 8 (half the range). The file holds ``X``
(1797, 64) uint8 0/1, ``y`` the true digits, and ``grey`` the original levels, and 40 of the
images (four of each digit) are written as 8×8 PNGs for the README and the CLI tests.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    digits = load_digits()
    grey = digits.data.astype(np.uint8)
    X = (grey >= 8).astype(np.uint8)
    y = digits.target.astype(np.uint8)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "digits_binary.npz", X=X, y=y, grey=grey)
    png = args.out / "png"
    png.mkdir(exist_ok=True)
    for d in range(10):
        for j, i in enumerate(np.flatnonzero(y == d)[:4]):
            img = (255 * (1 - X[i])).reshape(8, 8).astype(np.uint8)  # black ink on white
            Image.fromarray(img, mode="L").convert("1").save(png / f"digit{d}_{j}.png")
    print(f"{X.shape[0]} images, {X.mean():.3f} of the bits are 1 -> {args.out}")


if __name__ == "__main__":
    main()
