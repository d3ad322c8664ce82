"""Engines: what runs a model's forward pass when images are restored.

- ``eager``: PyTorch as it is, under autocast at the run's precision (:func:`deblur.core.restore.autocast`).
- ``openvino``: the network converted to Intel's OpenVINO runtime (the ``openvino`` extra; converted once and
  kept in deblur's cache, ``$DEBLUR_CACHE/openvino``, then compiled once per process), which runs it on the CPU
  in the run's precision (bf16 where the CPU computes it). On a 2-core Xeon with AMX it restores 1.4-1.6x the
  pixels a second of eager bf16, within 0.003 dB of eager fp32 (``bench/engines.py`` prints the figures).
- ``torch.compile`` was measured beside them (``bench/engines.py``: 1.26x eager bf16, below OpenVINO's 1.42x)
  and is not an engine: it builds again for each new window shape (3-15 s of CPU each here), which a run over
  photos of many sizes would pay again and again.

``auto`` (the default) is ``openvino`` where it is installed, the device is the CPU and the model is one of
deblur's own (a foreign architecture may not convert), else ``eager``.

An engine is a callable NCHW float32 [0, 1] -> NCHW float32 with the model's ``memory_format``, as
:func:`deblur.core.tiles.run` calls models; it is made by :func:`prepare`, never on the hot path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from typing import Any, Callable

import torch
import torch.nn as nn

from deblur.core.catalog import cache_root
from deblur.core.models.base import Model, pad_to_multiple
from deblur.core.registry import Registry
from deblur.core.choices import ENGINE_NAMES

Fn = Callable[[torch.Tensor], torch.Tensor]
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # deblur's names -> OpenVINO's precision hints


def openvino_installed() -> bool:
    """True when OpenVINO can be imported (``pip install 'deblur-ray[openvino]'``)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, net: nn.Module, device: torch.device) -> str:
    """``engine`` with "auto" made concrete (see the module doc)."""
    if engine != "auto":
        return engine
    ours = isinstance(net, Model)
    return "openvino" if device.type == "cpu" and ours and openvino_installed() else "eager"


def prepare(net: nn.Module, engine: str, device: torch.device, precision: str) -> Fn:
    """``net`` (eval mode, on ``device``) ready to run under ``engine`` (concrete: see :func:`resolve_engine`)
    at ``precision`` (fp32, bf16, fp16)."""
    return ENGINES[engine](net, device, precision)


def eager(net: nn.Module, device: torch.device, precision: str) -> Fn:
    """The model itself (the caller's autocast sets its precision)."""
    return net


class OpenVINO:
    """The model converted to OpenVINO and compiled for the CPU at ``precision``, with any batch and window size.

    Windows reach it channels-last, as :func:`deblur.core.tiles.run` gathers them (OpenVINO reorders them
    inside, so no copy is made here), padded to the sides the network computes on (``Model.multiple``: the
    network's own padding branches on the size, which a converted graph cannot), and its result is cropped back.
    """

    memory_format = torch.channels_last

    def __init__(self, net: nn.Module, device: torch.device, precision: str) -> None:
        import openvino as ov

        if device.type != "cpu":
            raise ValueError(f"the openvino engine runs on the CPU, not {device}; use --engine eager")
        self.multiple = int(getattr(net, "multiple", 1))
        ppp = ov.preprocess.PrePostProcessor(converted(net, self.multiple))
        for end in (ppp.input(), ppp.output()):  # channels-last in and out, NCHW inside
            end.tensor().set_layout(ov.Layout("NHWC"))
            end.model().set_layout(ov.Layout("NCHW"))
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision],
                  "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # what Ray gave the actor, as torch has
                  "ENABLE_CPU_PINNING": False}  # pinned, two actors' threads landed on the same core (measured)
        self.compiled = ov.Core().compile_model(ppp.build(), "CPU", config)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, self.multiple)
        out = self.compiled(y.permute(0, 2, 3, 1).numpy())[0]  # N x H x W x C
        return torch.from_numpy(out).permute(0, 3, 1, 2)[..., :h, :w]


def converted(net: nn.Module, multiple: int) -> Any:
    """``net`` as an OpenVINO model taking N x C x H x W, any N, H, W; read from deblur's cache when this network
    (class, settings, weights) was converted before by this OpenVINO, else converted and cached (written
    atomically): converting traces the network through PyTorch (~1 s of CPU an actor), reading it back ~0.05 s."""
    import openvino as ov

    channels = int(net.settings.channels) if hasattr(net, "settings") else 3
    key = hashlib.sha256(f"{type(net).__qualname__} {getattr(net, 'settings', '')} {ov.__version__}".encode())
    for name, tensor in net.state_dict().items():
        key.update(name.encode())
        key.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    path = os.path.join(cache_root(), "openvino", key.hexdigest()[:32] + ".xml")
    if os.path.exists(path):
        try:
            return ov.Core().read_model(path)
        except Exception:  # noqa: BLE001  a damaged entry: converted again below, and replaced
            pass
    side = 8 * multiple
    try:
        with warnings.catch_warnings():  # the tracer's notes (deprecated, sizes taken as constants): the
            warnings.simplefilter("ignore")  # sizes it sees are always multiples, see OpenVINO's class doc
            model = ov.convert_model(net, example_input=torch.rand(1, channels, side, side),
                                     input=[ov.PartialShape([-1, channels, -1, -1])])
    except Exception as e:  # the converter's own errors have no common type
        raise ValueError(f"OpenVINO cannot convert this model ({type(e).__name__}: {str(e)[:200]}); "
                         "use --engine eager") from None
    _save(ov, model, path)
    return model


def _save(ov: Any, model: Any, path: str) -> None:
    """``model`` saved at ``path`` (.xml, with its .bin), atomically: written in a temporary folder beside it,
    weights first, then moved into place. A folder that cannot be written to only loses the cache."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            staged = os.path.join(tmp, os.path.basename(path))
            ov.save_model(model, staged, compress_to_fp16=False)  # the weights as they are: outputs unchanged
            os.replace(staged[:-4] + ".bin", path[:-4] + ".bin")
            os.replace(staged, path)
    except OSError:
        pass


ENGINES: Registry[Callable[[nn.Module, torch.device, str], Fn]] = Registry(
    "engine", {"eager": eager, "openvino": OpenVINO}, ENGINE_NAMES)
