"""Degradations: blur kernels applied to sharp images, reproducible from a random generator.

Images are float32 in [0, 1], HW or HWC (numpy, OpenCV layout). Every blur is a frozen dataclass with
``kernel(rng)`` (a float32 2-D kernel summing to 1) and ``__call__(img, rng)`` (the blurred image, same
shape and range). Blurs are named on the command line by a short spec: ``name[:key=value,...]``, where a
value ``a..b`` is a range sampled uniformly per image, e.g. ``gaussian:sigma=0.5..2``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

BORDER = cv2.BORDER_REFLECT_101  # OpenCV's default, and what GaussianBlur uses in the article


class Blur(Protocol):
    name: str

    def kernel(self, rng: np.random.Generator) -> np.ndarray: ...

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter ``img`` (float32 [0, 1], HW or HWC) with ``kernel`` (correlation, reflective border)."""
    out = cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=BORDER)
    return np.clip(out, 0.0, 1.0).reshape(img.shape)


@dataclass(frozen=True)
class SeedBlur:
    """The article's blur: exactly ``cv2.GaussianBlur(img, (3, 3), 0)``, i.e. [1/4 1/2 1/4] separable."""

    name = "seed"

    def kernel(self, rng: np.random.Generator | None = None) -> np.ndarray:
        k = cv2.getGaussianKernel(3, 0, ktype=cv2.CV_32F)
        return (k @ k.T).astype(np.float32)

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return cv2.GaussianBlur(img, (3, 3), 0).reshape(img.shape)


@dataclass(frozen=True)
class GaussianBlur:
    """Isotropic Gaussian blur; ``sigma`` is a (low, high) range sampled per image; ``size`` 0 derives
    the kernel size as ``2 * ceil(3 * sigma) + 1``."""

    sigma: tuple[float, float] = (1.0, 1.0)
    size: int = 0
    name = "gaussian"

    def kernel(self, rng: np.random.Generator) -> np.ndarray:
        sigma = float(rng.uniform(*self.sigma)) if self.sigma[0] != self.sigma[1] else self.sigma[0]
        return gaussian_kernel(sigma, self.size)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return convolve(img, self.kernel(rng))


def gaussian_kernel(sigma: float, size: int = 0) -> np.ndarray:
    """A normalised 2-D Gaussian kernel (float32, size x size; size 0 derives it from sigma)."""
    if sigma <= 0:
        raise ValueError(f"gaussian sigma must be > 0, got {sigma}")
    size = size or 2 * math.ceil(3 * sigma) + 1
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    k = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F)
    return (k @ k.T).astype(np.float32)


BLURS: dict[str, type] = {"seed": SeedBlur, "gaussian": GaussianBlur}


def names() -> list[str]:
    """Registered blur names, sorted."""
    return sorted(BLURS)


def _parse_value(field: dataclasses.Field, text: str) -> Any:
    if field.type in ("tuple[float, float]", tuple[float, float]):
        low, _, high = text.partition("..")
        return (float(low), float(high or low))
    if field.type in ("int", int):
        return int(text)
    return float(text)


def parse_blur(spec: str) -> Blur:
    """Build a blur from ``name[:key=value,...]`` (see module docstring); raises ValueError when bad."""
    name, _, args = spec.strip().partition(":")
    if name not in BLURS:
        raise ValueError(f"unknown blur {name!r}; choose one of: {', '.join(names())}")
    cls = BLURS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for item in filter(None, args.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in fields:
            raise ValueError(f"bad blur option {item!r} for {name!r}; options: {', '.join(fields) or 'none'}")
        try:
            kwargs[key.strip()] = _parse_value(fields[key.strip()], value.strip())
        except ValueError:
            raise ValueError(f"bad value in blur option {item!r}") from None
    return cls(**kwargs)


def blur_spec(blur: Blur) -> str:
    """The canonical spec string of ``blur`` (inverse of :func:`parse_blur`)."""
    parts = []
    for f in dataclasses.fields(blur):
        value = getattr(blur, f.name)
        parts.append(f"{f.name}={value[0]}..{value[1]}" if isinstance(value, tuple) else f"{f.name}={value}")
    return blur.name + (":" + ",".join(parts) if parts else "")


def degrade_crop(img: np.ndarray, blur: Blur, size: int, rng: np.random.Generator,
                 center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, blurred) ``size`` x ``size`` windows of HWC float32 ``img`` (size <= H, W).

    The blur is computed on the window plus a margin of the kernel's radius (as far as the image
    reaches), so the result equals blurring the whole image and cropping, at a fraction of the cost.
    """
    kernel = blur.kernel(rng)
    h, w = img.shape[:2]
    y = (h - size) // 2 if center else int(rng.integers(0, h - size + 1))
    x = (w - size) // 2 if center else int(rng.integers(0, w - size + 1))
    r = kernel.shape[0] // 2
    y0, x0 = max(0, y - r), max(0, x - r)
    region = img[y0 : min(h, y + size + r), x0 : min(w, x + size + r)]
    blurred = convolve(region, kernel)
    return (img[y : y + size, x : x + size],
            blurred[y - y0 : y - y0 + size, x - x0 : x - x0 + size])
