"""Restoring images with a model: any size and number (:mod:`deblur.core.tiles` cuts and batches the
windows), the x8 self-ensemble, numeric precision (``auto``: bf16 where the hardware computes it), and the
public callables :class:`Restorer` (``deblur.load()``) and :class:`BatchRestorer` (for ``map_batches``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from deblur.core import checkpoint, engines, flips, tiles
from deblur.core.models import memory_format
from deblur.core.config import RestoreConfig
from deblur.core.choices import PRECISION_NAMES
from deblur.core.registry import Registry

log = logging.getLogger(__name__)
Fn = Callable[[torch.Tensor], torch.Tensor]
PRECISIONS: Registry[torch.dtype | None] = Registry("precision", {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}, PRECISION_NAMES)  # "auto": resolve_precision


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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a model runs in at ``precision`` (fp32, bf16, fp16; not "auto") on ``device``."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@torch.no_grad()
def restore_images(model: Fn, images: list[np.ndarray], channels: int, device: torch.device, tile: int,
                   pad: int, ensemble: bool = False, precision: str = "fp32",
                   budget: int = 0) -> list[np.ndarray]:
    """De-blur images with ``model`` (a network, or an engine's callable: :mod:`deblur.core.engines`), each
    HW/HWC; grey, RGB or RGBA; uint8, uint16, or float in [0, 1]; each result has
    its image's shape and dtype (float input gives float32 [0, 1], unrounded).

    Alpha is copied as is; colour images go through a one-channel model channel by channel, grey ones
    through a colour model as grey RGB. Windows of equal shape, from one image's tiles or from several small
    images, run through the model together up to ``budget`` pixels (0: the device's; see
    :mod:`deblur.core.tiles`); pixels stay integers until they reach ``device``. ``ensemble`` averages the 8 flips/rotations
    (:func:`self_ensemble`); ``precision`` (fp32, bf16, fp16) is the model's autocast dtype.
    """
    fmt = memory_format(model)  # tiles.run hands the model its windows in it

    def call(x: torch.Tensor) -> torch.Tensor:  # a flip or rotation of the ensemble changes the strides
        return model(x.contiguous(memory_format=fmt))

    fn = self_ensemble(call) if ensemble else model
    outs = [np.empty(img.shape, np.float32 if np.issubdtype(img.dtype, np.floating) else img.dtype)
            for img in images]
    planes = [p for img, out in zip(images, outs) for p in _planes(img, out, channels)]
    with autocast(device, precision):
        tiles.run(fn, planes, tile, pad, device, budget, fmt)
    return outs


def _planes(img: np.ndarray, out: np.ndarray, channels: int) -> list[tiles.Plane]:
    """The model inputs of ``img`` (see :func:`restore_images`), each with its place in ``out``; alpha
    is copied into ``out`` here."""
    floating = np.issubdtype(img.dtype, np.floating)
    src, dst = img.astype(np.float32, copy=False) if floating else img, out
    if src.ndim == 2:
        src, dst = src[..., None], dst[..., None]
    if src.shape[2] == 4:
        dst[..., 3:] = np.clip(src[..., 3:], 0, 1) if floating else src[..., 3:]
        src, dst = src[..., :3], dst[..., :3]
    top = 1.0 if floating else float(np.iinfo(img.dtype).max)
    if channels == 1:
        return [tiles.Plane(src[..., c : c + 1], dst[..., c : c + 1], top) for c in range(src.shape[2])]
    return [tiles.Plane(src, dst, top, expand=channels if src.shape[2] == 1 else 0)]


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
        """``options.engine`` and ``options.precision`` concrete (:func:`load` makes them so)."""
        self.model, self.channels, self.device, self.options = model, channels, device, options
        self.forward = engines.prepare(model, options.engine, device, options.precision)  # converted once, here
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
        """One numpy image (:meth:`restore_many`)."""
        return self.restore_many([img])[0]

    def restore_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Several numpy images at once (:func:`restore_images`): those of one size share model calls."""
        o = self.options
        return restore_images(self.forward, images, self.channels, self.device, o.tile, o.tile_pad,
                              o.self_ensemble, o.precision)

    def __repr__(self) -> str:
        return f"Restorer({self.checkpoint or 'model'!r}, device={self.device}, {self.options})"


def load(model: str | None = None, device: str | torch.device | None = None, **options: Any) -> Restorer:
    """A :class:`Restorer` for the checkpoint ``model`` (a checkpoint directory or training output, local or
    any fsspec URL; None: the shipped default model) on ``device`` (default: CUDA when available).
    ``options`` are :class:`~deblur.core.config.RestoreConfig` fields: ``tile``, ``tile_pad``,
    ``self_ensemble``, ``precision`` and ``engine`` ("auto", the defaults, are made concrete for ``device``
    and the model: see ``restorer.options``)."""
    opts = RestoreConfig(**options)
    dev = torch.device(device) if device is not None else default_device()
    uri = checkpoint.resolve(model)
    net, config = checkpoint.load(uri, dev)
    net = net.to(memory_format=memory_format(net))
    opts = dataclasses.replace(opts, precision=resolve_precision(opts.precision, dev),
                               engine=engines.resolve_engine(opts.engine, net, dev))
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
        restored = self.restorer.restore_many([np.asarray(img) for img in images])
        same = isinstance(images, np.ndarray) and images.dtype != object
        return {**batch, self.output_column: np.stack(restored) if same else restored}
