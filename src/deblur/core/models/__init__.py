"""Model registry: every architecture is built by name from its settings dataclass.

A checkpoint stores ``{"model": name, "settings": {...}}`` so a network is never described twice:
``build(name, **settings)`` rebuilds it exactly. Unknown names and settings raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn

from deblur.core.choices import MODEL_NAMES
from deblur.core.models.base import Model, Settings
from deblur.core.models.seed import SeedAutoencoder
from deblur.core.models.unet import UNet
from deblur.core.registry import Registry

REGISTRY: Registry[type[Model]] = Registry("model", {"seed": SeedAutoencoder, "unet": UNet}, MODEL_NAMES)
DEFAULT = "unet"


def names() -> list[str]:
    """Registered model names, sorted."""
    return REGISTRY.names()


def settings(name: str, values: dict[str, Any]) -> Settings:
    """The settings of model ``name`` from JSON-like ``values`` (lists become tuples); a ValueError names
    any setting the model does not have."""
    cls = REGISTRY[name].Settings
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"bad model option for {name!r}: {', '.join(unknown)}; settings: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check(name: str, values: dict[str, Any]) -> None:
    """Raise ValueError unless ``name`` is registered and ``values`` are settings it has."""
    settings(name, values)


def build(name: str, **values: Any) -> Model:
    """Build the registered model ``name`` with settings ``values`` (e.g. ``channels=3``)."""
    return REGISTRY[name](settings(name, values))


def settings_of(model: Model) -> dict[str, Any]:
    """The settings that rebuild ``model`` with :func:`build`, as JSON values."""
    return model.settings.to_json()


def memory_format(model: object) -> torch.memory_format:
    """The layout ``model`` runs in: its ``memory_format`` (deblur's models: channels-last, see
    :class:`~deblur.core.models.base.Model`), else NCHW (a foreign network may reshape with ``view``)."""
    return getattr(model, "memory_format", torch.contiguous_format)


@torch.no_grad()
def cost(model: nn.Module, channels: int, side: int = 64) -> tuple[int, float]:
    """(parameters, multiply-accumulates per pixel of one forward pass in eval mode: every convolution and
    matrix product, counted by torch's FlopCounterMode on a ``side`` x ``side`` input of ``channels``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.rand(1, channels, side, side))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2 / side**2
