"""Data-parallel training with Ray Train V2 (``TorchTrainer``): CPU workers with gloo, GPUs with nccl.

``fit`` is the only function that takes a :class:`TrainConfig` apart. Workers rebuild it once from a
dict and hand plain values to the steps below. Every epoch, each worker reports validation PSNR/SSIM
and rank 0 saves a checkpoint (weights + the model's own settings + degradation + metrics) to ``output``;
rerunning with the same ``output`` resumes from the latest checkpoint.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
import zlib
from typing import Iterator

import numpy as np
import ray.data
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn as nn
from ray.train import CheckpointConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from deblur.core import checkpoint, models
from deblur.core.config import TrainConfig
from deblur.core.degrade import Degradation, degrade_crop, parse_degradation
from deblur.core.image import to_channels, to_float
from deblur.core.storage import filesystem, is_local, to_pyarrow
from deblur.core.training import (learning_rate, optimizer, set_learning_rate, train_epoch, training_batches,
                                  validate)
from deblur.runtime import ensure_ray
from deblur.train.datasets import training_datasets


def fit(cfg: TrainConfig) -> str:
    """Train as ``cfg`` says (checked when it was built); returns the URI of the best checkpoint written
    under ``cfg.output``."""
    ensure_ray()
    train_ds, val_ds = training_datasets(cfg.data, cfg.val_data, cfg.val_fraction)
    # Read and decode now, with every CPU, before the training workers hold them; the validation set is
    # always small enough, the training set unless ``--no-cache`` asks to stream it every epoch.
    val_ds = val_ds.materialize()
    if cfg.cache:
        train_ds = train_ds.materialize()
    if val_ds.count() == 0 or (cfg.cache and train_ds.count() == 0):
        raise ValueError("no training or validation images; use --val-data or a larger --val-fraction")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu,
                                     resources_per_worker=worker_resources(cfg.gpu, cfg.worker_resources)),
        run_config=run_config(cfg.output, cfg.keep_checkpoints),
        datasets={"train": train_ds, "val": val_ds},
    )
    trainer.fit()
    return checkpoint.resolve(cfg.output)


def worker_resources(gpu: bool, extra: dict[str, float] | None) -> dict[str, float] | None:
    """Ray resources for each training worker: 1 CPU (and 1 GPU with ``gpu``) plus ``extra``
    (e.g. an accelerator type, or a custom resource that pins workers to certain nodes)."""
    if not extra:
        return None
    return {"CPU": 1.0, **({"GPU": 1.0} if gpu else {}), **extra}


def run_config(output: str, keep: int) -> RunConfig:
    """Ray Train storage at ``output`` (any fsspec URL): checkpoints land in ``output/epoch_NNNN``."""
    fs, path = filesystem(output)
    path = os.path.abspath(path) if is_local(fs) else path.rstrip("/")
    return RunConfig(
        name=posixpath.basename(path),
        storage_path=posixpath.dirname(path),
        storage_filesystem=to_pyarrow(fs),
        checkpoint_config=CheckpointConfig(
            num_to_keep=keep, checkpoint_score_attribute="val_psnr", checkpoint_score_order="max"),
        logging_config=LoggingConfig(log_level="WARNING"),
    )


def train_loop(config: dict) -> None:
    """Per-worker entry point of the ``TorchTrainer``."""
    cfg = TrainConfig.from_dict(config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    net = models.build(cfg.model, channels=cfg.channels, **(cfg.model_options or {})).to(device)
    opt = optimizer(net, cfg.lr)
    start = resume(net, opt)
    model = ray.train.torch.prepare_model(net)
    degradation = parse_degradation(cfg.degradation)
    train = ShardImages(ray.train.get_dataset_shard("train"), cfg.cache, cfg.patches_per_image)
    val = validation_pairs(ray.train.get_dataset_shard("val"), degradation, cfg.patch_size, cfg.channels, cfg.seed)
    per_worker = max(1, cfg.batch_size // world)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        set_learning_rate(opt, learning_rate(cfg.lr, epoch / cfg.epochs, cfg.schedule))
        batches = training_batches(train.epoch(rng), per_worker, degradation, cfg.patch_size, cfg.channels, rng,
                                   cfg.flips)
        loss = train_epoch(model, opt, batches, cfg.loss, device, cfg.gpu)
        results = {"train_loss": loss, **validate(model, val, device, cfg.gpu)}
        results = {k: float(v) for k, v in all_mean(results, device).items()}
        results.update(epoch=epoch + 1, epoch_s=time.perf_counter() - t0)
        if rank == 0:
            print(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.5f}  val PSNR {results['val_psnr']:.2f} dB "
                  f"(blurred {results['val_psnr_blurred']:.2f})  SSIM {results['val_ssim']:.4f}  "
                  f"{results['epoch_s']:.1f}s", flush=True)
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            report(results, net, opt, cfg, rank)


def resume(net: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Load the latest checkpoint of this run, if any, into ``net``/``opt``; returns the epochs done."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        weights, config, opt_state = checkpoint.load_local(d)
    net.load_state_dict(weights)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    print(f"resuming after epoch {config['epoch']}", flush=True)
    return int(config["epoch"])


def report(results: dict, net: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, rank: int) -> None:
    """``ray.train.report`` on every rank; rank 0 attaches the checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if rank == 0:
            meta = {"degradation": cfg.degradation, "metrics": results, "epoch": results["epoch"], "train": cfg.to_dict()}
            checkpoint.save(tmp, net, cfg.model, meta, opt)
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(results, checkpoint=ckpt, checkpoint_dir_name=f"epoch_{results['epoch']:04d}")


class ShardImages:
    """This worker's sharp training images, streamed from Ray Data each epoch or cached after the first."""

    def __init__(self, shard: ray.data.DataIterator, cache: bool, repeat: int = 1) -> None:
        self.shard, self.cache, self.repeat = shard, cache, repeat
        self.images: list[np.ndarray] | None = None

    def _stream(self) -> Iterator[np.ndarray]:
        for batch in self.shard.iter_batches(batch_size=256, batch_format="numpy"):
            yield from batch["image"]

    def epoch(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Images for one epoch (uint8/uint16, HW/HWC), each ``repeat`` times; shuffled when cached."""
        if not self.cache:
            for img in self._stream():
                yield from [img] * self.repeat
            return
        if self.images is None:
            self.images = list(self._stream())
        for i in rng.permutation(len(self.images) * self.repeat):
            yield self.images[i % len(self.images)]


def validation_pairs(shard: ray.data.DataIterator, degradation: Degradation, patch: int, channels: int,
                     seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed (degraded, sharp) central crops of this worker's validation images, HWC float32 [0, 1].

    Each image's degradation is seeded by its path, so validation is identical every epoch and every run.
    """
    pairs = []
    for batch in shard.iter_batches(batch_size=256, batch_format="numpy"):
        for path, img in zip(batch["path"], batch["image"]):
            img = to_channels(to_float(img), channels)
            rng = np.random.default_rng([seed, zlib.crc32(str(path).encode())])
            sharp, blurred = degrade_crop(img, degradation, min(patch, *img.shape[:2]), rng, center=True)
            pairs.append((blurred, sharp))
    return pairs


def all_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average ``values`` over all workers (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist()))
