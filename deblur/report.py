"""Pictures for people: rows of sharp / blurred / de-blurred crops, as the article shows."""

from __future__ import annotations

import cv2
import numpy as np

from deblur.imageops import center_crop, to_channels
from deblur.io import from_float, to_float


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.35, tile.shape[1] / 480)
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(tile, (0, 0), (w + 6, h + 8), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def comparison_grid(rows: list[list[np.ndarray]], labels: list[list[str]], crop: int = 0,
                    gap: int = 4) -> np.ndarray:
    """A uint8 RGB picture: one row per list of images (HW/HWC, any dtype handled by ``to_float``),
    each cropped to its central ``crop`` pixels (0: whole), labelled, separated by ``gap`` white pixels.
    Images in one column must share a size after cropping."""
    out_rows = []
    for images, names in zip(rows, labels):
        tiles = []
        for img, name in zip(images, names):
            f = to_float(img)
            f = to_channels(f, 3)
            tile = from_float(center_crop(f, crop) if crop else f)
            tiles.append(_label(tile, name) if name else tile)
        height = max(t.shape[0] for t in tiles)
        padded = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, gap, cv2.BORDER_CONSTANT, value=(255,) * 3)
                  for t in tiles]
        out_rows.append(np.hstack(padded))
    width = max(r.shape[1] for r in out_rows)
    out_rows = [cv2.copyMakeBorder(r, 0, gap, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3)
                for r in out_rows]
    return np.vstack(out_rows)
