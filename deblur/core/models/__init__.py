"""Model registry: every architecture is built by name from its settings dataclass.

A checkpoint stores ``{"model": name, "settings": {...}}`` so a network is never described twice:
``build(name, **settings)`` rebuilds it exactly. Unknown names and settings raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn

from deblur.core.settings import MODEL_NAMES
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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def macs_per_pixel(model: Model, size: int = 64) -> float:
    """Multiply-accumulates per output pixel of one forward pass (convolutions only), at ``size`` x ``size``."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * module.weight[0].numel()
        else:
            total += output.numel() * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    try:
        model.eval()(torch.zeros(1, model.settings.channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    return total / size**2
