"""Foreign checkpoints: any scale-1 restoration network that spandrel (chaiNNer's model loader, MIT) reads from
a ``.pth`` / ``.ckpt`` / ``.pt`` / ``.safetensors`` file: NAFNet, FFTformer, KBNet, Uformer, SwinIR, SCUNet,
DRUNet, DnCNN and more. spandrel is imported here only, and only when such a file is used.

Nothing in a file is run: ``.safetensors`` holds tensors only, and pickles are read by torch's weights-only
unpickler, which refuses any global beyond tensors and plain containers (a refused file names the global).
TorchScript archives and whole-model pickles are refused with how to convert them. Only spandrel's core
architectures are known unless the user installs ``spandrel_extra_arches`` (non-commercial licences) and
sets ``DEBLUR_EXTRA_ARCHES=1``; the licence is named when it is used.

:class:`ForeignModel` wraps the network so that it behaves like ours: NCHW float32 [0, 1] in and out, any
size (padded to the architecture's size needs, reflect then replicate as spandrel does, and cropped back),
clamped in eval mode, its state dict the network's own, so fine-tuned weights load back through spandrel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import pickle
from typing import Any, Callable

import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

from deblur.core.storage import read_bytes

log = logging.getLogger(__name__)
SUFFIXES = (".pth", ".ckpt", ".pt", ".safetensors")
NAME = "spandrel"  # config.json's "model" for a checkpoint of a spandrel architecture
HOW_TO_CONVERT = ("convert it to a state dict: `sd = torch.jit.load(f).state_dict()` (TorchScript) or "
                  "`sd = torch.load(f, weights_only=False).state_dict()` (a whole model, if you trust the file), "
                  "then `safetensors.torch.save_file(sd, 'model.safetensors')`")


def is_foreign(uri: str | None) -> bool:
    """True when ``uri`` names a single weights file (not one of deblur's checkpoint directories)."""
    return bool(uri) and uri.lower().endswith(SUFFIXES)


EXTRA = "DEBLUR_EXTRA_ARCHES"  # set to 1 to register spandrel_extra_arches (non-commercial licences)
EXTRA_NOTE = ("spandrel_extra_arches (Restormer, MPRNet, MIRNet2, SRFormer, CodeFormer, ...) is under "
              "non-commercial licences: check its terms before any commercial use")
_extra_installed = False


def _spandrel():
    """spandrel, with its extra architectures registered when the user asked for them (:data:`EXTRA`)."""
    global _extra_installed
    try:
        import spandrel
    except ImportError:
        raise ValueError("weights files of other architectures need spandrel: pip install 'deblur-ray[models]'") from None
    if os.environ.get(EXTRA) == "1" and not _extra_installed:
        try:
            import spandrel_extra_arches
        except ImportError:
            raise ValueError(f"{EXTRA}=1, but spandrel_extra_arches is not installed: pip install "
                             f"spandrel-extra-arches ({EXTRA_NOTE})") from None
        spandrel_extra_arches.install(ignore_duplicates=True)
        _extra_installed = True
        log.warning("%s=1: %s", EXTRA, EXTRA_NOTE)
    return spandrel


def read_state_dict(uri: str, data: bytes | None = None) -> dict[str, torch.Tensor]:
    """The tensors of the weights file ``uri`` (local or any fsspec URL), with BasicSR's ``params`` /
    ``params_ema`` wrappers and ``module.`` prefixes removed (spandrel's canonical form). Raises ValueError
    for TorchScript, whole-model pickles and pickles naming anything beyond tensors."""
    canonicalize_state_dict = _spandrel().canonicalize_state_dict

    data = read_bytes(uri) if data is None else data
    if uri.lower().endswith(".safetensors"):
        try:
            return canonicalize_state_dict(safetensors.torch.load(data))
        except Exception as e:  # safetensors' own error type: a usage error like any unreadable file
            raise ValueError(f"not a readable .safetensors file: {uri} ({str(e)[:120]})") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "global" in ln), str(e)[:200])
        raise ValueError(f"refused {uri}: its pickle names objects beyond tensors ({detail}); only state dicts "
                         f"are read and nothing in a file is run; if it is a whole model you trust, "
                         f"{HOW_TO_CONVERT}") from None
    except RuntimeError as e:
        if "TorchScript" in str(e) or "torchscript" in str(e).lower():
            raise ValueError(f"refused {uri}: a TorchScript archive (code, not weights); {HOW_TO_CONVERT}") from None
        raise ValueError(f"not a readable weights file: {uri} ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"refused {uri}: a {type(obj).__name__}, not a state dict; {HOW_TO_CONVERT}")
    return canonicalize_state_dict(obj)


@dataclasses.dataclass(frozen=True)
class ForeignSettings:
    """What a checkpoint records of a spandrel network (informative: spandrel detects it from the weights)."""

    architecture: str
    channels: int
    parameters: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ForeignModel(nn.Module):
    """A spandrel network behaving like deblur's models (NCHW float32 [0, 1], any size)."""

    memory_format = torch.contiguous_format  # NCHW: some architectures reshape with ``view``

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.inner = descriptor.model
        # spandrel's public call (``descriptor(x)``) pads, calls and crops, but under inference mode and with the
        # network switched to eval: fine-tuning needs gradients. So the padding is done here as spandrel does it,
        # and the architecture's own call is its private ``_call_fn``, the one private use of spandrel
        # (tests/core/test_foreign.py fails on a spandrel without it, or whose call differs from this one)
        self._call: Callable = descriptor._call_fn
        self.size = descriptor.size_requirements
        self.tiling = descriptor.tiling.name.lower()  # supported, discouraged, internal
        self.precisions = {"fp32"} | ({"bf16"} if descriptor.supports_bfloat16 else set()) | (
            {"fp16"} if descriptor.supports_half else set())
        self.settings = ForeignSettings(descriptor.architecture.id, descriptor.input_channels,
                                        sum(p.numel() for p in self.inner.parameters()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_w, pad_h = self.size.get_padding(w, h)
        if pad_w or pad_h:  # as spandrel pads: reflect as far as it can, then replicate
            rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
            x = F.pad(F.pad(x, (0, rw, 0, rh), "reflect"), (0, pad_w - rw, 0, pad_h - rh), "replicate")
        out = self._call(self.inner, x)[..., :h, :w]
        return out if self.training else out.clamp(0, 1)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)


def build(state_dict: dict[str, torch.Tensor], source: str) -> ForeignModel:
    """The :class:`ForeignModel` spandrel detects in ``state_dict`` (read from ``source``). Raises ValueError
    for an unknown architecture, a scale other than 1 (super-resolution), or channels other than 1 or 3."""
    spandrel = _spandrel()
    MAIN_REGISTRY, ImageModelDescriptor = spandrel.MAIN_REGISTRY, spandrel.ImageModelDescriptor
    UnsupportedModelError = spandrel.UnsupportedModelError

    try:
        descriptor = MAIN_REGISTRY.load(state_dict)
    except UnsupportedModelError:
        hint = "" if _extra_installed else (f"; if it is Restormer, MPRNet or another of spandrel_extra_arches, "
                                            f"install that and set {EXTRA}=1 ({EXTRA_NOTE})")
        raise ValueError(f"{source}: no architecture spandrel knows matches these weights{hint}") from None
    except Exception as e:  # an architecture matched but the weights do not fit it
        raise ValueError(f"{source}: not loadable by spandrel ({type(e).__name__}: {e})") from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"{source}: a {descriptor.architecture.name} model needs more than an image (e.g. a mask)")
    if descriptor.scale != 1:
        raise ValueError(f"{source}: {descriptor.architecture.name} at scale {descriptor.scale} is a "
                         "super-resolution model; deblur runs scale-1 restoration models only")
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels != descriptor.input_channels:
        raise ValueError(f"{source}: {descriptor.input_channels} channels in, {descriptor.output_channels} out; "
                         "deblur runs models of 1 or 3 channels in and out")
    return ForeignModel(descriptor)


def load(uri: str) -> tuple[ForeignModel, dict[str, Any]]:
    """(model in eval mode, a config as deblur's checkpoints have) of the weights file ``uri``."""
    data = read_bytes(uri)
    model = build(read_state_dict(uri, data), uri)
    config = {"model": NAME, "settings": model.settings.to_json(), "source": uri, "tiling": model.tiling,
              "size_requirements": dataclasses.asdict(model.size), "precisions": sorted(model.precisions),
              "digest": hashlib.sha256(data).hexdigest()[:12]}
    return model.eval(), config


def rebuild(weights: dict[str, torch.Tensor], settings: dict[str, Any], source: str) -> ForeignModel:
    """A spandrel network from a deblur checkpoint's weights, checked against the architecture it records."""
    model = build(weights, source)
    if settings.get("architecture") not in (None, model.settings.architecture):
        raise ValueError(f"{source}: records {settings['architecture']} but its weights are "
                         f"{model.settings.architecture}")
    return model
