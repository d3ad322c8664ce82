"""Model registry: every architecture is built by name from plain keyword settings.

A checkpoint stores ``{"name": ..., "settings": {...}}`` so a network is never described twice:
``build(name, **settings)`` rebuilds it exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

import torch.nn as nn

from deblur.models.seed import SeedAutoencoder
from deblur.models.unet import UNet

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "seed": SeedAutoencoder,
    "unet": UNet,
}
DEFAULT = "unet"


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(REGISTRY)


def build(name: str, **settings: Any) -> nn.Module:
    """Build the registered model ``name`` with ``settings`` (e.g. ``channels=3``)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(names())}")
    return REGISTRY[name](**settings)


def settings_of(model: nn.Module) -> dict[str, Any]:
    """The keyword settings that rebuild ``model`` with :func:`build` (JSON-serialisable)."""
    return dict(model.settings)  # type: ignore[attr-defined]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def macs_per_pixel(model: nn.Module, size: int = 64) -> float:
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
        channels = model.settings["channels"]  # type: ignore[attr-defined]
        model.eval()(torch.zeros(1, channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    return total / size**2
