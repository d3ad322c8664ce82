"""Training, free of Ray: degraded batches, losses, learning-rate schedules, the optimiser, one step, one
epoch, validation.

``deblur.train`` runs these inside Ray Train workers; anything else (a notebook, a single GPU without Ray)
can run them directly. A *step* is one optimiser update. Images are HWC float32 [0, 1] numpy arrays;
tensors are NCHW float32 [0, 1].
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deblur.core import metrics
from deblur.core.choices import LOSS_NAMES, SCHEDULE_NAMES
from deblur.core.degrade import Degradation
from deblur.core.flips import flip_array
from deblur.core.image import to_numpy, to_tensor
from deblur.core.pairs import Example, crop, with_channels
from deblur.core.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KERAS_EPSILON = 1e-7  # Adam's epsilon in Keras, as in the article (torch's default is 1e-8)


def _psnr_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = ((out - target) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(mse + 1e-8)).mean()


LOSSES: Registry[Loss] = Registry("loss", {
    "mse": F.mse_loss,
    "bce": lambda out, target: F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), target),
    "l1": F.l1_loss,
    "charbonnier": lambda out, target: torch.sqrt((out - target) ** 2 + 1e-6).mean(),
    "psnr": _psnr_loss,
}, LOSS_NAMES)


def loss_fn(out: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """Loss between NCHW tensors in [0, 1]: ``mse``, ``bce`` (the article's two), ``l1``,
    ``charbonnier`` (smooth L1, eps 1e-3) or ``psnr`` (mean over images of -PSNR, as NAFNet trains)."""
    return LOSSES[name](out, target)


def _cosine(base: float, progress: float, warmup: float = 0.02) -> float:
    if progress < warmup:
        return base * (progress + 1e-3) / warmup
    t = (progress - warmup) / max(1 - warmup, 1e-9)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


SCHEDULES: Registry[Callable[[float, float], float]] = Registry("schedule", {
    "constant": lambda base, progress: base,
    "cosine": _cosine,
}, SCHEDULE_NAMES)


def learning_rate(base: float, progress: float, schedule: str) -> float:
    """The learning rate at ``progress`` in [0, 1] of training: ``constant``, or ``cosine``: a linear
    warm-up over the first 2% then cosine decay to 1% of ``base``."""
    return SCHEDULES[schedule](base, progress)


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer(model: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with Keras' epsilon (:data:`KERAS_EPSILON`), the one optimiser of every training path."""
    return torch.optim.Adam(model.parameters(), lr=lr, eps=KERAS_EPSILON)


def training_batches(images: Iterable[Example], batch_size: int, deg: Degradation, patch: int,
                     channels: int, rng: np.random.Generator, flips: bool = False,
                     synthetic: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(degraded, sharp) float32 [0, 1] N x P x P x C batches of random crops of ``images`` (uint8, uint16
    or float [0, 1], HW/HWC; or real pairs, :class:`~deblur.core.pairs.PairedImage`), degraded on the fly.

    P is ``patch``, or the smallest image side in the batch when an image is smaller. ``flips`` adds a
    random flip/rotation of each crop; ``synthetic``: see :func:`~deblur.core.pairs.crop`.
    """
    chunk: list[Example] = []
    for img in images:
        chunk.append(with_channels(img, channels))
        if len(chunk) == batch_size:
            yield degrade_batch(chunk, deg, patch, rng, flips, synthetic)
            chunk = []
    if chunk:
        yield degrade_batch(chunk, deg, patch, rng, flips, synthetic)


def degrade_batch(images: list[Example], deg: Degradation, patch: int, rng: np.random.Generator,
                  flips: bool = False, synthetic: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One (degraded, sharp) N x P x P x C batch: a random crop of each image (or pair, cut at one place in
    both), degraded by ``deg`` (:func:`~deblur.core.pairs.crop`)."""
    size = min(patch, *(min(im.shape[:2]) for im in images))
    pairs = []
    for im in images:
        sharp, blurred = crop(im, deg, size, rng, synthetic)
        if flips:
            k = int(rng.integers(8))
            sharp, blurred = flip_array(sharp, k), flip_array(blurred, k)  # a pair under a rotated kernel
        pairs.append((blurred, sharp))
    return np.stack([b for b, _ in pairs]), np.stack([s for _, s in pairs])


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               loss_name: str, device: torch.device, bf16: bool, clip: float = 0.0) -> float:
    """One optimiser step on degraded ``x`` and sharp ``y`` (NCHW float32 [0, 1], on ``device``);
    bf16 autocast for the forward pass when ``bf16``; gradient norm clipped to ``clip`` when > 0.
    Returns the loss."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    loss = loss_fn(out.float(), y, loss_name)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(loss.item())


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, batches, loss_name: str,
                device: torch.device, bf16: bool) -> float:
    """One pass over ``batches``; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for blurred, sharp in batches:
        x, y = to_tensor(blurred, device), to_tensor(sharp, device)
        total += train_step(model, opt, x, y, loss_name, device, bf16) * len(blurred)
        count += len(blurred)
    return total / max(count, 1)


@torch.no_grad()
def validate(model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device,
             bf16: bool) -> dict[str, float]:
    """Mean PSNR/SSIM of the model's output and of the degraded input against the sharp crops
    (HWC float32 [0, 1] pairs of (degraded, sharp))."""
    model.eval()
    sums = {"val_psnr": 0.0, "val_ssim": 0.0, "val_psnr_blurred": 0.0, "val_count": 0.0}
    for blurred, sharp in pairs:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = to_numpy(model(to_tensor(blurred[None], device)))[0]
        sums["val_psnr"] += metrics.psnr(out, sharp)
        sums["val_ssim"] += metrics.ssim(out, sharp) if min(sharp.shape[:2]) >= 11 else 0.0
        sums["val_psnr_blurred"] += metrics.psnr(blurred, sharp)
        sums["val_count"] += 1
    n = max(sums.pop("val_count"), 1)
    model.train()
    return {k: v / n for k, v in sums.items()}
