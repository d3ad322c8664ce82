"""The README's picture of the realistic blurs: camera-shake kernels, and one photo under each blur.

    python scripts/blur_figure.py docs/blurs.jpg
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from deblur.core.degrade import parse_degradation
from deblur.core.image import decode, from_float, to_float
from deblur.core.report import comparison_grid
from deblur.core.storage import read_bytes

PHOTO = "src/deblur/assets/samples/photos/kodim23.png"
BLURS = {"motion 15 px": "motion:length=15,angle=30", "shake 45 px": "shake:length=45,exposure=1",
         "warp (varying)": "warp:shift=8,rotation=1", "real (drawn)": "real"}


def kernel_tile(kernel: np.ndarray, size: int = 96) -> np.ndarray:
    """A kernel drawn white on black, scaled to fill ``size`` px (nearest neighbour)."""
    k = np.zeros((65, 65), np.float32)
    s = min(kernel.shape[0], 65)
    o, c = (65 - s) // 2, (kernel.shape[0] - s) // 2
    k[o : o + s, o : o + s] = kernel[c : c + s, c : c + s]
    return cv2.resize(k / max(float(k.max()), 1e-9), (size, size), interpolation=cv2.INTER_NEAREST)


def main(out: str) -> None:
    rng = np.random.default_rng(3)
    shake = parse_degradation("shake:length=10..60")
    kernels = [kernel_tile(shake.draw_blur(rng)) for _ in range(6)]
    sharp = to_float(decode(read_bytes(PHOTO)))[100:356, 200:456]
    rows = [[sharp] + [parse_degradation(spec)(sharp, np.random.default_rng(7)) for spec in BLURS.values()]]
    labels = [["sharp", *BLURS]]
    grid = comparison_grid(rows, labels)
    strip = comparison_grid([kernels], [["shake kernels"] + [""] * 5])
    width = max(grid.shape[1], strip.shape[1])
    pad = lambda a: cv2.copyMakeBorder(a, 0, 0, 0, width - a.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3)
    picture = np.vstack([pad(strip), pad(grid)])
    cv2.imwrite(out, cv2.cvtColor(from_float(to_float(picture)), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/blurs.jpg")
