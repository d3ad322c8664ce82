"""Spatially varying blur made the way real-blur datasets are made: the average of many slightly warped
copies of the sharp image along a smooth random camera path (rotation + translation), in linear light.

The image (float32 [0, 1], HW or HWC, gamma-encoded as stored) is taken to linear light through a drawn
camera response (``x ** gamma``); pixels at the top of the range become brighter than the sensor could
record (``highlight`` x), as real highlights are; the copies are averaged; the result is clipped, as a
sensor saturates, and encoded back. Rotation about the image centre makes the blur vary across the frame
(longer streaks in the corners). There is no single kernel, so Wiener deconvolution has none to use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.core.blurs import BLURS, BORDER, Blur, Range, sample
from deblur.core.kernels import BlindBlur, ShakeBlur


@dataclass(frozen=True)
class CameraPath:
    """A drawn camera motion: per sample, a rotation (degrees, about the image centre) and a translation
    (px), both centred on their mean; plus the camera response ``gamma`` and highlight ``gain``."""

    angles: np.ndarray
    shifts: np.ndarray  # samples x 2 (x, y)
    gamma: float
    gain: float

    def reach(self, shape: tuple[int, ...]) -> int:
        """The most any pixel of an image of ``shape`` moves along the path (px, rounded up)."""
        half_diagonal = math.hypot(shape[0], shape[1]) / 2
        turn = np.abs(np.radians(self.angles)).max() * half_diagonal
        return int(math.ceil(np.abs(self.shifts).max() + turn)) + 1


def _bezier(rng: np.random.Generator, samples: int, size: float) -> np.ndarray:
    """A smooth random curve (samples x 2) from a cubic Bezier with control points in [-size, size]^2."""
    p = np.vstack([np.zeros(2), rng.uniform(-size, size, (3, 2))])
    t = np.linspace(0, 1, samples)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]


def warp_average(img: np.ndarray, path: CameraPath, origin: tuple[int, int] = (0, 0),
                 full_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``img`` (float32 [0, 1], HW/HWC) blurred along ``path``; same shape. ``img`` may be a window of a
    larger image of ``full_shape`` whose top-left is at ``origin`` (y, x): rotations stay about the whole
    image's centre, so a window with a margin of ``path.reach`` blurs exactly as the whole image does."""
    h, w = img.shape[:2]
    fh, fw = (full_shape or img.shape)[:2]
    centre = ((fw - 1) / 2 - origin[1], (fh - 1) / 2 - origin[0])
    linear = np.power(np.clip(img, 0, 1), path.gamma, dtype=np.float32)
    bright = (linear.mean(axis=2, keepdims=True) if linear.ndim == 3 else linear) > 0.95
    linear = np.where(bright, linear * path.gain, linear).astype(np.float32)
    total = np.zeros_like(linear)
    for angle, (dx, dy) in zip(path.angles, path.shifts):
        m = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
        m[:, 2] += (dx, dy)
        total += cv2.warpAffine(linear, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=BORDER).reshape(linear.shape)
    out = np.clip(total / len(path.angles), 0, 1)
    return np.power(out, 1 / path.gamma, dtype=np.float32)


@BLURS.register
@dataclass(frozen=True)
class WarpBlur(Blur):
    """Spatially varying camera-motion blur: ``samples`` warped copies along a smooth path that moves up to
    ``shift`` px and turns up to ``rotation`` degrees, averaged in linear light (response ``gamma``) with
    highlights ``highlight`` x brighter than recorded."""

    shift: Range = (1.0, 10.0)
    rotation: Range = (0.0, 1.0)
    samples: int = 24
    gamma: Range = (1.8, 2.4)
    highlight: Range = (1.5, 4.0)
    name = "warp"

    def draw(self, rng: np.random.Generator) -> CameraPath:
        """This image's camera path."""
        shift, rotation = sample(rng, self.shift), sample(rng, self.rotation)
        if shift < 0 or rotation < 0 or self.samples < 2:
            raise ValueError(f"warp needs shift, rotation >= 0 and samples >= 2, got {shift}, {rotation}, {self.samples}")
        shifts = _bezier(rng, self.samples, shift / 2)
        angles = _bezier(rng, self.samples, rotation / 2)[:, 0]
        return CameraPath(angles - angles.mean(), shifts - shifts.mean(axis=0), sample(rng, self.gamma),
                          sample(rng, self.highlight))


@BLURS.register
@dataclass(frozen=True)
class RealisticBlur(Blur):
    """The realistic family: per image, camera shake (:class:`~deblur.core.kernels.ShakeBlur`) with
    probability ``shake_share``, spatially varying camera motion (:class:`WarpBlur`) with probability
    ``warp_share``, else the blind family (Gaussian, anisotropic, motion, defocus) with its defaults."""

    shake_share: float = 0.35
    warp_share: float = 0.25
    length: Range = ShakeBlur.length
    shift: Range = WarpBlur.shift
    rotation: Range = WarpBlur.rotation
    name = "real"

    def __post_init__(self) -> None:
        if min(self.shake_share, self.warp_share) < 0 or self.shake_share + self.warp_share > 1:
            raise ValueError(f"real needs shares >= 0 that sum to <= 1, got {self.shake_share}, {self.warp_share}")

    def draw(self, rng: np.random.Generator) -> np.ndarray | CameraPath:
        """This image's kernel or camera path (one draw chooses the member)."""
        u = float(rng.random())
        if u < self.shake_share:
            return ShakeBlur(self.length).draw(rng)
        if u < self.shake_share + self.warp_share:
            return WarpBlur(self.shift, self.rotation).draw(rng)
        return BlindBlur().draw(rng)
