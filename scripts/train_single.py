"""Train one model on one device without Ray: the recipe that made the shipped weights on a lent GPU.

Same model registry, degradations, losses, schedules, optimiser, validation and checkpoint format as
``deblur train`` (it calls the same functions in ``deblur.core.training``); what differs is the loop: a time budget instead of
epochs (the schedule runs on elapsed time), batches from a torch DataLoader with many CPU workers, and the
best checkpoint by validation PSNR written to ``--output`` at every validation.

    python scripts/train_single.py --data DIR [--data DIR ...] --val DIR --output DIR --minutes 7 ...
    python scripts/train_single.py --sprite fashion-mnist-sprite.png --output DIR ...   # tiles 0-539 / 540-599
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

from deblur.core import checkpoint, device_degrade, models
from deblur.core.degrade import DEFAULT_DEGRADATION, parse_degradation
from deblur.core.fashion_mnist import sprite_tiles
from deblur.core.image import decode, to_channels, to_float
from deblur.core.storage import list_images, read_bytes
from deblur.core.synth import downscale
from deblur.core.training import (LOSSES, SCHEDULES, degrade_batch, learning_rate, optimizer, set_learning_rate,
                                  train_step, validate)


def load_folder(uri: str, channels: int, factor: float) -> list[np.ndarray]:
    """Every image under ``uri`` as HWC with ``channels`` (uint8/uint16 as stored), downscaled by ``factor``."""
    out = []
    for url in list_images(uri):
        out.append(to_channels(downscale(decode(read_bytes(url)), factor), channels))
    return out


class PatchStream(torch.utils.data.IterableDataset):
    """Endless (degraded, sharp) NCHW float32 batches of random crops, or with ``on_device`` the
    :func:`deblur.core.device_degrade.draw_batch` batches that the training device finishes; each worker draws its own."""

    def __init__(self, images: list[np.ndarray], spec: str, patch: int, batch: int, seed: int, flips: bool,
                 mixup: float = 0.0, on_device: bool = False):
        self.images, self.spec, self.patch, self.batch, self.seed, self.flips = images, spec, patch, batch, seed, flips
        self.mixup, self.on_device = mixup, on_device

    def _pick(self, rng: np.random.Generator) -> np.ndarray:
        """An image, or with probability ``mixup`` a blend of two same-sized images: blur is linear, so a
        blend and its blurred blend are as valid a pair as the originals, and there are far more of them."""
        a = self.images[int(rng.integers(len(self.images)))]
        if rng.random() >= self.mixup:
            return a
        b = self.images[int(rng.integers(len(self.images)))]
        if a.shape != b.shape:
            return a
        t = float(rng.uniform())
        return (t * to_float(a) + (1 - t) * to_float(b)).astype(np.float32)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        deg = parse_degradation(self.spec)
        cv2.setNumThreads(1)  # one thread per loader worker; the workers are the parallelism
        while True:
            images = [self._pick(rng) for _ in range(self.batch)]
            if self.on_device:  # blur and noise left to the training device (deblur.core.device_degrade)
                yield device_degrade.draw_batch(images, deg, self.patch, rng, self.flips)
                continue
            b, s = degrade_batch(images, deg, self.patch, rng, self.flips)
            yield torch.from_numpy(b.transpose(0, 3, 1, 2).copy()), torch.from_numpy(s.transpose(0, 3, 1, 2).copy())


def validation_set(images: list[np.ndarray], spec: str, patch: int, repeats: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed (degraded, sharp) central crops: each image ``repeats`` times with seeded draws."""
    deg, pairs = parse_degradation(spec), []
    for i, img in enumerate(images):
        for r in range(repeats):
            b, s = degrade_batch([img], deg, min(patch, *img.shape[:2]), np.random.default_rng([1234, i, r]))
            pairs.append((b[0], s[0]))
    return pairs


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", default=[], help="folder of sharp training images (repeatable)")
    p.add_argument("--downscale", type=float, action="append", default=[], help="per --data downscale factor")
    p.add_argument("--val", help="folder of sharp validation images")
    p.add_argument("--sprite", help="Fashion-MNIST sprite: train on tiles 0-539, validate on 540-599")
    p.add_argument("--output", required=True)
    p.add_argument("--init", help="checkpoint to start from (fine-tuning); its model and settings are used")
    p.add_argument("--model", default=models.DEFAULT, choices=models.names())
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--model-options", default="{}", help="JSON object of extra model settings")
    p.add_argument("--degradation", "--blur", dest="degradation", default=DEFAULT_DEGRADATION)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="charbonnier", choices=LOSSES.names())
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES.names())
    p.add_argument("--flips", action="store_true")
    p.add_argument("--mixup", type=float, default=0.0, help="share of training images blended from two")
    p.add_argument("--clip", type=float, default=0.0, help="gradient norm clipping (0: off)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout (faster bf16 convs on GPU)")
    p.add_argument("--degrade-on", choices=("loader", "device"), default="loader",
                   help="where crops are blurred and noised: in the loader workers, or on the training device")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--val-every", type=float, default=45.0, help="seconds between validations")
    p.add_argument("--val-repeats", type=int, default=4)
    p.add_argument("--loader-workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def load_data(args: argparse.Namespace) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if args.sprite:
        tiles = [to_channels(t, args.channels) for t in sprite_tiles(decode(read_bytes(args.sprite)))]
        return tiles[:540], tiles[540:600]
    factors = args.downscale + [1.0] * (len(args.data) - len(args.downscale))
    train = [img for uri, f in zip(args.data, factors) for img in load_folder(uri, args.channels, f)]
    return train, load_folder(args.val, args.channels, 1.0)


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    train, val = load_data(args)
    print(f"{len(train)} training / {len(val)} validation images on {device}", flush=True)
    if args.init:
        net, init = checkpoint.load(args.init, device)
        args.model = init["model"]
    else:
        net = models.build(args.model, channels=args.channels, **json.loads(args.model_options)).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = optimizer(net, args.lr)
    stream = PatchStream(train, args.degradation, args.patch, args.batch, args.seed, args.flips, args.mixup,
                         args.degrade_on == "device")
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.loader_workers,
                                         pin_memory=bf16, prefetch_factor=4 if args.loader_workers else None,
                                         persistent_workers=bool(args.loader_workers),
                                         multiprocessing_context="spawn" if args.loader_workers else None)
    pairs = validation_set(val, args.degradation, 256, args.val_repeats)
    budget, start = args.minutes * 60, time.perf_counter()
    step, best, last_val, losses = 0, -1.0, start, []
    net.train()
    for batch in loader:
        elapsed = time.perf_counter() - start
        set_learning_rate(opt, learning_rate(args.lr, min(elapsed / budget, 1.0), args.schedule))
        x, y = device_degrade.finish(batch, device) if isinstance(batch, device_degrade.LoaderBatch) else batch
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True).contiguous(memory_format=fmt)
        losses.append(train_step(net, opt, x, y, args.loss, device, bf16, args.clip))
        step += 1
        done = elapsed >= budget
        if done or time.perf_counter() - last_val >= args.val_every:
            last_val = time.perf_counter()
            result = validate(net, pairs, device, bf16)
            print(f"step {step}  {elapsed:.0f}s  loss {np.mean(losses):.5f}  val PSNR {result['val_psnr']:.2f} dB "
                  f"(blurred {result['val_psnr_blurred']:.2f})  SSIM {result['val_ssim']:.4f}  "
                  f"{step / elapsed:.1f} steps/s", flush=True)
            losses = []
            if result["val_psnr"] > best:
                best = result["val_psnr"]
                meta = {"degradation": args.degradation, "metrics": {**result, "steps": step, "seconds": round(elapsed)},
                        "epoch": step, "train": {**vars(args), "device": torch.cuda.get_device_name()
                                                  if bf16 else "cpu", "script": "scripts/train_single.py"}}
                checkpoint.save(args.output, net, args.model, meta)
        if done:
            break
    print(f"best val PSNR {best:.2f} dB after {step} steps -> {args.output}", flush=True)


if __name__ == "__main__":
    main()
