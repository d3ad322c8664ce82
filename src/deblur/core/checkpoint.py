"""Checkpoints: a directory with ``model.safetensors`` (weights) and ``config.json`` (everything else).

``config.json`` holds ``{"model": name, "settings": {...}, "blur": spec, "metrics": {...}, "epoch": n}``
so a checkpoint rebuilds its own network: nothing is unpickled when loading. Training state for resuming
(``optimizer.pt``) is loaded with ``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
from typing import Any

import safetensors
import safetensors.torch
import torch
import torch.nn as nn

from deblur.core import catalog, foreign, models, progress
from deblur.core.storage import filesystem, read_bytes, unstrip

WEIGHTS, CONFIG, OPTIMIZER = "model.safetensors", "config.json", "optimizer.pt"
BUNDLED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "default")


def save(directory: str, model: nn.Module, name: str, meta: dict[str, Any],
         optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write ``model`` (registered as ``name``) and ``meta`` to the local ``directory``."""
    os.makedirs(directory, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, os.path.join(directory, WEIGHTS))
    config = {"model": name, "settings": models.settings_of(model), **meta}
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), os.path.join(directory, OPTIMIZER))


def read_config(uri: str) -> dict[str, Any]:
    """The ``config.json`` of the checkpoint directory ``uri``."""
    fs, path = filesystem(uri)
    with fs.open(posixpath.join(path, CONFIG), "rb") as f:
        return json.load(f)


def load(uri: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in checkpoint directory ``uri`` (local or any fsspec URL), in eval mode.

    Raises ValueError with a clear message when ``uri`` is not a readable checkpoint.
    """
    if foreign.is_foreign(uri):  # a weights file of a spandrel architecture (NAFNet, ...)
        model, config = foreign.load(uri)
        return model.to(device).eval(), config
    try:
        config = read_config(uri)
        data = read_bytes(posixpath.join(uri, WEIGHTS))
        if config["model"] == foreign.NAME:  # fine-tuned from one: spandrel rebuilds it from its weights
            model = foreign.rebuild(safetensors.torch.load(data), config.get("settings", {}), uri)
        else:
            model = models.build(config["model"], **config.get("settings", {}))
            model.load_state_dict(safetensors.torch.load(data))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, safetensors.SafetensorError) as e:
        raise ValueError(f"not a readable deblur checkpoint: {uri} ({type(e).__name__}: {e})") from None
    return model.to(device).eval(), config


def load_optimizer_state(uri: str) -> dict[str, Any] | None:
    """The optimizer state saved in checkpoint ``uri``, or None; tensors only, no arbitrary objects."""
    fs, path = filesystem(uri)
    if not fs.exists(posixpath.join(path, OPTIMIZER)):
        return None
    return torch.load(io.BytesIO(fs.cat_file(posixpath.join(path, OPTIMIZER))), weights_only=True, map_location="cpu")


def resolve(uri: str | None) -> str:
    """The checkpoint directory named by ``uri``: itself when it holds a checkpoint; for a training
    output, its best checkpoint (highest validation PSNR, latest epoch or step on ties); the bundled model for None;
    for a public model's name (:mod:`deblur.core.catalog`), its weights file, fetched once and checked.

    Raises FileNotFoundError when nothing under ``uri`` is a checkpoint.
    """
    if uri is None:
        return BUNDLED
    if catalog.is_name(uri):  # a public model by name: its verified file in the cache (fetched once)
        return catalog.fetch(uri, show=progress.shown())
    fs, path = filesystem(uri)
    if foreign.is_foreign(uri):
        if not fs.isfile(path):
            raise FileNotFoundError(f"no weights file at {uri}")
        return uri
    if fs.exists(posixpath.join(path, CONFIG)):
        return uri
    configs = [p for p in fs.glob(posixpath.join(path, "**", CONFIG)) if not posixpath.basename(
        posixpath.dirname(p)).startswith(".")] if fs.isdir(path) else []
    if not configs:
        raise FileNotFoundError(f"no checkpoint (directory with {CONFIG}) at {uri}")
    scored = []
    for p in configs:
        with fs.open(p, "rb") as f:
            cfg = json.load(f)
        scored.append((cfg.get("metrics", {}).get("val_psnr", float("-inf")), cfg.get("epoch", cfg.get("step", -1)), p))
    best = max(scored)[2]
    return unstrip(fs, posixpath.dirname(best))


def export(uri: str, directory: str, half: bool = True, **meta: Any) -> None:
    """Copy the checkpoint at ``uri`` (or a training output's best, see :func:`resolve`) to local
    ``directory`` for shipping: weights only (float16 when ``half``: half the size, loaded back into float32
    parameters), config plus ``meta``, no optimizer."""
    uri = resolve(uri)
    weights = safetensors.torch.load(read_bytes(posixpath.join(uri, WEIGHTS)))
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    os.makedirs(directory, exist_ok=True)
    safetensors.torch.save_file(weights, os.path.join(directory, WEIGHTS))
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump({**read_config(uri), "weights_dtype": "float16" if half else "float32", **meta}, f, indent=2,
                  sort_keys=True)


def load_state(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """(weights, config, optimizer state or None) of the checkpoint ``uri`` (for resuming). Raises ValueError
    when any of them cannot be read."""
    try:
        weights = safetensors.torch.load(read_bytes(posixpath.join(uri, WEIGHTS)))
        return weights, read_config(uri), load_optimizer_state(uri)
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, EOFError, safetensors.SafetensorError) as e:
        raise ValueError(f"not a readable deblur checkpoint: {uri} ({type(e).__name__}: {e})") from None


def newest_first(output: str) -> list[str]:
    """The checkpoints of a training output, newest (highest epoch or step) first."""
    fs, path = filesystem(output)
    found = []
    for p in fs.glob(posixpath.join(path, "*", CONFIG)) if fs.isdir(path) else []:
        name = posixpath.basename(posixpath.dirname(p))
        unit, _, number = name.partition("_")
        if unit in ("epoch", "step") and number.isdigit():
            found.append((int(number), unstrip(fs, posixpath.dirname(p))))
    return [uri for _, uri in sorted(found, reverse=True)]


def model_id(uri: str, config: dict[str, Any] | None = None) -> str:
    """A short, stable id of the checkpoint at ``uri`` (whose ``config``, from :func:`load`, saves reading it
    again): its architecture and the hash of its weights."""
    if foreign.is_foreign(uri):
        config = config or foreign.load(uri)[1]
        return f"{config['settings']['architecture']}-{config['digest']}"
    digest = hashlib.sha256(read_bytes(posixpath.join(uri, WEIGHTS))).hexdigest()[:12]
    config = config or read_config(uri)
    name = config.get("settings", {}).get("architecture") if config["model"] == foreign.NAME else config["model"]
    return f"{name}-{digest}"


def describe(uri: str | None) -> dict[str, Any]:
    """What the checkpoint ``uri`` is (None: the shipped model): architecture, parameters, multiply-
    accumulates per pixel (every convolution and matrix product, counted by torch's FlopCounterMode on a
    64x64 input), size needs, precisions, tiling, and where it came from."""
    uri = resolve(uri)
    model, config = load(uri)
    channels = int(config["settings"].get("channels", 3))
    parameters, macs = models.cost(model, channels)
    foreign_model = isinstance(model, foreign.ForeignModel)
    return {
        "checkpoint": uri, "id": model_id(uri, config),
        "architecture": config["settings"]["architecture"] if foreign_model else config["model"],
        "parameters": parameters, "macs_per_pixel": macs, "channels": channels,
        "size_requirements": config.get("size_requirements", {"minimum": 0, "multiple_of": 1, "square": False}),
        "precisions": config.get("precisions", ["bf16", "fp16", "fp32"]), "tiling": config.get("tiling", "supported"),
        "licence": ("architecture code: spandrel's core package (permissive licences); weights: their "
                    "publisher's terms") if foreign_model else "deblur (Apache-2.0)",
        "trained_on": config.get("degradation") or config.get("blur"),
    }
