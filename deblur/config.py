"""Typed, frozen configuration for each command, built once from the command line.

``train.fit`` and ``infer.run`` are the only places that take a config apart; leaf functions receive
plain values. ``to_dict``/``from_dict`` carry a config to Ray workers and into checkpoints as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound="_Config")


@dataclass(frozen=True)
class _Config:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TrainConfig(_Config):
    """``deblur train``: data-parallel training with Ray Train."""

    data: str
    output: str
    model: str = "seed"
    channels: int = 1
    model_options: dict[str, Any] | None = None
    blur: str = "seed"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "mse"
    schedule: str = "constant"
    flips: bool = False
    patch_size: int = 64
    patches_per_image: int = 1
    val_fraction: float = 0.1
    val_data: str | None = None
    workers: int = 1
    gpu: bool = False
    cache: bool = True
    seed: int = 0
    keep_checkpoints: int = 3
    checkpoint_every: int = 1
    worker_resources: dict[str, float] | None = None


@dataclass(frozen=True)
class DeblurConfig(_Config):
    """``deblur run``: de-blur every image under ``input`` into ``output`` with Ray Data."""

    input: str
    output: str
    model: str | None = None
    format: str = "png"
    workers: int = 1
    gpu: bool = False
    batch_size: int = 4
    tile: int = 512
    tile_pad: int = 32
    self_ensemble: bool = False
    overwrite: bool = False
    fail_on_error: bool = False
    max_megapixels: float = 200.0
    input_column: str | None = None
    actor_resources: dict[str, float] | None = None
    stages: str = "auto"


@dataclass(frozen=True)
class EvalConfig(_Config):
    """``deblur eval``: score a model, the degraded input and Wiener deconvolution against sharp images."""

    data: str
    output: str
    model: str | None = None
    blur: str = "seed"
    paired: str | None = None
    seed: int = 0
    downscale: float = 1.0
    crop_border: int = 0
    y_channel: bool = False
    self_ensemble: bool = False
    limit: int = 0
    tile: int = 512
    tile_pad: int = 32
    report_images: int = 6
