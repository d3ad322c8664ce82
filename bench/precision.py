"""What ``--precision`` costs and gains: the shipped model in fp32 and bf16 on the evaluation photos.

    python bench/precision.py [--data data/eval-photos] [--crop 256] [--device cpu|cuda] [--json]

Each photo's central ``--crop`` square (0: whole) is degraded with the shipped model's training degradation
(seeded), then restored in fp32 and in bf16 (autocast; forced even where the CPU emulates bf16, which is
slow) and scored against the sharp crop. Prints the mean PSNR of each, their difference (the cost of bf16),
the speed of each, and what ``--precision auto`` picks here. The photos are the evaluation set
(``make eval-photos`` writes them): measured, never trained or tuned on.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from figures import show

import deblur
from deblur.core.choices import DEFAULT_DEGRADATION
from deblur.core.degrade import parse_degradation
from deblur.core.image import center_crop, decode, to_float
from deblur.core.metrics import psnr
from deblur.core.restore import resolve_precision
from deblur.core.storage import list_images, read_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/eval-photos")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--degradation", default=DEFAULT_DEGRADATION)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    device = torch.device(args.device)
    if not os.path.isdir(args.data):
        raise SystemExit(f"{args.data}: not found; `python scripts/sample_photos.py {args.data}` writes it")
    deg = parse_degradation(args.degradation)
    sharp, blurred = [], []
    for i, path in enumerate(list_images(args.data)):
        img = decode(read_bytes(path))
        img = center_crop(img, args.crop) if args.crop else img
        img = img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        sharp.append(img)
        blurred.append((np.clip(deg(to_float(img), np.random.default_rng(i)), 0, 1) * 255 + 0.5).astype(np.uint8))
    mpx = sum(im.shape[0] * im.shape[1] for im in sharp) / 1e6
    figures: dict[str, object] = {"photos": len(sharp), "crop": args.crop, "cpus": os.cpu_count(),
                                  "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                  "auto": resolve_precision("auto", device),
                                  "psnr_blurred": float(np.mean([psnr(b, s) for b, s in zip(blurred, sharp)]))}
    for precision in ("fp32", "bf16"):
        restorer = deblur.load(device=device, precision=precision)
        restorer(blurred[0])  # warm-up
        t0 = time.perf_counter()
        out = [restorer(b) for b in blurred]
        figures[f"mpx_s_{precision}"] = mpx / (time.perf_counter() - t0)
        figures[f"psnr_{precision}"] = float(np.mean([psnr(o, s) for o, s in zip(out, sharp)]))
    figures["bf16_minus_fp32_db"] = figures["psnr_bf16"] - figures["psnr_fp32"]
    figures["bf16_speed_ratio"] = figures["mpx_s_bf16"] / figures["mpx_s_fp32"]
    show(figures, args.json)


if __name__ == "__main__":
    main()
