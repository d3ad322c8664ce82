"""Batch de-blurring with Ray Data: list -> (read, decode, model, encode, write) in an actor pool -> records.

``run`` is the only function that takes a :class:`DeblurConfig` apart. The model is loaded once per
actor. Every input yields one record (``path``, ``output``, ``status``, ``error``), so a bad file is
reported, never fatal, and nothing is lost.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import ray.data
import torch
import torch.nn as nn
from ray.data import ActorPoolStrategy

from deblur import checkpoint
from deblur.config import DeblurConfig
from deblur.runtime import ensure_ray
from deblur.imageops import to_numpy, to_tensor
from deblur.io import (OUTPUT_FORMATS, decode, encode, filesystem, from_float, list_images, relative_key,
                       to_float, write_atomic)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """What a run did: counts by status, wall time and the output root."""

    done: int
    failed: int
    seconds: float
    output: str
    megapixels: float

    def line(self) -> str:
        rate = (self.done / self.seconds, self.megapixels / self.seconds) if self.seconds else (0.0, 0.0)
        return (f"{self.done} done, {self.failed} failed in {self.seconds:.1f}s "
                f"({rate[0]:.2f} images/s, {rate[1]:.2f} Mpx/s) -> {self.output}")


def run(cfg: DeblurConfig) -> Summary:
    """De-blur every image under ``cfg.input`` into ``cfg.output``; returns the summary."""
    if cfg.format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown format {cfg.format!r}; choose one of: {', '.join(OUTPUT_FORMATS)}")
    ckpt = checkpoint.resolve(cfg.model)
    checkpoint.load(ckpt)  # fail fast, in the driver, on an unreadable checkpoint
    urls = list_images(cfg.input)
    keys = output_keys(cfg.input, urls, cfg.format)
    out_fs, out_root = filesystem(cfg.output)
    items = [{"path": u, "output": out_fs.unstrip_protocol(posixpath.join(out_root, k))}
             for u, k in zip(urls, keys)]
    ensure_ray()
    t0 = time.perf_counter()
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 200)))
    ds = ds.map_batches(
        Deblurrer, fn_constructor_kwargs={"checkpoint_uri": ckpt, "fmt": cfg.format, "gpu": cfg.gpu},
        batch_size=cfg.batch_size, compute=ActorPoolStrategy(size=cfg.workers),
        num_gpus=1 if cfg.gpu else 0, batch_format="pandas")
    records = ds.take_all()
    status = Counter(r["status"] for r in records)
    for r in records:
        if r["status"] != "done":
            log.warning("failed: %s: %s", r["path"], r["error"])
    mpx = sum(r["megapixels"] for r in records)
    return Summary(status["done"], status["failed"], time.perf_counter() - t0, cfg.output, mpx)


def output_keys(root: str, urls: list[str], fmt: str) -> list[str]:
    """Output keys mirroring each input's path under ``root`` with ``fmt``'s extension; unique, safe."""
    keys, seen = [], set()
    for url in urls:
        rel = relative_key(root, url)
        key = posixpath.splitext(rel)[0] + "." + fmt
        if key in seen:  # a.jpg and a.png in one folder: keep both
            key = rel + "." + fmt
        seen.add(key)
        keys.append(key)
    return keys


class Deblurrer:
    """Ray Data actor: loads the checkpoint once, then reads, de-blurs and writes each row's image."""

    def __init__(self, checkpoint_uri: str, fmt: str, gpu: bool = False) -> None:
        self.device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        self.model, config = checkpoint.load(checkpoint_uri, self.device)
        self.channels = int(config["settings"].get("channels", 1))
        self.fmt = fmt

    def __call__(self, batch):
        results = [self.process(p, o) for p, o in zip(batch["path"], batch["output"])]
        for key in ("status", "error", "megapixels"):
            batch[key] = [r[key] for r in results]
        return batch

    def process(self, path: str, output: str) -> dict:
        try:
            fs, src = filesystem(path)
            img = decode(fs.cat_file(src))
            out = restore_image(self.model, img, self.channels, self.device)
            if self.fmt != "png" and out.dtype != np.uint8:
                out = (out // 257).astype(np.uint8)
            ofs, dst = filesystem(output)
            write_atomic(ofs, dst, encode(out, self.fmt))
        except (OSError, ValueError) as e:
            return {"status": "failed", "error": f"{type(e).__name__}: {e}", "megapixels": 0.0}
        return {"status": "done", "error": "", "megapixels": img.shape[0] * img.shape[1] / 1e6}


@torch.no_grad()
def restore_image(model: nn.Module, img: np.ndarray, channels: int, device: torch.device) -> np.ndarray:
    """De-blur one decoded image (HW/HWC, RGB(A), uint8/uint16); returns the same shape and dtype.

    Alpha is kept aside and restored; colour images go through a 1-channel model plane by plane.
    """
    x = to_float(img)
    x = x[..., None] if x.ndim == 2 else x
    alpha = x[..., 3:] if x.shape[2] == 4 else None
    rgb = x[..., :3] if alpha is not None else x
    if channels == 1:
        planes = rgb.transpose(2, 0, 1)[..., None]  # C x H x W x 1: each plane one grey image
        out = to_numpy(model(to_tensor(planes, device)))[..., 0].transpose(1, 2, 0)
    elif rgb.shape[2] == 1:
        out = to_numpy(model(to_tensor(np.repeat(rgb, channels, axis=2)[None], device)))[0].mean(2, keepdims=True)
    else:
        out = to_numpy(model(to_tensor(rgb[None], device)))[0]
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    return from_float(out.reshape(img.shape), img.dtype)
