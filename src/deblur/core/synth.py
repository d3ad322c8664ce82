"""Synthetic pairs: degraded copies of sharp images, reproducible per image (``deblur degrade``).

Each image's random draws come from ``(seed, crc32(its relative path))``, so the same file always gets
the same kernel, noise and JPEG quality, whatever order or machine processes it. Sharp images may be
downscaled first (area averaging), which is how large camera JPEGs become clean ground truth.
"""

from __future__ import annotations

import posixpath
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.core.config import DegradeConfig
from deblur.core.degrade import Degradation, parse_degradation
from deblur.core.formats import FORMATS
from deblur.core.image import decode, from_float, to_float, to_hwc
from deblur.core.progress import bar
from deblur.core.places import refuse_overlap
from deblur.core.storage import filesystem, list_images, read_bytes, relative_key, write_atomic


@dataclass(frozen=True)
class Pair:
    """A sharp image and its degraded copy (HWC float32 [0, 1]; the degraded one is quantised to 8 bits,
    as a stored photo would be) and the blur kernel that made it (None when unknown)."""

    sharp: np.ndarray
    degraded: np.ndarray
    kernel: np.ndarray | None


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` (any dtype, HW/HWC) shrunk by ``factor`` >= 1 with area averaging; unchanged for 1."""
    if factor <= 1:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], *img.shape[2:])


def rng_for(key: str, seed: int) -> np.random.Generator:
    """The random generator of the image with relative path ``key``."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def make_pair(img: np.ndarray, deg: Degradation, key: str, seed: int = 0, factor: float = 1.0) -> Pair:
    """Degrade decoded ``img`` (uint8/uint16, HW/HWC) as ``deg`` says, reproducibly for ``key``."""
    sharp = to_hwc(to_float(downscale(img, factor)))
    degraded, kernel = deg.apply(sharp, rng_for(key, seed))
    return Pair(sharp, to_float(from_float(degraded)), kernel)


def write_degraded(cfg: DegradeConfig, threads: int = 8) -> str:
    """Write a degraded copy of every image under ``cfg.input`` to the same relative path under
    ``cfg.output`` (extension set by ``cfg.format``); returns a summary line. Unreadable inputs are listed,
    not fatal. An output that overlaps the input (the same folder, or one inside the other, by identity) is
    refused: the originals would be replaced, or degraded again on a rerun."""
    refuse_overlap([cfg.input], cfg.output)
    source, output, spec, seed, factor = cfg.input, cfg.output, cfg.degradation, cfg.seed, cfg.downscale
    form = FORMATS[cfg.format]
    deg = parse_degradation(spec)
    urls = list_images(source)
    out_fs, out_root = filesystem(output)

    def one(url: str) -> str | None:
        key = relative_key(source, url) if url != source else posixpath.basename(url)
        try:
            pair = make_pair(decode(read_bytes(url)), deg, key, seed, factor)
        except (OSError, ValueError) as e:
            return f"{url}: {e}"
        name = posixpath.splitext(key)[0] + "." + form.extension
        write_atomic(out_fs, posixpath.join(out_root, name), form.encode(from_float(pair.degraded)), root=out_root)
        return None

    with ThreadPoolExecutor(threads) as pool:
        errors = [e for e in bar(pool.map(one, urls), total=len(urls), desc="degrading", unit="img") if e]
    for e in errors:
        print(f"skipped {e}")
    return f"{len(urls) - len(errors)} degraded ({spec}) -> {output}, {len(errors)} failed"
