"""Degradations: a blur, then corruptions (noise, JPEG, quantisation), applied to sharp images reproducibly.

Images are float32 in [0, 1], HW or HWC (numpy, OpenCV layout, RGB). A degradation is named by a spec
``BLUR[:key=value,...][+CORRUPTION[:key=value,...]]...``; a value ``a..b`` is a range sampled uniformly
per image, e.g. ``motion:length=9+noise:sigma=0.005``. Blurs are :mod:`deblur.core.blurs`; ``blind``
is the blur family the default model learns, and :data:`deblur.core.choices.DEFAULT_DEGRADATION` its whole training
degradation (blind blur, noise, JPEG). Kernels are built once per image and applied with OpenCV's
``filter2D`` with reflective borders.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from deblur.core.blurs import BLURS, BORDER, Blur, Drawn, Range, sample
from deblur.core.camera import CameraPath, warp_average
from deblur.core.image import from_float, imencode, to_float
from deblur.core.registry import Registry
from deblur.core.choices import CORRUPTION_NAMES, split_degradation

__all__ = ["BLURS", "BORDER", "Blur", "CORRUPTIONS", "Corruption", "Degradation", "parse_degradation"]
_SEED_KERNEL = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32)
CORRUPTIONS: Registry[type["Corruption"]] = Registry("corruption", choices=CORRUPTION_NAMES, definers=(__name__,))


def reach(drawn: Drawn, shape: tuple[int, ...]) -> int:
    """How far (px) the blur ``drawn`` mixes pixels in an image of ``shape``: the margin a window needs."""
    return drawn.reach(shape) if isinstance(drawn, CameraPath) else drawn.shape[0] // 2


def blur_region(img: np.ndarray, drawn: Drawn, origin: tuple[int, int] = (0, 0),
                full_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``img`` (float32 [0, 1], HW/HWC; a window at ``origin`` of an image of ``full_shape``) blurred by
    ``drawn``; same shape."""
    if isinstance(drawn, CameraPath):
        return warp_average(img, drawn, origin, full_shape)
    return convolve(img, drawn)


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter ``img`` (float32 [0, 1], HW or HWC) with ``kernel`` (reflective border), same shape."""
    if kernel.shape == (3, 3) and np.allclose(kernel, _SEED_KERNEL):
        out = cv2.GaussianBlur(img, (3, 3), 0, borderType=BORDER)  # bit-exact article blur
    else:
        out = cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=BORDER)
    return np.clip(out, 0.0, 1.0).reshape(img.shape)


class Corruption:
    """What a degradation does to pixels after the blur (noise, JPEG, quantisation): ``draw`` draws its
    parameters for one image from ``rng`` (None: skipped for that image, with probability ``1 - p``; a
    corruption whose ``p`` is None always applies and draws nothing for it), ``apply`` applies drawn
    parameters; calling it does both."""

    name: ClassVar[str]
    p: float | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        """This image's parameters (:meth:`parameters`), or None when skipped (probability 1 - p)."""
        return None if self.p is not None and rng.random() >= self.p else self.parameters(rng)

    def parameters(self, rng: np.random.Generator) -> Any:
        """This image's parameters, drawn from ``rng``."""
        raise NotImplementedError

    def noise_sigma(self) -> float:
        """The mean standard deviation of the noise this corruption adds (on [0, 1]; 0 for none), for
        Wiener deconvolution's noise-to-signal ratio."""
        return 0.0

    def apply(self, img: np.ndarray, drawn: Any, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``img`` (float32 [0, 1], any layout) after this corruption, same shape."""
        drawn = self.draw(rng)
        return img if drawn is None else self.apply(img, drawn, rng)


@CORRUPTIONS.register
@dataclass(frozen=True)
class Noise(Corruption):
    """Additive white Gaussian noise of standard deviation ``sigma`` (on [0, 1]), applied with probability ``p``."""

    sigma: Range = (0.0, 0.02)
    p: float = 1.0
    name = "noise"

    def parameters(self, rng: np.random.Generator) -> float:
        """This image's sigma."""
        return sample(rng, self.sigma)

    def apply(self, img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
        return np.clip(img + noise, 0.0, 1.0)

    def noise_sigma(self) -> float:
        return float(np.mean(self.sigma)) * self.p


@CORRUPTIONS.register
@dataclass(frozen=True)
class Jpeg(Corruption):
    """A JPEG round trip at ``quality`` (OpenCV's codec, 8-bit), applied with probability ``p``."""

    quality: Range = (60.0, 95.0)
    p: float = 1.0
    name = "jpeg"

    def parameters(self, rng: np.random.Generator) -> int:
        """This image's quality."""
        return int(round(sample(rng, self.quality)))

    def apply(self, img: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
        u8 = from_float(img)
        colour = u8.ndim == 3 and u8.shape[2] == 3
        buf = imencode("jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR) if colour else u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if colour else out
        return (out.astype(np.float32) / 255).reshape(img.shape)


@CORRUPTIONS.register
@dataclass(frozen=True)
class Quantize(Corruption):
    """Rounding to ``bits``-bit levels, as storing the image in an 8-bit (or 16-bit) file does."""

    bits: int = 8
    name = "quantize"

    def parameters(self, rng: np.random.Generator) -> int:
        return self.bits  # always applies (p is None): no draw

    def apply(self, img: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
        top = float(2**bits - 1)
        return (np.round(np.clip(img, 0, 1) * top) / top).astype(np.float32)


@CORRUPTIONS.register
@dataclass(frozen=True)
class PoissonNoise(Corruption):
    """Sensor noise as a camera makes it: Poisson (shot) noise whose variance is ``a`` x the signal (on
    [0, 1]; ``a`` = 1 / photons at full scale) plus Gaussian read noise ``sigma``, with probability ``p``."""

    a: Range = (0.0, 0.01)
    sigma: Range = (0.0, 0.01)
    p: float = 1.0
    name = "poisson"

    def parameters(self, rng: np.random.Generator) -> tuple[float, float]:
        """This image's (a, sigma)."""
        return sample(rng, self.a), sample(rng, self.sigma)

    def noise_sigma(self) -> float:
        """At mid-grey: variance ``a / 2 + sigma^2``."""
        return math.sqrt(float(np.mean(self.a)) / 2 + float(np.mean(self.sigma)) ** 2) * self.p

    def apply(self, img: np.ndarray, drawn: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
        a, sigma = drawn
        out = rng.poisson(np.clip(img, 0, 1) / a).astype(np.float32) * a if a > 0 else img
        return np.clip(out + rng.standard_normal(img.shape, dtype=np.float32) * sigma, 0.0, 1.0)


@dataclass(frozen=True)
class Degradation:
    """A blur followed by zero or more corruptions (noise, JPEG, quantisation), in the order given."""

    blur: Blur
    corruptions: tuple[Corruption, ...] = ()

    def draw_blur(self, rng: np.random.Generator) -> Drawn:
        """This image's blur: a kernel or a camera path (drawn from ``rng`` first, before any corruption)."""
        return self.blur.draw(rng)

    def finish(self, blurred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the corruptions to an already blurred image."""
        for corruption in self.corruptions:
            blurred = corruption(blurred, rng)
        return blurred

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """(the degraded image: same shape, float32 [0, 1]; the kernel that blurred it, None when the blur
        varies across the image)."""
        drawn = self.draw_blur(rng)
        kernel = None if isinstance(drawn, CameraPath) else drawn
        return self.finish(blur_region(img, drawn), rng), kernel

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The degraded image: same shape, float32 [0, 1]."""
        return self.apply(img, rng)[0]


def _parse_value(field: dataclasses.Field, text: str) -> Any:
    if "tuple" in str(field.type) or "Range" in str(field.type):
        low, _, high = text.partition("..")
        return (float(low), float(high or low))
    if field.type in ("int", int):
        return int(text)
    return float(text)


def _build_part(name: str, options: dict[str, str], registry: Registry[type]) -> Any:
    cls, kind = registry[name], registry.kind
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            raise ValueError(f"bad {kind} option {key!r} for {name!r}; options: {', '.join(fields) or 'none'}")
        try:
            kwargs[key] = _parse_value(fields[key], value)
        except ValueError:
            raise ValueError(f"bad value in {kind} option '{key}={value}'") from None
    return cls(**kwargs)


def parse_degradation(spec: str) -> Degradation:
    """Build a degradation from its spec (see module docstring); raises ValueError when the spec is bad."""
    (blur, blur_options), *rest = split_degradation(spec)
    deg = Degradation(_build_part(blur, blur_options, BLURS),
                      tuple(_build_part(name, options, CORRUPTIONS) for name, options in rest))
    deg.draw_blur(np.random.default_rng(0))  # fail now on a bad value, not in a Ray worker
    return deg


def window(shape: tuple[int, ...], size: int, rng: np.random.Generator, center: bool = False) -> tuple[int, int]:
    """Top-left (y, x) of a ``size`` x ``size`` window in an image of ``shape`` (random, or central)."""
    h, w = shape[:2]
    if center:
        return (h - size) // 2, (w - size) // 2
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def blur_window(img: np.ndarray, drawn: Drawn, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, blurred) float32 [0, 1] windows at (y, x) of HWC ``img`` (uint8, uint16 or float [0, 1]).

    The blur is computed on the window plus a margin of its reach (as far as the image reaches), so the
    result equals blurring the whole image and cropping, at a fraction of the cost. Only that region is
    converted to float.
    """
    h, w = img.shape[:2]
    r = reach(drawn, img.shape)
    y0, x0 = max(0, y - r), max(0, x - r)
    region = to_float(img[y0 : min(h, y + size + r), x0 : min(w, x + size + r)])
    blurred = blur_region(region, drawn, (y0, x0), img.shape)[y - y0 : y - y0 + size, x - x0 : x - x0 + size]
    return region[y - y0 : y - y0 + size, x - x0 : x - x0 + size], np.ascontiguousarray(blurred)


def degrade_crop(img: np.ndarray, deg: Degradation, size: int, rng: np.random.Generator,
                 center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, degraded) float32 [0, 1] ``size`` x ``size`` windows of HWC ``img`` (uint8, uint16 or float
    [0, 1]; size <= H, W): blurred as the whole image would be (:func:`blur_window`), then corrupted."""
    drawn = deg.draw_blur(rng)
    y, x = window(img.shape, size, rng, center)
    sharp, blurred = blur_window(img, drawn, y, x, size)
    return sharp, deg.finish(blurred, rng)
