"""The README's main command: blur the bundled sample photos, de-blur them, write a before/after picture.

Uses the bundled trained model when one ships; otherwise trains the article's ``seed`` model briefly
on the bundled training photos first (local Ray either way).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from deblur import checkpoint, metrics
from deblur.config import DeblurConfig, TrainConfig
from deblur.datasets import sprite_tiles
from deblur.degrade import SeedBlur, parse_blur
from deblur.io import decode, encode, list_images, to_float, from_float
from deblur.report import comparison_grid

SAMPLES = os.path.join(os.path.dirname(__file__), "assets", "samples")
DEMO_BLUR = "gaussian:sigma=1.5"


def write_sprite_folders(sprite: str, output: str, train_tiles: int = 600) -> str:
    """Cut the Fashion-MNIST sprite into ``train/`` (tiles 0..599), ``eval/`` (600..899) and
    ``eval-blurred/`` (eval tiles through the article's blur) as 8-bit grey PNGs."""
    with open(sprite, "rb") as f:
        tiles = sprite_tiles(decode(f.read()))
    blur = SeedBlur()
    for i, tile in enumerate(tiles):
        split = "train" if i < train_tiles else "eval"
        _write(os.path.join(output, split, f"tile_{i:03d}.png"), tile)
        if split == "eval":
            _write(os.path.join(output, "eval-blurred", f"tile_{i:03d}.png"), from_float(blur(to_float(tile))))
    return f"{len(tiles)} tiles -> {output}/train, {output}/eval, {output}/eval-blurred"


def _write(path: str, img: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode(img, "png"))


def demo(output: str, epochs: int) -> str:
    """Run the demo into ``output``; returns a line naming what was written."""
    from deblur.infer import run
    from deblur.train import fit

    photos = list_images(os.path.join(SAMPLES, "photos"))
    blurred_dir = os.path.join(output, "blurred")
    rng = np.random.default_rng(0)
    blur = parse_blur(DEMO_BLUR)
    sharp = {}
    for url in photos:
        name = os.path.basename(url)
        with open(url, "rb") as f:
            sharp[name] = decode(f.read())
        _write(os.path.join(blurred_dir, name), from_float(blur(to_float(sharp[name]), rng)))
    model = None if os.path.exists(os.path.join(checkpoint.BUNDLED, checkpoint.CONFIG)) else fit(TrainConfig(
        data=os.path.join(SAMPLES, "train"), val_data=os.path.join(SAMPLES, "train"),
        output=os.path.abspath(os.path.join(output, "model")), blur=DEMO_BLUR, epochs=epochs,
        batch_size=16, patch_size=64, patches_per_image=64, lr=3e-3, checkpoint_every=10))
    out_dir = os.path.join(output, "deblurred")
    print(run(DeblurConfig(input=blurred_dir, output=out_dir, model=model)).line())
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
