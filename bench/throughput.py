"""Throughput of `deblur run` against a bare single-process loop and against decode+encode alone.

    python bench/throughput.py [--images 64] [--width 1024] [--height 768] [--workers 2] [--format jpg]

All three run in this one process, on the same images and checkpoint, and print Mpx/s and ratios.
Run it with the package installed (``make install``: the venv's python).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np
import torch

import deblur
from deblur.core import checkpoint, models
from deblur.core.config import PipelineConfig
from deblur.core.image import decode, encode
from deblur.pipeline.run import run


def make_images(folder: str, n: int, w: int, h: int) -> list[str]:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.random((h // 16, w // 16, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.clip(np.roll(base, i * 7, axis=1) + rng.normal(0, 0.02, base.shape), 0, 1)
        path = os.path.join(folder, f"img{i:03d}.jpg")
        cv2.imwrite(path, (img * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def loop(paths: list[str], out: str, fmt: str, restorer: deblur.Restorer | None = None) -> float:
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            img = decode(f.read())
        if restorer is not None:
            img = restorer(img)
        with open(os.path.join(out, os.path.basename(p) + "." + fmt), "wb") as f:
            f.write(encode(img, fmt))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", default="jpg")
    ap.add_argument("--model", help="checkpoint (default: the bundled model, else an untrained seed)")
    args = ap.parse_args()
    import ray

    tmp = tempfile.mkdtemp(prefix="deblur-bench-")
    paths = make_images(os.path.join(tmp, "in"), args.images, args.width, args.height)
    ck = args.model
    if ck is None:
        try:
            ck = checkpoint.resolve(None)
            checkpoint.load(ck)
        except (FileNotFoundError, ValueError):
            ck = os.path.join(tmp, "seed")
            checkpoint.save(ck, models.build("seed"), "seed", {"epoch": 0, "metrics": {}})
    restorer = deblur.load(ck, "cpu")
    config = checkpoint.read_config(ck)
    mpx = args.images * args.width * args.height / 1e6
    torch.set_num_threads(os.cpu_count() or 1)

    io_s = loop(paths, os.path.join(tmp, "io"), args.format)
    bare_s = loop(paths, os.path.join(tmp, "bare"), args.format, restorer)
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
    s = run(PipelineConfig(input=os.path.join(tmp, "in"), output=os.path.join(tmp, "pipe"), model=ck,
                               format=args.format, workers=args.workers, batch_size=2))
    pipe_s = s.seconds
    assert s.done == args.images, s.line()
    print(f"{args.images} images of {args.width}x{args.height} ({mpx:.1f} Mpx), model {config['model']}, "
          f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads in the bare loop")
    print(f"decode+encode only : {mpx / io_s:7.2f} Mpx/s  ({io_s:6.1f} s)")
    print(f"bare loop          : {mpx / bare_s:7.2f} Mpx/s  ({bare_s:6.1f} s)")
    print(f"pipeline ({args.workers} actors): {mpx / pipe_s:7.2f} Mpx/s  ({pipe_s:6.1f} s, incl. actor start-up)")
    print(f"pipeline / bare loop = {bare_s / pipe_s:.2f}x ; model share of the bare loop = {1 - io_s / bare_s:.0%}")


if __name__ == "__main__":
    main()
