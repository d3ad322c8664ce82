"""What every registered network is: an ``nn.Module`` built from one frozen settings dataclass.

The settings are the model's whole description: a checkpoint stores them (as JSON) next to the weights,
and :func:`deblur.core.models.build` rebuilds the network from them, so a model is never described twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of each model's settings; ``channels`` is the image channels in and out (1 or 3)."""

    channels: int = 3

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class Model(nn.Module):
    """A de-blurring network: NCHW float32 [0, 1] in, the same shape out (clamped to [0, 1] in eval mode)."""

    Settings: ClassVar[type[Settings]]
    # the layout its convolutions run fastest in (oneDNN on CPUs, cuDNN's tensor cores): channels-last
    # (measured on the U-Net, 576x576 windows, 2 CPU cores: 1.9x fp32 and 1.3-1.8x bf16 against NCHW)
    memory_format: ClassVar[torch.memory_format] = torch.channels_last

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    @property
    def multiple(self) -> int:
        """The network computes on sides that are multiples of this (1: any); ``forward`` pads other sizes
        with :func:`pad_to_multiple` and crops its result back."""
        return 1


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """``x`` (NCHW) padded at the bottom and right to sides that are multiples of ``m``: mirrored, or repeated
    where a side is too short to mirror; ``x`` itself when its sides already are."""
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
