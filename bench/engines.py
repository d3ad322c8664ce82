"""The shipped model alone on this CPU under each engine, side by side in one process: eager fp32, eager bf16
autocast (what `--precision auto` runs where the CPU computes bf16), `torch.compile` with bf16, and OpenVINO
(f32 and bf16) where it is installed. Each engine restores the same 512x512 tiles of a photo; the table gives
Mpx/s, the ratio to eager bf16, and the PSNR of each output against eager fp32's (how far the engine moves the
result). Compilation and conversion happen once, before timing.

    .venv/bin/python bench/engines.py [--size 512] [--seconds 8] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import numpy as np
import torch
from figures import show

from deblur.core import checkpoint
from deblur.core.image import decode
from deblur.core.metrics import psnr
from deblur.core.restore import bf16_hardware

PHOTO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deblur", "assets", "samples",
                     "photos", "kodim03.png")


def tile(size: int) -> torch.Tensor:
    """A ``size`` x ``size`` crop of a bundled photo, NCHW float32 [0, 1]."""
    with open(PHOTO, "rb") as f:
        img = decode(f.read())[:size, :size, :3]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None] / 255


def engines(net: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Name -> a call restoring ``x`` (each ready: compiled or converted already)."""
    def eager(bf16: bool) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return net(x).float()
        return call

    out = {"eager fp32": eager(False)}
    if bf16_hardware(torch.device("cpu")):
        out["eager bf16"] = eager(True)
        compiled = torch.compile(net)

        def compiled_bf16() -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return compiled(x).float()
        out["torch.compile bf16"] = compiled_bf16
    try:
        import openvino as ov
    except ImportError:
        return out
    model = ov.convert_model(net, example_input=x)
    core = ov.Core()
    for hint in ("f32", "bf16"):
        compiled_ov = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        out[f"openvino {hint}"] = lambda c=compiled_ov: torch.from_numpy(c(x.numpy())[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=8.0, help="timing per engine")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = checkpoint.load(checkpoint.BUNDLED)[0].eval()
    x = tile(args.size)
    calls = engines(net, x)
    reference = calls["eager fp32"]().clamp(0, 1).numpy()
    figures: dict[str, object] = {"size": args.size, "threads": args.threads}
    for name, call in calls.items():
        call()  # warm-up (and the compilation, for torch.compile)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            out = call()
            n += 1
        mpx_s = n * args.size * args.size / 1e6 / (time.perf_counter() - t0)
        figures[f"{name} Mpx/s"] = round(mpx_s, 3)
        figures[f"{name} PSNR vs eager fp32 (dB)"] = round(psnr(out.clamp(0, 1).numpy(), reference), 2)
    base = figures.get("eager bf16 Mpx/s") or figures["eager fp32 Mpx/s"]
    for name in calls:
        figures[f"{name} vs eager bf16"] = round(figures[f"{name} Mpx/s"] / base, 2)
    show(figures, args.json)


if __name__ == "__main__":
    main()
