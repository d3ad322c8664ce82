"""What a blur is, and the registry of blurs by name.

A *blur* is a frozen dataclass whose :meth:`Blur.draw` gives one image's blur from a random generator: a
*kernel* (float32, odd-sized, sums to 1: :mod:`deblur.core.kernels`) or, for blurs that vary across the
image, a :class:`~deblur.core.camera.CameraPath` (:mod:`deblur.core.camera`). Each is registered where it is
defined (``@BLURS.register``) and named first in a degradation spec (:mod:`deblur.core.degrade`). Its range
fields ``(low, high)`` are drawn uniformly per image (:func:`sample`); equal bounds mean a fixed value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from deblur.core.registry import Registry
from deblur.core.choices import BLUR_NAMES

Range = tuple[float, float]
Drawn = Any  # what a blur draws for one image: a kernel (np.ndarray), or a deblur.core.camera.CameraPath
BORDER = cv2.BORDER_REFLECT_101  # how every blur extends an image past its edge (OpenCV's default, the article's)


def sample(rng: np.random.Generator, r: Range) -> float:
    """A value from range ``r``: uniform when its bounds differ, else the fixed value (no draw)."""
    return float(rng.uniform(*r)) if r[0] != r[1] else float(r[0])


class Blur:
    """A blur: subclasses are frozen dataclasses with a ``name`` and :meth:`draw`."""

    name: ClassVar[str]

    def draw(self, rng: np.random.Generator) -> Drawn:
        """This image's blur from ``rng``: a kernel (float32, odd-sized, sums to 1), or a camera path."""
        raise NotImplementedError


BLURS: Registry[type[Blur]] = Registry("blur", choices=BLUR_NAMES, definers=("deblur.core.kernels", "deblur.core.camera"))
