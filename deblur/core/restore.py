"""Restoring one image with a model: tiles for any size, the x8 self-ensemble, numeric precision, and the
public callables :class:`Restorer` (``deblur.load()``) and :class:`BatchRestorer` (for ``map_batches``).

Tiling: the image is cut into windows of at most ``tile`` pixels that overlap by ``2 * pad``; each window's
outer ``pad`` pixels (except at the image's own border) are dropped and the inner parts abut. When ``pad``
covers the model's receptive-field radius, the result equals whole-image processing exactly; models with a
wider reach keep ``pad`` pixels of context on every side of every output pixel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from deblur.core import checkpoint, flips
from deblur.core.config import PRECISION_NAMES, RestoreConfig
from deblur.core.image import from_float, to_float, to_numpy, to_tensor
from deblur.core.registry import Registry

log = logging.getLogger(__name__)
Fn = Callable[[torch.Tensor], torch.Tensor]
PRECISIONS: Registry[torch.dtype | None] = Registry("precision", {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}, PRECISION_NAMES)


def tiled(fn: Fn, x: torch.Tensor, tile: int, pad: int, batch: int = 4) -> torch.Tensor:
    """Apply ``fn`` (NCHW -> NCHW, same size) to ``x`` (1 x C x H x W) tile by tile.

    ``tile`` is the largest window side; ``pad`` the context dropped at inner window edges.
    Windows of equal size are run ``batch`` at a time.
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    inner = tile - 2 * pad
    if inner <= 0:
        raise ValueError(f"tile ({tile}) must exceed twice the padding ({pad})")
    out = None
    windows = [(y, xx) for y in _cuts(h, inner) for xx in _cuts(w, inner)]
    for i in range(0, len(windows), batch):
        crops, spans = [], []
        for (y0, y1), (x0, x1) in windows[i : i + batch]:
            a0, a1, b0, b1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            crops.append(x[..., a0:a1, b0:b1])
            spans.append((y0, y1, x0, x1, y0 - a0, x0 - b0))
        for res, (y0, y1, x0, x1, dy, dx) in zip(_run_grouped(fn, crops), spans):
            if out is None:
                out = x.new_empty((1, res.shape[1], h, w))
            out[..., y0:y1, x0:x1] = res[..., dy : dy + y1 - y0, dx : dx + x1 - x0]
    return out


def _cuts(length: int, inner: int) -> list[tuple[int, int]]:
    """Abutting [start, end) spans of at most ``inner`` covering ``range(length)``."""
    return [(s, min(s + inner, length)) for s in range(0, length, inner)]


def _run_grouped(fn: Fn, crops: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run same-shaped crops together, others alone; results in input order."""
    results: dict[int, torch.Tensor] = {}
    by_shape: dict[tuple, list[int]] = {}
    for i, c in enumerate(crops):
        by_shape.setdefault(tuple(c.shape), []).append(i)
    for idx in by_shape.values():
        out = fn(torch.cat([crops[i] for i in idx]))
        results.update((i, out[j : j + 1]) for j, i in enumerate(idx))
    return [results[i] for i in range(len(crops))]


def self_ensemble(fn: Fn) -> Fn:
    """``fn`` averaged over the 8 flips/rotations of its NCHW input (each undone on the output): the
    "x8 self-ensemble" of restoration papers, 8x the compute for a cleaner result."""

    def ensembled(x: torch.Tensor) -> torch.Tensor:
        total = sum(flips.unflip_tensor(fn(flips.flip_tensor(x, k)), k) for k in range(flips.COUNT))
        return total / flips.COUNT

    return ensembled


def bf16_hardware(device: torch.device) -> bool:
    """True when ``device`` computes bfloat16 natively: a GPU that supports it, or a CPU with AMX or
    AVX512-BF16 (elsewhere bf16 is emulated, and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision``, with "auto" made concrete: bf16 where :func:`bf16_hardware`, else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if bf16_hardware(device) else "fp32"


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@torch.no_grad()
def restore_image(model: nn.Module, img: np.ndarray, channels: int, device: torch.device, tile: int, pad: int,
                  ensemble: bool = False, precision: str = "fp32") -> np.ndarray:
    """De-blur one image (HW/HWC; RGB(A); uint8, uint16, or float in [0, 1]); returns the same shape and
    dtype (float input gives float32 [0, 1], unrounded).

    Alpha is kept aside and restored; colour images go through a 1-channel model plane by plane; large
    images go through in tiles (:func:`tiled`); ``ensemble`` averages the 8 flips/rotations
    (:func:`self_ensemble`); ``precision`` (fp32, bf16, fp16) sets the autocast dtype of the model.
    """
    fn = self_ensemble(model) if ensemble else model
    x = to_float(img)
    x = x[..., None] if x.ndim == 2 else x
    alpha = x[..., 3:] if x.shape[2] == 4 else None
    rgb = x[..., :3] if alpha is not None else x
    if channels == 1:
        planes = [rgb[..., c : c + 1] for c in range(rgb.shape[2])]
    else:
        planes = [np.repeat(rgb, channels, axis=2) if rgb.shape[2] == 1 else rgb]
    with _autocast(device, precision):
        outs = [to_numpy(tiled(fn, to_tensor(p[None], device), tile, pad))[0] for p in planes]
    out = np.concatenate(outs, axis=2) if channels == 1 else outs[0]
    if rgb.shape[2] == 1 and channels != 1:
        out = out.mean(axis=2, keepdims=True)
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    out = out.reshape(img.shape)
    return out.astype(np.float32) if np.issubdtype(img.dtype, np.floating) else from_float(out, img.dtype)


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Restorer:
    """A de-blurring model ready for images of any size: ``sharp = restorer(img)``.

    ``img`` is a numpy array (HW or HWC; grey, RGB or RGBA; uint8, uint16, or float32 in [0, 1]) or a
    PIL image; the result has the same type, size, channels and dtype. Make one with :func:`load`.
    """

    def __init__(self, model: nn.Module, channels: int, device: torch.device, options: RestoreConfig,
                 checkpoint_uri: str = "") -> None:
        self.model, self.channels, self.device, self.options = model, channels, device, options
        self.checkpoint = checkpoint_uri
        self.config: dict[str, Any] = {}  # the checkpoint's config.json (or a foreign file's), when loaded

    def __call__(self, img: Any) -> Any:
        if isinstance(img, np.ndarray):
            return self.restore_array(img)
        from PIL import Image

        if isinstance(img, Image.Image):
            return Image.fromarray(self.restore_array(np.asarray(img)))
        raise TypeError(f"expected a numpy array or a PIL image, got {type(img).__name__}")

    def restore_array(self, img: np.ndarray) -> np.ndarray:
        """:func:`restore_image` with this restorer's model and options."""
        o = self.options
        return restore_image(self.model, img, self.channels, self.device, o.tile, o.tile_pad, o.self_ensemble,
                             o.precision)

    def __repr__(self) -> str:
        return f"Restorer({self.checkpoint or 'model'!r}, device={self.device}, {self.options})"


def load(model: str | None = None, device: str | torch.device | None = None, **options: Any) -> Restorer:
    """A :class:`Restorer` for the checkpoint ``model`` (a checkpoint directory or training output, local or
    any fsspec URL; None: the shipped default model) on ``device`` (default: CUDA when available).
    ``options`` are :class:`~deblur.core.config.RestoreConfig` fields: ``tile``, ``tile_pad``,
    ``self_ensemble``, ``precision``."""
    opts = RestoreConfig(**options)
    dev = torch.device(device) if device is not None else default_device()
    uri = checkpoint.resolve(model)
    net, config = checkpoint.load(uri, dev)
    restorer = Restorer(net, int(config["settings"].get("channels", 1)), dev, honour_needs(net, opts, uri), uri)
    restorer.config = config
    return restorer


WHOLE = 1 << 20  # a tile side no image reaches: the whole image at once


def honour_needs(net: nn.Module, opts: RestoreConfig, uri: str) -> RestoreConfig:
    """``opts`` adjusted to what a foreign architecture (:mod:`deblur.core.foreign`) declares: a precision it
    cannot run falls back to fp32, and one that tiles internally or whose tiling spandrel discourages (its
    results depend on the whole image) runs on whole images; each change is said once."""
    precisions, tiling = getattr(net, "precisions", None), getattr(net, "tiling", "supported")
    if precisions is not None and opts.precision not in precisions:
        log.warning("%s cannot run in %s (it runs in %s): using fp32", uri, opts.precision, ", ".join(sorted(precisions)))
        opts = dataclasses.replace(opts, precision="fp32")
    if tiling in ("internal", "discouraged") and opts.tile < WHOLE:
        log.warning("%s: its architecture %s tiling: whole images, not %d px tiles (memory grows with the image)",
                    uri, "does its own" if tiling == "internal" else "discourages", opts.tile)
        opts = dataclasses.replace(opts, tile=WHOLE)
    return opts


class BatchRestorer:
    """A callable class for ``ray.data.Dataset.map_batches``: restores the images in ``column`` of each
    batch (numpy format; images as :class:`Restorer` takes them) into ``output_column`` (default: in place).

    The model is loaded once per actor (``compute=ray.data.ActorPoolStrategy(size=N)``; ``num_gpus=1``
    puts it on a GPU). This class does not need Ray: it is a plain callable over a dict of columns.
    """

    def __init__(self, model: str | None = None, column: str = "image", output_column: str | None = None,
                 device: str | None = None, **options: Any) -> None:
        self.restorer = load(model, device, **options)
        self.column, self.output_column = column, output_column or column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch[self.column]
        restored = [self.restorer(img) for img in images]
        same = isinstance(images, np.ndarray) and images.dtype != object
        return {**batch, self.output_column: np.stack(restored) if same else restored}
