"""Data-parallel training with Ray Train V2 (``TorchTrainer``): CPU workers with gloo, GPUs with nccl.

``fit`` is the only function that takes a :class:`TrainConfig` apart. Workers rebuild it once from a
dict and hand plain values to the functions below. Two ways to run:

- by epochs (the article's recipe): every image once per epoch, degraded on the worker's own thread;
  validation every epoch, a checkpoint every ``checkpoint_every`` epochs (``OUTPUT/epoch_NNNN``);
- by steps or minutes: endless random crops made by ``loader_workers`` DataLoader processes per training
  worker (:mod:`deblur.core.crops`: batch k depends only on seed, rank and k, so a resumed run sees the
  same batches), bf16 and channels-last on GPUs; validation and a checkpoint every ``val_every`` steps
  (``OUTPUT/step_NNNNNNNN``), with the optimiser state.

Rerunning with the same ``output`` resumes from the latest checkpoint; ``init`` starts a new run from
another checkpoint's weights."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import signal
import sys
import tempfile
import threading
import time
from typing import Iterator

import numpy as np
import ray.data
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn as nn
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from deblur.core import catalog, checkpoint, models
from deblur.core.config import TrainConfig
from deblur.core.degrade import parse_degradation
from deblur.core.fashion_mnist import FASHION_MNIST, default_cache, fetch_fashion_mnist
from deblur.core.places import refuse_overlap
from deblur.core.storage import absolute, check_input, check_output, filesystem, is_local, to_pyarrow, unstrip
from deblur.core.crops import CropStream
from deblur.core.crops import loader as crop_loader
from deblur.core.device_degrade import LoaderBatch, finish
from deblur.core.restore import resolve_precision
from deblur.core.training import (learning_rate, optimizer, set_learning_rate, train_epoch, train_step,
                                  training_batches, validate)
from deblur.runtime import cluster_is_ours, ensure_ray, local_model, require_gpus, ship_model
from deblur.train.datasets import ShardImages, training_datasets, training_pairs, validation_pairs


def say(line: str) -> None:
    """One line from a training worker to the driver's console, once (Ray Train patches ``print`` in its
    workers to also log what is printed, which shows every line twice)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fit(cfg: TrainConfig) -> str:
    """Train as ``cfg`` says (checked when it was built); returns the URI of the best checkpoint written
    under ``cfg.output``."""
    cfg = absolute_paths(cfg)  # workers run in another folder, maybe on another machine
    check_input(*cfg.sources())  # bad input fails before Ray starts
    refuse_overlap(cfg.sources(), cfg.output)  # checkpoints and reports never among the training images
    recorded = checkpoint.load(checkpoint.resolve(cfg.init))[1] if cfg.init else None  # unreadable: fails now
    cfg, pairing, val_pairing = training_pairs(cfg)
    cfg, recipe = cfg.with_recipe(recorded)
    parse_degradation(cfg.degradation)  # what only the registries know: each option's name and bounds
    if not cfg.init:
        models.check(cfg.model, {"channels": cfg.channels, **(cfg.model_options or {})})
    print(recipe, flush=True)
    if cfg.data == FASHION_MNIST:  # the download (or the cache's check) before Ray: no network fails in a second
        fetch_fashion_mnist(default_cache())
    check_output(cfg.output)  # last: it writes (a probe)
    ensure_ray()
    if cfg.gpu:
        require_gpus()
    streamed, shards = worker_data(cfg, *training_datasets(cfg.data, cfg.val_data, cfg.val_fraction, pairing,
                                                           val_pairing))
    with _train_settings(local=cluster_is_ours()):
        _Trainer(
            train_loop,
            train_loop_config={"config": cfg.to_dict(), "shards": shards, "init": ship_model(cfg.init)},
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu,
                                         resources_per_worker=worker_resources(cfg.gpu, cfg.worker_resources)),
            run_config=run_config(cfg.output, cfg.keep_checkpoints),
            datasets=streamed,
        ).fit()
    return checkpoint.resolve(cfg.output)


POLL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # Ray's default, 2 s, made each run ~4 s longer (measured):
# its controller moves from state to state (workers started, running, finished) only at its next poll
NO_PREEMPTION = ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # an actor per run that watches for nodes being
# drained (spot instances): on the command's own local cluster there are none, and it is one process less


@contextlib.contextmanager
def _train_settings(local: bool) -> Iterator[None]:
    """Ray Train's settings for a fit made in this block (it reads them where the trainer is made and passes
    them on): :data:`POLL`, and :data:`NO_PREEMPTION` on a ``local`` cluster (the command's own); a value the
    user set is kept."""
    chosen = [POLL, NO_PREEMPTION] if local else [POLL]
    ours = {name: value for name, value in chosen if name not in os.environ}
    os.environ.update(ours)
    try:
        yield
    finally:
        for name in ours:
            os.environ.pop(name, None)


def worker_data(cfg: TrainConfig, train_ds: ray.data.Dataset, val_ds: ray.data.Dataset
                ) -> tuple[dict[str, ray.data.Dataset], dict[str, list[ray.data.MaterializedDataset]]]:
    """(the datasets Ray Train streams to the workers, the ones split here: one part per worker rank).

    Read and decode now, with every CPU, before the training workers hold them: the validation set always
    (it is small), the training set unless ``--no-cache`` asks to stream it every epoch. What is read is
    split here into equal parts, a worker's part handed to it as it is (no split coordinator actors between
    them: two fewer processes a run); a streamed training set goes through Ray Train's own split.
    """
    val_ds = val_ds.materialize()
    train_ds = train_ds.materialize() if cfg.resident else train_ds
    if val_ds.count() == 0 or (cfg.resident and train_ds.count() == 0):
        raise ValueError("no training or validation images; use --val-data or a larger --val-fraction")
    shards = {"val": val_ds.split(cfg.workers, equal=True)}
    if cfg.resident:
        return {}, {**shards, "train": train_ds.split(cfg.workers, equal=True)}
    return {"train": train_ds}, shards


def shard(config: dict, name: str, rank: int) -> ray.data.DataIterator:
    """This worker's part of the dataset ``name`` (see :func:`worker_data`)."""
    parts = config["shards"].get(name)
    return parts[rank].iterator() if parts else ray.train.get_dataset_shard(name)


class _Trainer(TorchTrainer):
    """Ray's ``TorchTrainer`` with a Ctrl-C that ends the caller too. Ray's own handler aborts the run
    gracefully but stays installed after ``fit`` and swallows the interrupt, so a process that trained once
    (a test suite, a notebook) could no longer be stopped with Ctrl-C. Here Ctrl-C aborts the run the same
    way, then raises ``KeyboardInterrupt``, and the handler before ``fit`` comes back when it returns."""

    def _register_sigint_handler(self, controller) -> None:  # ray_internals.SIGINT_HOOK: Ray's private hook
        def abort(signum, frame) -> None:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: no wait for the abort
            with contextlib.suppress(Exception):
                ray.get(controller.abort.remote(), timeout=30)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, abort)

    def fit(self):
        previous = signal.getsignal(signal.SIGINT)
        try:
            return super().fit()
        finally:
            if threading.current_thread() is threading.main_thread() and previous is not None:
                signal.signal(signal.SIGINT, previous)


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every local path it names made absolute (data, validation data, output, init)."""
    from deblur.core.fashion_mnist import FASHION_MNIST

    data = cfg.data if cfg.data.startswith(FASHION_MNIST) else absolute(cfg.data)
    init = cfg.init if not cfg.init or catalog.is_name(cfg.init) else absolute(cfg.init)  # a name stays a name
    return dataclasses.replace(cfg, data=data, output=absolute(cfg.output), paired=cfg.paired and absolute(cfg.paired),
                               val_data=cfg.val_data and absolute(cfg.val_data), init=init)


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
        failure_config=FailureConfig(max_failures=2),  # a lost worker resumes from the last checkpoint
    )


def train_loop(config: dict) -> None:
    """Per-worker entry point of the ``TorchTrainer``: by epochs (the article's recipe) or by steps.
    ``config``: ``{"config": TrainConfig.to_dict(), "shards": ...}`` (:func:`worker_data`)."""
    started = time.perf_counter()
    cfg = TrainConfig.from_dict(config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)  # the same initial weights in every run of this seed
    net, name = initial_model(cfg, config.get("init"))
    net = net.to(device, memory_format=models.memory_format(net))  # deblur's: channels-last, CPU and GPU
    opt = optimizer(net, cfg.lr)
    start = resume(net, opt, "step" if cfg.by_steps else "epoch", cfg.output)
    bf16 = resolve_precision(cfg.precision, device) == "bf16"
    if rank == 0:
        say(f"{device.type}: {'bf16 autocast' if bf16 else 'fp32'} (--precision {cfg.precision})")
    run = Run(cfg, ray.train.torch.prepare_model(net), net, name, opt, device, rank, started, bf16)
    channels = net.settings.channels
    val = validation_pairs(shard(config, "val", rank), parse_degradation(cfg.degradation), cfg.patch_size,
                           channels, cfg.seed, cfg.val_crops)
    train = ShardImages(shard(config, "train", rank), cfg.resident, cfg.patches_per_image)
    per_worker = max(1, cfg.batch_size // world)
    if rank == 0 and cfg.resident:
        warn_small(train.all(), cfg.patch_size)
    if cfg.by_steps:
        stream = CropStream(train.all(), cfg.degradation, cfg.patch_size, per_worker, channels, cfg.seed, rank,
                            cfg.flips, start, cfg.steps or None, cfg.degrade_on == "device", cfg.mixup,
                            cfg.synthetic_share)
        train_by_steps(run, stream, val, start)
        return
    degradation = parse_degradation(cfg.degradation)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        set_learning_rate(opt, learning_rate(cfg.lr, epoch / cfg.epochs, cfg.schedule))
        batches = training_batches(train.epoch(rng), per_worker, degradation, cfg.patch_size, channels, rng,
                                   cfg.flips, cfg.synthetic_share)
        loss = train_epoch(run.model, opt, batches, cfg.loss, device, run.bf16)
        results = run.validate(loss, val, epoch=epoch + 1, epoch_s=time.perf_counter() - t0)
        run.say(f"epoch {epoch + 1}/{cfg.epochs}", results, f"{results['epoch_s']:.1f}s")
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            run.report(results, f"epoch_{epoch + 1:04d}")


def warn_small(images: list[np.ndarray], patch: int) -> None:
    """Say so when training images are smaller than the patch: their batches use smaller crops."""
    small = [im.shape[:2] for im in images if min(im.shape[:2]) < patch]
    if small:
        h, w = min(small, key=min)
        say(f"warning: {len(small)} of {len(images)} training images are smaller than --patch-size {patch} "
            f"(the smallest is {w}x{h}); batches holding one use crops of its shorter side")


def initial_model(cfg: TrainConfig, shipped: object | None = None) -> tuple[nn.Module, str]:
    """(the network to train, its registered name): ``cfg.init``'s weights and settings (a public model's from
    ``shipped`` where this node lacks it), or a new one."""
    if cfg.init:
        net, config = checkpoint.load(checkpoint.resolve(local_model(cfg.init, shipped)))
        return net.train(), config["model"]
    return models.build(cfg.model, channels=cfg.channels, **(cfg.model_options or {})), cfg.model


class Run:
    """One worker's training run: validation, the printed line, and reports with checkpoints."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, net: nn.Module, name: str, opt: torch.optim.Optimizer,
                 device: torch.device, rank: int, started: float, bf16: bool) -> None:
        self.cfg, self.model, self.net, self.name, self.opt = cfg, model, net, name, opt
        self.device, self.rank, self.started, self.bf16 = device, rank, started, bf16

    def validate(self, loss: float, val: list, **extra: float) -> dict[str, float]:
        """Training loss and validation metrics, averaged over all workers, plus ``extra``."""
        results = {"train_loss": loss, **validate(self.model, val, self.device, self.bf16)}
        return {**{k: float(v) for k, v in all_mean(results, self.device).items()}, **extra}

    def say(self, where: str, results: dict[str, float], extra: str) -> None:
        if self.rank == 0:
            say(f"{where}  loss {results['train_loss']:.5f}  val PSNR {results['val_psnr']:.2f} dB "
                f"(blurred {results['val_psnr_blurred']:.2f})  SSIM {results['val_ssim']:.4f}  {extra}")

    def report(self, results: dict, directory: str) -> None:
        """``ray.train.report`` on every rank; rank 0 attaches the checkpoint (weights, optimiser, where)."""
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if self.rank == 0:
                where = {k: int(results[k]) for k in ("epoch", "step") if k in results}
                meta = {"degradation": self.cfg.degradation, "metrics": results, **where, "train": self.cfg.to_dict()}
                checkpoint.save(tmp, self.net, self.name, meta, self.opt)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(results, checkpoint=ckpt, checkpoint_dir_name=directory)


def train_by_steps(run: Run, stream: CropStream, val: list, start: int) -> None:
    """Steps ``start`` .. ``cfg.steps`` (or until ``cfg.minutes`` have passed, at the next validation) on
    batches from ``stream``; validation, a printed line and a checkpoint every ``cfg.val_every`` steps."""
    cfg, device = run.cfg, run.device
    fmt = models.memory_format(run.net)
    t0, losses, budget = time.perf_counter(), [], cfg.minutes * 60
    for step, batch in enumerate(crop_loader(stream, cfg.loader_workers, device.type == "cuda"), start=start):
        progress = step / cfg.steps if cfg.steps else min((time.perf_counter() - t0) / budget, 1.0)
        set_learning_rate(run.opt, learning_rate(cfg.lr, progress, cfg.schedule))
        if isinstance(batch, LoaderBatch):
            x, y = finish(batch, device)
        else:
            x, y = (t.to(device, non_blocking=True) for t in batch)
        x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)
        losses.append(train_step(run.model, run.opt, x, y, cfg.loss, device, run.bf16, cfg.clip))
        if step == start and run.rank == 0:
            say(f"first step {time.perf_counter() - run.started:.1f}s after the worker started")
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.val_every and not last:
            continue
        seconds = time.perf_counter() - t0
        results = run.validate(float(np.mean(losses)), val, step=step + 1, seconds=seconds,
                               steps_per_s=(step + 1 - start) / seconds)
        over_time = all_mean({"over": float(bool(budget) and seconds >= budget)}, device)["over"] > 0  # all agree
        run.say(f"step {step + 1}" + (f"/{cfg.steps}" if cfg.steps else ""), results,
                f"{results['steps_per_s']:.1f} steps/s")
        run.report(results, f"step_{step + 1:08d}")
        losses = []
        if last or over_time:
            break


def resume(net: nn.Module, opt: torch.optim.Optimizer, unit: str, output: str) -> int:
    """Load the newest checkpoint of this run that reads back, if any, into ``net``/``opt``; returns the
    epochs or steps (``unit``) done. A checkpoint that does not load (truncated by a crash) is skipped with
    a line saying why, and the one before it is used."""
    latest = ray.train.get_checkpoint()
    if latest is None:
        return 0
    newest = unstrip(filesystem(output)[0], latest.path)  # Ray's path, without the scheme
    for uri in [newest] + [c for c in checkpoint.newest_first(output) if c != newest]:
        try:
            weights, config, opt_state = checkpoint.load_state(uri)
            net.load_state_dict(weights)
        except (ValueError, RuntimeError) as e:
            say(f"skipping checkpoint {uri}: {e}")
            continue
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        say(f"resuming after {unit} {config[unit]} ({uri})")
        return int(config[unit])
    raise ValueError(f"no readable checkpoint to resume from under {output}")


def all_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average ``values`` over all workers (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist()))
