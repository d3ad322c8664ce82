"""The training stream: batches of degraded random crops, drawn in parallel by DataLoader workers.

Batch ``k`` is a pure function of ``(seed, rank, k)``: its random generator is seeded by them, and loader
worker ``w`` of ``W`` makes batches ``start + w``, ``start + w + W``, ...; a DataLoader returns them in
that round-robin order. So the batches a run sees do not depend on how many loader workers made them, and a
run resumed at step ``k`` sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import cv2
import numpy as np
import torch

from deblur.core import device_degrade
from deblur.core.degrade import parse_degradation
from deblur.core.pairs import Example, blend, with_channels
from deblur.core.training import degrade_batch

Batch = tuple[torch.Tensor, torch.Tensor] | device_degrade.LoaderBatch


class CropStream(torch.utils.data.IterableDataset):
    """(degraded, sharp) NCHW float32 [0, 1] CPU tensors of ``batch`` random ``patch`` crops of ``images``
    (HWC as stored: uint8, uint16 or float [0, 1]; or real pairs, cut at one place in both, a ``synthetic``
    share degraded from their sharp side), from step ``start`` to ``stop`` (None: endless); or, with
    ``on_device`` (sharp images only), the :class:`~deblur.core.device_degrade.LoaderBatch` that the device
    finishes."""

    def __init__(self, images: list[Example], degradation: str, patch: int, batch: int, channels: int,
                 seed: int, rank: int = 0, flips: bool = False, start: int = 0, stop: int | None = None,
                 on_device: bool = False, mixup: float = 0.0, synthetic: float = 0.0) -> None:
        self.images = [with_channels(im, channels) for im in images]
        self.degradation, self.patch, self.batch, self.flips = degradation, patch, batch, flips
        self.seed, self.rank, self.start, self.stop, self.on_device = seed, rank, start, stop, on_device
        self.mixup, self.synthetic = mixup, synthetic

    def steps(self) -> Iterator[int]:
        """The steps this loader worker makes (all of them without workers)."""
        info = torch.utils.data.get_worker_info()
        first, every = (self.start + info.id, info.num_workers) if info else (self.start, 1)
        return itertools.count(first, every) if self.stop is None else iter(range(first, self.stop, every))

    def make(self, step: int, deg=None) -> Batch:
        """Batch ``step`` (a pure function of seed, rank and step)."""
        deg = deg or parse_degradation(self.degradation)
        rng = np.random.default_rng([self.seed, self.rank, step])
        picks = [self.pick(rng) for _ in range(self.batch)]
        if self.on_device:
            return device_degrade.draw_batch(picks, deg, self.patch, rng, self.flips)
        degraded, sharp = degrade_batch(picks, deg, self.patch, rng, self.flips, self.synthetic)
        return (torch.from_numpy(np.ascontiguousarray(degraded.transpose(0, 3, 1, 2))),
                torch.from_numpy(np.ascontiguousarray(sharp.transpose(0, 3, 1, 2))))

    def pick(self, rng: np.random.Generator) -> Example:
        """An image, or with probability ``mixup`` a blend of two of the same size (float32 [0, 1]): blur is
        linear, so a blend and its blurred blend are as valid a pair as the originals, and there are far more of them."""
        a = self.images[int(rng.integers(len(self.images)))]
        if self.mixup <= 0 or rng.random() >= self.mixup:
            return a
        b = self.images[int(rng.integers(len(self.images)))]
        if a.shape != b.shape:
            return a
        return blend(a, b, float(rng.uniform()))

    def __iter__(self) -> Iterator[Batch]:
        cv2.setNumThreads(1)  # one thread per loader worker: the workers are the parallelism
        deg = parse_degradation(self.degradation)
        for step in self.steps():
            yield self.make(step, deg)


def loader(stream: CropStream, workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """A DataLoader over ``stream`` with ``workers`` processes (0: in this process), each a few batches ahead.

    Workers are spawned, not forked: a fork of a process that already runs threads (a Ray worker, torch's
    thread pools) can inherit a held lock and hang for ever."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                                       prefetch_factor=4 if workers else None,
                                       multiprocessing_context="spawn" if workers else None)
