"""The shipped model alone on this CPU under each engine (deblur.core.engines), side by side in one process.

Each engine and precision restores the same photo, blurred by the demo's degradation, in the pipeline's default
tiles (``RestoreConfig.tile``) through ``deblur.core.restore.restore_images``, as a model actor does. Per row:
Mpx/s, the ratio to eager bf16 (what ``--precision auto`` ran before engines existed), the PSNR of the output
against the sharp photo and its change from eager fp32's (the engine must not cost quality: the default is
the fastest within 0.05 dB), and the time to prepare it (conversion, compilation: once per actor). The
first call of each is left out of the timing (torch.compile compiles there).

    .venv/bin/python bench/engines.py [--size 1024x768] [--seconds 8] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from figures import show

from deblur.core import checkpoint, engines
from deblur.core.config import RestoreConfig
from deblur.core.degrade import parse_degradation
from deblur.core.image import decode, from_float, to_float
from deblur.core.metrics import psnr
from deblur.core.models import memory_format
from deblur.core.restore import bf16_hardware, restore_images
from deblur.demo import DEMO_DEGRADATION

TILE, TILE_PAD = RestoreConfig.tile, RestoreConfig.tile_pad  # the pipeline's defaults

PHOTO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "deblur", "assets", "samples",
                     "photos", "kodim03.png")


def pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, blurred) ``h`` x ``w`` uint8 RGB crops of a bundled photo (tiled when it is smaller)."""
    with open(PHOTO, "rb") as f:
        img = decode(f.read())[..., :3]
    sharp = np.ascontiguousarray(np.tile(img, (h // img.shape[0] + 1, w // img.shape[1] + 1, 1))[:h, :w])
    return sharp, from_float(parse_degradation(DEMO_DEGRADATION)(to_float(sharp), np.random.default_rng(0)))


def rows(cpu_bf16: bool) -> list[tuple[str, str]]:
    """(engine, precision) pairs to measure on this CPU: bf16 only where it computes it. ``compile`` is
    ``torch.compile``, measured beside the engines (it is not one: see deblur.core.engines)."""
    precisions = ["fp32", "bf16"] if cpu_bf16 else ["fp32"]
    names = ["compile", *(e for e in engines.ENGINES if e != "openvino" or engines.openvino_installed())]
    return [(e, p) for e in names for p in precisions]


def prepare(net: torch.nn.Module, engine: str, precision: str, compiled: dict) -> object:
    """The callable for ``engine`` (one ``torch.compile`` of ``net`` for both precisions)."""
    if engine == "compile":
        return compiled.setdefault("fn", torch.compile(net))
    return engines.prepare(net, engine, torch.device("cpu"), precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the photo restored")
    ap.add_argument("--seconds", type=float, default=8.0, help="timing per engine and precision")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    sharp, blurred = pair(h, w)
    cpu = torch.device("cpu")
    net = checkpoint.load(checkpoint.BUNDLED)[0].eval()
    net = net.to(memory_format=memory_format(net))
    figures: dict[str, object] = {"size": args.size, "threads": args.threads,
                                  "blurred PSNR (dB)": round(psnr(blurred, sharp), 2)}
    compiled: dict = {}
    for engine, precision in rows(bf16_hardware(cpu)):
        t0 = time.perf_counter()
        fn = prepare(net, engine, precision, compiled)
        prepared = time.perf_counter() - t0
        out = restore_images(fn, [blurred], 3, cpu, TILE, TILE_PAD, precision=precision)[0]  # compiles, warms up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            out = restore_images(fn, [blurred], 3, cpu, TILE, TILE_PAD, precision=precision)[0]
            n += 1
        seconds = time.perf_counter() - t0
        key = f"{engine} {precision}"
        figures[f"{key} Mpx/s"] = round(n * w * h / 1e6 / seconds, 3)
        figures[f"{key} PSNR (dB)"] = round(psnr(out, sharp), 3)
        figures[f"{key} prepare (s)"] = round(prepared, 2)
    base = figures.get("eager bf16 Mpx/s") or figures["eager fp32 Mpx/s"]
    reference = figures["eager fp32 PSNR (dB)"]
    for engine, precision in rows(bf16_hardware(cpu)):
        key = f"{engine} {precision}"
        figures[f"{key} vs eager {'bf16' if 'eager bf16 Mpx/s' in figures else 'fp32'}"] = round(
            figures[f"{key} Mpx/s"] / base, 2)
        figures[f"{key} PSNR change (dB)"] = round(figures[f"{key} PSNR (dB)"] - reference, 3)
    figures["default (--engine auto, --precision auto)"] = engines.resolve_engine("auto", net, cpu)
    show(figures, args.json)


if __name__ == "__main__":
    main()
