"""Speed and cost of restoration architectures side by side, in one run: the shipped model and spandrel's
NAFNet, FFTformer, KBNet and SwinIR at their published de-blurring/denoising sizes (random weights: speed
does not depend on them), each through deblur's own restore path (``deblur.load`` of a saved file).

    .venv/bin/python bench/architectures.py [--size 256] [--seconds 10] [--precision fp32] [--json FILE]

Prints, per architecture: parameters, multiply-accumulates per pixel (torch's FlopCounterMode: every
convolution and matrix product) and Mpx/s on this machine's CPU (or ``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

import deblur
from deblur.core import checkpoint


def published() -> dict:
    """Builders of each architecture at the size its authors published for de-blurring (or, for SwinIR,
    colour denoising at scale 1)."""
    from spandrel.architectures.FFTformer import FFTformer
    from spandrel.architectures.KBNet import KBNet_s
    from spandrel.architectures.NAFNet import NAFNet
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "NAFNet-GoPro-width64": lambda: NAFNet(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28],
                                               dec_blk_nums=[1, 1, 1, 1]),
        "FFTformer-GoPro": lambda: FFTformer(dim=48, num_blocks=[6, 6, 12], num_refinement_blocks=4),
        "KBNet-s (SIDD)": lambda: KBNet_s(img_channel=3, width=64, middle_blk_num=12, enc_blk_nums=[2, 2, 4, 8],
                                          dec_blk_nums=[2, 2, 2, 2]),
        "SwinIR-M (colour denoising)": lambda: SwinIR(img_size=128, in_chans=3, embed_dim=180, depths=[6] * 6,
                                                      num_heads=[6] * 6, window_size=8, upscale=1, upsampler="",
                                                      resi_connection="1conv", mlp_ratio=2.0),
    }


def measure(uri: str | None, size: int, seconds: float, device: str, precision: str) -> dict:
    info = checkpoint.describe(uri)
    restorer = deblur.load(uri, device=device, precision=precision, tile=max(size, 512))
    img = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    restorer(img)  # warm-up
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < seconds:
        restorer(img)
        runs += 1
    elapsed = time.perf_counter() - t0
    return {"parameters": info["parameters"], "macs_per_pixel": info["macs_per_pixel"],
            "mpx_per_s": runs * size * size / elapsed / 1e6, "precision": restorer.options.precision}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="square input side (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="time per architecture (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = {"deblur unet (shipped)": measure(None, args.size, args.seconds, args.device, args.precision)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in published().items():
            path = os.path.join(tmp, "model.pth")
            torch.save(build().state_dict(), path)
            results[name] = measure(path, args.size, args.seconds, args.device, args.precision)
    print(f"{args.size}x{args.size} RGB, {args.device}, {args.precision}, {torch.get_num_threads()} threads")
    print(f"{'architecture':<30} {'parameters':>12} {'MACs/px':>12} {'Mpx/s':>8}")
    for name, r in results.items():
        print(f"{name:<30} {r['parameters']:>12,} {r['macs_per_pixel']:>12,.0f} {r['mpx_per_s']:>8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
