"""What every registered network is: an ``nn.Module`` built from one frozen settings dataclass.

The settings are the model's whole description: a checkpoint stores them (as JSON) next to the weights,
and :func:`deblur.core.models.build` rebuilds the network from them, so a model is never described twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn as nn


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
