"""Training-step speed of a model at several batch sizes and memory layouts, and of one data-loader worker
degrading crops (all on the CPU, or leaving blur and noise to the device), side by side in one run.

    python bench/train_step.py [--model unet] [--patch 128] [--batch 32 --batch 64 ...] [--seconds 4]
                               [--blur SPEC] [--json FILE]

Random NCHW float32 [0, 1] inputs already on the device (so it measures the model and optimiser, not the
data loader), in fp32 and under bf16 autocast side by side (``--precision``; bf16 is native on GPUs and on
CPUs with AMX or AVX512-BF16, emulated and slow elsewhere), the same ``train_step`` as training. Prints megapixels per second for
each setting and, with ``--json``, writes them and the fastest batch size (what a training run should use
when its loader keeps up). The loader figures are per CPU core (one thread): multiply by the loader workers
and compare with the step figures to see which side sets the pace.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

from deblur.core import models
from deblur.core.crops import CropStream
from deblur.core.choices import DEFAULT_DEGRADATION
from deblur.core.degrade import parse_degradation
from deblur.core.restore import bf16_hardware
from deblur.core.training import optimizer, train_step


def measure(model_name: str, channels: int, batch: int, patch: int, channels_last: bool, seconds: float,
            device: torch.device, bf16: bool) -> float:
    """Megapixels per second of ``train_step`` on one setting (after a warm-up of a quarter of ``seconds``),
    the forward pass under bf16 autocast when ``bf16`` (fp32 master weights, as training runs)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = models.build(model_name, channels=channels).to(device, memory_format=fmt).train()
    opt = optimizer(net, 1e-4)
    x = torch.rand(batch, channels, patch, patch, device=device).contiguous(memory_format=fmt)
    y = x.clone()
    for phase_seconds in (seconds / 4, seconds):  # warm-up (cuDNN autotuning), then the timed run
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < phase_seconds:
            train_step(net, opt, x, y, "psnr", device, bf16, clip=1.0)  # .item() inside syncs each step
            steps += 1
    return steps * batch * patch * patch / (time.perf_counter() - start) / 1e6

def measure_loader(spec: str, batch: int, patch: int, on_device: bool, seconds: float) -> float:
    """Megapixels per second one loader worker (one thread) prepares: the training stream's batches
    (:class:`deblur.core.crops.CropStream`), fully degraded on the CPU or left to the device for blur and
    noise; on 768x512 uint8 images of smooth noise."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    images = [cv2.resize((rng.random((64, 96, 3)) * 255).astype(np.uint8), (768, 512)) for _ in range(8)]
    stream = CropStream(images, spec, patch, batch, 3, seed=0, flips=True, on_device=on_device)
    deg, steps, start = parse_degradation(spec), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        stream.make(steps, deg)
        steps += 1
    return steps * batch * patch * patch / (time.perf_counter() - start) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=models.DEFAULT)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, action="append", default=[])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--degradation", "--blur", dest="degradation", action="append", default=[],
                   help=f"degradation spec(s) for the loader figures (default: {DEFAULT_DEGRADATION})")
    p.add_argument("--loader-only", action="store_true", help="measure the loader only, not training steps")
    p.add_argument("--precision", action="append", choices=["fp32", "bf16"], default=[],
                   help="autocast of the timed steps (default: both, side by side)")
    p.add_argument("--json")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    rows = []
    print(f"{device}: native bf16: {bf16_hardware(device)}; {torch.get_num_threads()} threads", flush=True)
    for batch in [] if args.loader_only else args.batch or [32, 64, 128]:
        for channels_last in (False, True):
            for precision in args.precision or ["fp32", "bf16"]:
                mpx = measure(args.model, args.channels, batch, args.patch, channels_last, args.seconds, device,
                              precision == "bf16")
                rows.append({"batch": batch, "channels_last": channels_last, "precision": precision,
                             "mpx_per_s": round(mpx, 3)})
                print(f"{args.model} on {device}: batch {batch:4d} x {args.patch}^2, channels_last={channels_last!s:5}"
                      f" {precision}: {mpx:8.3f} Mpx/s", flush=True)
    best = max(rows, key=lambda r: r["mpx_per_s"]) if rows else None
    if best:
        print(f"fastest: batch {best['batch']}, channels_last={best['channels_last']}, {best['precision']}")
    pairs = {(r["batch"], r["channels_last"]): r for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] == "bf16" and (r["batch"], r["channels_last"]) in pairs:
            print(f"bf16 / fp32, batch {r['batch']}, channels_last={r['channels_last']}: "
                  f"{r['mpx_per_s'] / pairs[(r['batch'], r['channels_last'])]['mpx_per_s']:.2f}x")
    loader = {}
    for spec in args.degradation or [DEFAULT_DEGRADATION]:
        loader[spec] = {}
        for where in ("loader", "device"):
            loader[spec][where] = round(measure_loader(spec, 32, args.patch, where == "device", args.seconds), 2)
            print(f"one loader worker, {spec}, blur and noise on the {where}: {loader[spec][where]:8.2f} Mpx/s",
                  flush=True)
        print(f"loader speed-up from --degrade-on device: {loader[spec]['device'] / loader[spec]['loader']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "best": best, "loader_mpx_per_s": loader}, f, indent=2)


if __name__ == "__main__":
    main()
