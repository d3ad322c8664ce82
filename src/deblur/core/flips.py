"""The 8 flips/rotations of an image (the dihedral group of the square), written once for numpy and torch.

Flip ``k`` in 0..7 is a rotation by ``k % 4`` quarter turns counter-clockwise (as ``np.rot90``), then a
left-right mirror when ``k >= 4``; 0 is the identity. Training draws one per crop (``--flips``); the
self-ensemble (:func:`deblur.core.restore.self_ensemble`) averages a model over all 8, undoing each.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

COUNT = 8
_ROTATIONS = (None, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)


def _parts(k: int) -> tuple[int, bool]:
    if not 0 <= k < COUNT:
        raise ValueError(f"flip index must be in 0..{COUNT - 1}, got {k}")
    return k % 4, k >= 4


def flip_array(img: np.ndarray, k: int) -> np.ndarray:
    """Flip ``k`` of HW or HWC ``img`` (any dtype); a contiguous copy (OpenCV) unless ``k`` is 0."""
    turns, mirror = _parts(k)
    if k == 0:
        return img
    out = img if turns == 0 else cv2.rotate(np.ascontiguousarray(img), _ROTATIONS[turns])
    out = cv2.flip(np.ascontiguousarray(out), 1) if mirror else out
    return out.reshape(out.shape[:2] + img.shape[2:])


def flip_tensor(x: torch.Tensor, k: int) -> torch.Tensor:
    """Flip ``k`` of NCHW ``x`` (the same transform as :func:`flip_array` on each HW plane)."""
    turns, mirror = _parts(k)
    y = torch.rot90(x, turns, (2, 3))
    return y.flip(3) if mirror else y


def unflip_tensor(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`flip_tensor`: ``unflip_tensor(flip_tensor(x, k), k) == x``."""
    turns, mirror = _parts(k)
    return torch.rot90(x.flip(3) if mirror else x, -turns, (2, 3))
