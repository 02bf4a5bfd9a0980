"""An image folder as users have them (torchvision's ImageFolder layout) and its reference
tensors prepared with PIL, for `oto eval --images` (tests/cli_raw_data.rs).

Output: OUT/images/{cat,dog,fish}/*.png|*.jpg (PNG in RGB, grayscale, RGBA and palette
modes, JPEG with 4:2:0 and 4:4:4 chroma and grayscale; sizes above and below the model's
64 x 64 input, square and not), and OUT/reference.npz: `x` [N, 3, 64, 64] float32, each
image opened with PIL, converted to RGB, resized with Image.resize((64, 64), BILINEAR)
(what torchvision's Resize does on PIL images), scaled to [0, 1] and normalized with
ImageNet's mean and std, in ImageFolder order (sorted classes, sorted files), and
`labels` [N] int64 (the class indices).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
from PIL import Image

SIZE = 64
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CLASSES = ["cat", "dog", "fish"]
# (width, height): downscaled by non-integer factors, upscaled, and kept.
SIZES = [(97, 80), (64, 64), (40, 52), (150, 113)]


def _picture(rng: np.random.Generator, w: int, h: int, cls: int) -> np.ndarray:
    """A smooth colour field with some noise and an edge, different per class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        128 + 100 * np.sin(xx / (5 + 3 * cls) + rng.uniform(0, 6)),
        128 + 100 * np.cos(yy / (7 + 2 * cls) + rng.uniform(0, 6)),
        128 + 90 * np.sin((xx + yy) / 9 + cls),
    ], axis=-1)
    base[(xx > w / 2) & (yy < h / 3)] = [250 - 60 * cls, 20 + 50 * cls, 120]
    base += rng.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def write(out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(0)
    files = []
    for cls, name in enumerate(CLASSES):
        folder = os.path.join(out, "images", name)
        os.makedirs(folder)
        for i, (w, h) in enumerate(SIZES):
            rgb = Image.fromarray(_picture(rng, w, h, cls), "RGB")
            variants = [
                (f"{i}_rgb.png", rgb, {}),
                (f"{i}_q90.jpg", rgb, {"quality": 90}),
            ]
            if i == 1:
                variants += [(f"{i}_gray.png", rgb.convert("L"), {}), (f"{i}_gray.jpg", rgb.convert("L"), {"quality": 85})]
            if i == 2:
                variants += [(f"{i}_rgba.png", rgb.convert("RGBA"), {}), (f"{i}_444.jpg", rgb, {"quality": 95, "subsampling": 0})]
            if i == 3:
                variants += [(f"{i}_palette.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=64), {})]
            for fname, img, kw in variants:
                img.save(os.path.join(folder, fname), **kw)
    xs, labels = [], []
    for cls, name in enumerate(sorted(CLASSES)):
        folder = os.path.join(out, "images", name)
        for fname in sorted(os.listdir(folder)):
            with Image.open(os.path.join(folder, fname)) as img:
                img = img.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
            x = np.asarray(img, dtype=np.float32) / np.float32(255)
            x = (x - MEAN) / STD
            xs.append(x.transpose(2, 0, 1))
            labels.append(cls)
            files.append(fname)
    np.savez(os.path.join(out, "reference.npz"), x=np.stack(xs).astype(np.float32), labels=np.array(labels, dtype=np.int64))
    print(f"{len(files)} images in {len(CLASSES)} classes -> {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    write(ap.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
