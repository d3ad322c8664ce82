"""Blurs and their kernels: the article's 3x3 Gaussian, Gaussian (isotropic/anisotropic), linear motion,
defocus disk, and ``blind``, the family the default model learns.

Each blur here is a :class:`~deblur.core.blurs.Blur` whose ``draw(rng)`` gives one *kernel* per image,
registered by name in :data:`deblur.core.blurs.BLURS` where it is defined (the spatially varying ones are
in :mod:`deblur.core.camera`) and named first in a degradation spec.
Every kernel is float32, odd-sized and sums to 1; it is applied by correlation (OpenCV's ``filter2D``), which
for the centrally symmetric ones equals convolution. Camera shake (``shake``) is not symmetric: its kernel
is the path the camera's shake drew, centred on its centroid so the image does not shift.
Each blur is a frozen dataclass whose range fields ``(low, high)`` are sampled uniformly per image from the
``rng`` passed to ``draw``; equal bounds mean a fixed value. Shapes are drawn anti-aliased on an 8x finer
grid and area-averaged down, so sub-pixel lengths and radii give distinct kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.core.blurs import BLURS, Blur, Range, sample

_SUPER = 8  # supersampling of drawn shapes


def _normalised(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(sigma: float, size: int = 0) -> np.ndarray:
    """A normalised isotropic 2-D Gaussian kernel (size x size; size 0 derives ``2 * ceil(3 * sigma) + 1``)."""
    if sigma <= 0:
        raise ValueError(f"gaussian sigma must be > 0, got {sigma}")
    size = size or 2 * math.ceil(3 * sigma) + 1
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    k = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F)
    return (k @ k.T).astype(np.float32)


def anisotropic_kernel(sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """A Gaussian with standard deviations ``sigma_x``/``sigma_y`` along axes rotated by ``angle`` degrees."""
    if min(sigma_x, sigma_y) <= 0:
        raise ValueError(f"gaussian sigmas must be > 0, got {sigma_x}, {sigma_y}")
    r = math.ceil(3 * max(sigma_x, sigma_y))
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    t = math.radians(angle)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    return _normalised(np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2)))


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion of ``length`` pixels at ``angle`` degrees (a 1-pixel-wide anti-aliased segment)."""
    if length <= 0:
        raise ValueError(f"motion length must be > 0, got {length}")
    size = 2 * math.ceil(length / 2) + 1
    canvas = np.zeros((size * _SUPER, size * _SUPER), np.float32)
    # drawing coordinates put pixel centres at integers; round caps add half a pixel at each end
    c, half = size * _SUPER / 2 - 0.5, max(length - 1, 0) * _SUPER / 2
    dx, dy = half * math.cos(math.radians(angle)), half * math.sin(math.radians(angle))
    shift = 4  # cv2.line takes fixed-point coordinates with 4 fractional bits
    p0 = (round((c - dx) * 16), round((c - dy) * 16))
    p1 = (round((c + dx) * 16), round((c + dy) * 16))
    cv2.line(canvas, p0, p1, 1.0, thickness=_SUPER, lineType=cv2.LINE_AA, shift=shift)
    k = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return _normalised((k + k[::-1, ::-1]) / 2)  # exactly centrally symmetric


def defocus_kernel(radius: float) -> np.ndarray:
    """Out-of-focus blur: a uniform disk of ``radius`` pixels."""
    if radius <= 0:
        raise ValueError(f"defocus radius must be > 0, got {radius}")
    size = 2 * math.ceil(radius) + 1
    canvas = np.zeros((size * _SUPER, size * _SUPER), np.float32)
    c = size * _SUPER / 2 - 0.5
    cv2.circle(canvas, (round(c * 16), round(c * 16)), round(radius * _SUPER * 16), 1.0, -1, cv2.LINE_AA, 4)
    k = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return _normalised((k + k[::-1, ::-1]) / 2)


def shake_trajectory(rng: np.random.Generator, length: float, anxiety: float, steps: int = 256) -> np.ndarray:
    """A random camera-shake path (complex x + iy, ``steps`` points, total length ``length`` px), as
    Boracchi & Foi (2012) draw them: an inertial random walk pulled back to its start (``centripetal``),
    with Gaussian jitter and rare large jerks, both scaled by ``anxiety`` in [0, 1]."""
    centripetal, jitter, jerks = 0.7 * rng.random(), 10 * rng.random(), 0.2 * rng.random()
    step = length / (steps - 1)
    u, normal = rng.random(steps), rng.standard_normal((steps, 2))
    v = complex(np.exp(1j * rng.uniform(0, 2 * math.pi))) * step
    x = [0j]
    for t in range(steps - 1):
        turn = 2 * v * complex(np.exp(1j * (math.pi + (u[t] - 0.5)))) if u[t] < jerks * anxiety else 0
        v += turn + anxiety * (jitter * complex(normal[t, 0], normal[t, 1]) - centripetal * x[-1]) * step
        v = v / abs(v) * step if v else step
        x.append(x[-1] + v)
    return np.array(x)


def trajectory_kernel(path: np.ndarray) -> np.ndarray:
    """The kernel a camera path draws (complex x + iy points, equal time apart): each point's time splatted
    bilinearly, centred on the centroid."""
    p = path - path.mean()
    size = 2 * math.ceil(max(np.abs(p.real).max(), np.abs(p.imag).max())) + 3
    c = size // 2
    xs, ys = p.real + c, p.imag + c
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    k = np.zeros((size, size), np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return _normalised(k)


@BLURS.register
@dataclass(frozen=True)
class NoBlur(Blur):
    """The identity kernel: for noise- or JPEG-only degradations and for resized sharp copies."""

    name = "none"

    def draw(self, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.ones((1, 1), np.float32)


@BLURS.register
@dataclass(frozen=True)
class SeedBlur(Blur):
    """The article's blur: exactly ``cv2.GaussianBlur(img, (3, 3), 0)``, i.e. [1/4 1/2 1/4] separable."""

    name = "seed"

    def draw(self, rng: np.random.Generator | None = None) -> np.ndarray:
        k = cv2.getGaussianKernel(3, 0, ktype=cv2.CV_32F)
        return (k @ k.T).astype(np.float32)


@BLURS.register
@dataclass(frozen=True)
class GaussianBlur(Blur):
    """Isotropic Gaussian; ``size`` 0 derives the kernel size from sigma."""

    sigma: Range = (1.0, 1.0)
    size: int = 0
    name = "gaussian"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return gaussian_kernel(sample(rng, self.sigma), self.size)


@BLURS.register
@dataclass(frozen=True)
class AnisotropicBlur(Blur):
    """Anisotropic Gaussian with independent axis sigmas, rotated by any angle (degrees)."""

    sigma_x: Range = (0.3, 3.0)
    sigma_y: Range = (0.3, 3.0)
    angle: Range = (0.0, 180.0)
    name = "anisotropic"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return anisotropic_kernel(sample(rng, self.sigma_x), sample(rng, self.sigma_y), sample(rng, self.angle))


@BLURS.register
@dataclass(frozen=True)
class MotionBlur(Blur):
    """Linear camera motion of ``length`` pixels at ``angle`` degrees."""

    length: Range = (3.0, 15.0)
    angle: Range = (0.0, 180.0)
    name = "motion"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return motion_kernel(sample(rng, self.length), sample(rng, self.angle))


@BLURS.register
@dataclass(frozen=True)
class DefocusBlur(Blur):
    """Out-of-focus disk of ``radius`` pixels."""

    radius: Range = (0.5, 4.0)
    name = "defocus"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return defocus_kernel(sample(rng, self.radius))


@BLURS.register
@dataclass(frozen=True)
class ShakeBlur(Blur):
    """Camera shake: a random curved trajectory of total ``length`` px (Boracchi & Foi 2012), of which the
    shutter sees a fraction ``exposure`` (0.5..1: the same shake, shorter or longer exposures)."""

    length: Range = (5.0, 60.0)
    anxiety: Range = (0.0, 0.1)
    exposure: Range = (0.5, 1.0)
    name = "shake"

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        length, anxiety, exposure = sample(rng, self.length), sample(rng, self.anxiety), sample(rng, self.exposure)
        if length <= 0 or not 0 < exposure <= 1:
            raise ValueError(f"shake needs length > 0 and exposure in (0, 1], got {length}, {exposure}")
        path = shake_trajectory(rng, length, anxiety)
        return trajectory_kernel(path[: max(2, round(exposure * len(path)))])


@BLURS.register
@dataclass(frozen=True)
class BlindBlur(Blur):
    """The blind family: per image, linear motion with probability ``motion_share``, else isotropic
    Gaussian, anisotropic Gaussian or defocus with equal probability, each with its range below."""

    sigma: Range = (0.3, 3.0)
    length: Range = (3.0, 15.0)
    radius: Range = (0.5, 4.0)
    motion_share: float = 0.25
    name = "blind"

    def __post_init__(self) -> None:
        if not 0.0 <= self.motion_share <= 1.0:
            raise ValueError(f"blind motion_share must be in [0, 1], got {self.motion_share}")

    def choose(self, rng: np.random.Generator) -> "GaussianBlur | AnisotropicBlur | MotionBlur | DefocusBlur":
        """This image's member of the family (one draw from ``rng``)."""
        u = float(rng.random())
        if u < self.motion_share:
            return MotionBlur(self.length)
        choice = min(int((u - self.motion_share) / (1.0 - self.motion_share) * 3), 2)
        return (GaussianBlur(self.sigma), AnisotropicBlur(self.sigma, self.sigma), DefocusBlur(self.radius))[choice]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return self.choose(rng).draw(rng)
