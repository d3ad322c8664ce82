"""Model registry: every architecture is built by name from plain keyword settings.

A checkpoint stores ``{"name": ..., "settings": {...}}`` so a network is never described twice:
``build(name, **settings)`` rebuilds it exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from deblur.models.seed import SeedAutoencoder

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "seed": SeedAutoencoder,
}


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
