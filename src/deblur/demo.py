"""The README's main command: blur the bundled sample photos, de-blur them with the shipped model on a
local Ray cluster, write a before/after picture.

The three photos (Kodak 03, 19, 23) were held out of the shipped model's training. Each gets a different
blur from the model's family (drawn per photo, reproducibly) plus a little sensor noise.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from deblur.core import metrics
from deblur.core.config import PipelineConfig
from deblur.core.degrade import parse_degradation
from deblur.core.fashion_mnist import sprite_tiles
from deblur.core.image import decode, encode, from_float, to_float
from deblur.core.report import comparison_grid
from deblur.core.storage import list_images, read_bytes

SAMPLES = os.path.join(os.path.dirname(__file__), "assets", "samples")
DEMO_DEGRADATION = "blind:sigma=1.2..2.5,length=7..11,radius=1.5..3+noise:sigma=0.005"


def write_sprite_folders(sprite: str, output: str, train_tiles: int = 600) -> str:
    """Cut the Fashion-MNIST sprite into ``train/`` (tiles 0..599), ``eval/`` (600..899) and
    ``eval-blurred/`` (eval tiles through the article's blur) as 8-bit grey PNGs."""
    tiles = sprite_tiles(decode(read_bytes(sprite)))
    blur, rng = parse_degradation("seed"), np.random.default_rng(0)
    for i, tile in enumerate(tiles):
        split = "train" if i < train_tiles else "eval"
        _write(os.path.join(output, split, f"tile_{i:03d}.png"), tile)
        if split == "eval":
            _write(os.path.join(output, "eval-blurred", f"tile_{i:03d}.png"), from_float(blur(to_float(tile), rng)))
    return f"{len(tiles)} tiles -> {output}/train, {output}/eval, {output}/eval-blurred"


def _write(path: str, img: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode(img, "png"))


def demo(output: str) -> str:
    """Run the demo into ``output``; returns a line naming what was written."""
    from deblur.pipeline.run import run

    photos = list_images(os.path.join(SAMPLES, "photos"))
    blurred_dir = os.path.join(output, "blurred")
    rng = np.random.default_rng(0)
    degradation = parse_degradation(DEMO_DEGRADATION)
    sharp = {}
    for url in photos:
        name = os.path.basename(url)
        sharp[name] = decode(read_bytes(url))
        _write(os.path.join(blurred_dir, name), from_float(degradation(to_float(sharp[name]), rng)))
    out_dir = os.path.join(output, "deblurred")
    print(run(PipelineConfig(input=blurred_dir, output=out_dir)).line())
    return _before_after(sharp, blurred_dir, out_dir, os.path.join(output, "before_after.png"))


def _before_after(sharp: dict[str, np.ndarray], blurred_dir: str, out_dir: str, picture: str) -> str:
    rows, labels, gains = [], [], []
    for name, ref in sharp.items():
        blurred = cv2.cvtColor(cv2.imread(os.path.join(blurred_dir, name)), cv2.COLOR_BGR2RGB)
        restored = cv2.cvtColor(cv2.imread(os.path.join(out_dir, name)), cv2.COLOR_BGR2RGB)
        pb, pr = metrics.psnr(blurred, ref), metrics.psnr(restored, ref)
        gains.append(pr - pb)
        rows.append([ref, blurred, restored])
        labels.append(["sharp", f"blurred {pb:.2f} dB", f"de-blurred {pr:.2f} dB"])
    _write(picture, comparison_grid(rows, labels, crop=192))
    return f"before/after picture: {picture} (mean PSNR gain {np.mean(gains):+.2f} dB over the blurred input)"
