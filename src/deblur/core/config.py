"""Typed, frozen configuration: the single source of every command's options, defaults and help.

Each field is declared once, with its command-line help beside it (:func:`option`); :mod:`deblur.cli`
builds its flags from these fields. Names and choices come from :mod:`deblur.core.choices`, the leaf
module: validating a config imports no registry (and no torch), so each class checks itself on
construction (``__post_init__``) and the CLI, the Python API and a Ray worker rebuilding a config all
fail the same way, at once, with a ``ValueError``. What only a registry knows (a blur's options, a
model's settings) is checked by the command before Ray starts. ``train.fit`` and ``pipeline.run`` are
the only places that take a config apart; leaf functions receive plain values. ``to_dict``/``from_dict``
carry a config to Ray workers and into checkpoints as JSON (an unknown key is an error).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from deblur.core.choices import (ARTICLE_RECIPE, CHANGE_DETECTION, DEFAULT_DEGRADATION, DEGRADATION_HELP, DEGRADE_ON,
                                  IMAGE_FORMATS, LOSS_NAMES, MODEL_NAMES, MULTI_FRAME, PIPELINE_FORMATS,
                                  RESTORE_ENGINES, RESTORE_PRECISIONS, SCHEDULE_NAMES, STAGES, TRAIN_PRECISIONS, split_degradation)

T = TypeVar("T", bound="_Config")
RENAMED_DEGRADATION = ("--blur",)  # the older name of --degradation: accepted with a warning until 0.2


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
           flag: str | None = None, renamed: tuple[str, ...] = ()) -> Any:
    """A config field and its command line: ``help`` (``%(default)s`` names the default), ``choices``,
    ``flag`` (default ``--NAME-WITH-DASHES``), ``renamed`` (older flags, hidden and warned)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag,
                                                        "renamed": renamed})


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _one_of(value: Any, choices: tuple, what: str) -> None:
    _require(value in choices, f"unknown {what} {value!r}; choose one of: {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class _Config:
    def __post_init__(self) -> None:
        """Each option with choices holds one of them (``None`` where that is its default)."""
        for field in dataclasses.fields(self):
            choices, value = field.metadata.get("choices"), getattr(self, field.name)
            if choices and not (value is None and field.default is None):
                _one_of(value, choices, field.name.replace("_", "-"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """The config ``data`` describes; a key that is not one of its options is a ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        _require(not unknown, f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class RestoreConfig(_Config):
    """How one image is restored (``deblur.load``, ``deblur run``, ``deblur eval``): tiles of at most
    ``tile`` pixels with ``tile_pad`` pixels of context, the x8 ``self_ensemble``, autocast ``precision``
    ("auto": bf16 on CPUs with AMX or AVX512-BF16 and on GPUs with bf16, fp32 elsewhere).
    The configs of the commands that restore images extend it."""

    tile: int = option(1024, "largest tile side; bigger images go in tiles (default: %(default)s)")
    tile_pad: int = option(32, "context kept around each tile (default: %(default)s)")
    self_ensemble: bool = option(False, "average the model over the 8 flips/rotations of each image (8x the compute)")
    precision: str = option("auto", "numeric precision of the model (autocast; default: %(default)s, bf16 on CPUs "
                             "with AMX or AVX512-BF16 and GPUs with bf16, fp32 elsewhere; the summary says which ran)",
                             choices=RESTORE_PRECISIONS)
    engine: str = option("auto", "what runs the model (default: %(default)s: openvino where it is installed, the "
                          "device is the CPU and the model is deblur's own, else eager PyTorch)", choices=RESTORE_ENGINES)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.tile_pad >= 0, f"tile padding must be >= 0, got {self.tile_pad}")
        _require(self.tile > 2 * self.tile_pad, f"tile ({self.tile}) must exceed twice the padding ({self.tile_pad})")

    def restore(self) -> RestoreConfig:
        """Just the restore options (of a command's config)."""
        return RestoreConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RestoreConfig)})


def check_degradation(spec: str) -> None:
    """Raise ValueError when ``spec`` is not a degradation spec: unknown names, options without values,
    values that are not numbers or ranges (each option's name and bounds: ``parse_degradation``)."""
    split_degradation(spec)


def _init_says(what: str) -> str:
    return f" (default: with --init, its checkpoint's; else {ARTICLE_RECIPE[what]})"


@dataclass(frozen=True)
class TrainConfig(_Config):
    """``deblur train``: data-parallel training with Ray Train. Defaults are the article's recipe.

    ``degradation``, ``loss``, ``lr`` and ``patch_size`` left as None come from the recipe: the article's
    (:data:`ARTICLE_RECIPE`), or with ``init`` the one its checkpoint records, at a third of its learning
    rate (:meth:`with_recipe`).

    It runs by ``epochs`` (the article: every image once per epoch, a checkpoint every ``checkpoint_every``
    epochs), or by ``steps`` or ``minutes`` when either is set (endless random crops made by
    ``loader_workers`` processes per training worker; validation and a checkpoint every ``val_every``
    steps). ``init`` starts from a checkpoint's weights (its model and settings); ``clip`` bounds the
    gradient norm; ``degrade_on`` = device leaves blur and noise to the training device; ``mixup`` is the
    share of crops cut from a blend of two images.
    """

    data: str = option(help="folder/bucket of sharp images, or fashion-mnist[:URI]; or of real pairs: GoPro "
                        "(SEQ/blur/N.png, SEQ/sharp/N.png), RealBlur (blur/blur_K.png, gt/gt_K.png), BasicSR "
                        "(input/, target/), a deblur run output (with --paired: its inputs), Parquet with two image "
                        "columns (sharp/target/gt, degraded/blurred/blur/input)")
    output: str = option(help="training output: checkpoints land in OUTPUT/epoch_NNNN (by epochs) or "
                          "OUTPUT/step_NNNNNNNN (by steps or minutes); rerunning with the same output resumes")
    paired: str | None = option(None, "folder/bucket of the degraded partners of --data's images, matched by "
                                 "relative path (the extension may differ): train on real pairs")
    synthetic_share: float = option(0.0, "with pairs: share of crops degraded synthetically from the sharp side by "
                                     "--degradation instead of the real partner (default: %(default)s)")
    model: str = option("seed", "architecture (default: %(default)s)", choices=MODEL_NAMES)
    channels: int = option(1, "model channels (default: %(default)s)", choices=(1, 3))
    model_options: dict[str, Any] | None = option(None, "extra model setting KEY=VALUE (JSON value), e.g. width=16; "
                                                   "repeatable", flag="--model-option")
    degradation: str | None = option(None, DEGRADATION_HELP + " (default: with --init, the one its checkpoint "
                                      f"records; else {ARTICLE_RECIPE['degradation']}, the article's 3x3 Gaussian; "
                                      f"the default model's is {DEFAULT_DEGRADATION})", renamed=RENAMED_DEGRADATION)
    epochs: int = option(10, "total epochs (default: %(default)s)")
    batch_size: int = option(64, "global batch size (default: %(default)s)")
    lr: float | None = option(None, "Adam learning rate (default: with --init, a third of its checkpoint's; else "
                               f"{ARTICLE_RECIPE['lr']})")
    loss: str | None = option(None, "loss" + _init_says("loss"), choices=LOSS_NAMES)
    schedule: str = option("constant", "learning rate: constant, or warm-up then cosine decay over the run "
                            "(default: %(default)s)", choices=SCHEDULE_NAMES)
    flips: bool = option(False, "random flips/rotations of each training crop")
    patch_size: int | None = option(None, "random crop size" + _init_says("patch_size"))
    patches_per_image: int = option(1, "random crops per image per epoch (default: %(default)s)")
    val_fraction: float = option(0.1, "validation share of a folder (default: %(default)s)")
    val_data: str | None = option(None, "separate folder/bucket of validation images")
    workers: int = option(1, "data-parallel training workers (default: %(default)s)")
    gpu: bool = option(False, "one GPU per worker, nccl")
    cache: bool = option(True, "stream images from Ray Data every epoch instead of caching them in worker memory",
                          flag="--no-cache")
    seed: int = option(0, "random seed for crops and degradations (default: %(default)s)")
    keep_checkpoints: int = option(3, "best checkpoints kept (default: %(default)s)")
    checkpoint_every: int = option(1, "epochs between checkpoints (default: %(default)s)")
    worker_resources: dict[str, float] | None = option(None, "extra Ray resources per training worker, as JSON, "
                                                        "e.g. '{\"accelerator_type:A10G\": 0.001}'")
    steps: int = option(0, "train by steps instead of epochs: total optimiser steps on endless random crops "
                         "(default: by epochs)")
    minutes: float = option(0.0, "train by time instead: stop at the first validation after this many minutes "
                             "(the schedule follows the clock)")
    val_every: int = option(500, "with --steps/--minutes: steps between validations and checkpoints "
                             "(default: %(default)s)")
    loader_workers: int = option(2, "with --steps/--minutes: crop-degrading processes per training worker "
                                  "(default: %(default)s)")
    init: str | None = option(None, "start from this checkpoint's weights (its model and settings): fine-tuning")
    clip: float = option(0.0, "gradient norm clipping (0: off; default: %(default)s)")
    degrade_on: str = option("loader", "with --steps/--minutes: where blur and noise are applied to crops, in the "
                              "loader or on the training device (default: %(default)s)", choices=DEGRADE_ON)
    mixup: float = option(0.0, "with --steps/--minutes: share of crops cut from a blend of two same-sized images "
                           "(blur is linear; default: %(default)s)")
    precision: str = option("auto", "autocast of the forward pass, fp32 master weights; auto: bf16 on GPUs and CPUs "
                             "that compute it natively (AMX, AVX512-BF16), else fp32 (default: %(default)s)",
                             choices=TRAIN_PRECISIONS)
    val_crops: int = option(1, "validation crops per image: the centre, then seeded places, each with its own "
                             "degradation draw (default: %(default)s)")

    @property
    def by_steps(self) -> bool:
        """True when training runs by steps or minutes rather than epochs."""
        return self.steps > 0 or self.minutes > 0

    @property
    def resident(self) -> bool:
        """True when the training set is read once and kept in memory (``--cache``, or training by steps)."""
        return self.cache or self.by_steps

    def sources(self) -> list[str]:
        """The folders/buckets this run reads and that must exist (``data`` unless it names the
        Fashion-MNIST download, and ``val_data``)."""
        from deblur.core.fashion_mnist import FASHION_MNIST

        data = [] if self.data.startswith(FASHION_MNIST) else [self.data]
        return data + [uri for uri in (self.paired, self.val_data) if uri]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.degradation is not None:
            check_degradation(self.degradation)
        _require(self.steps >= 0 and self.minutes >= 0, "steps and minutes must be >= 0")
        _require(self.val_every >= 1 and self.loader_workers >= 0, "val-every must be >= 1, loader-workers >= 0")
        _require(self.clip >= 0, f"clip must be >= 0, got {self.clip}")
        _require(0 <= self.mixup <= 1, f"mixup must be in [0, 1], got {self.mixup}")
        _require(0 <= self.synthetic_share <= 1, f"synthetic-share must be in [0, 1], got {self.synthetic_share}")
        for name in ("epochs", "batch_size", "patch_size", "patches_per_image", "workers", "keep_checkpoints",
                     "checkpoint_every", "val_crops"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{name.replace('_', '-')} must be >= 1, got {value}")
        _require(self.lr is None or self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        _require(0 <= self.val_fraction < 1, f"val-fraction must be in [0, 1), got {self.val_fraction}")

    def with_recipe(self, recorded: dict[str, Any] | None = None) -> tuple[TrainConfig, str]:
        """(this config with every recipe option filled, a line naming each and where it came from).

        ``recorded``: the ``init`` checkpoint's config.json; its training record (``train``; older
        checkpoints say ``blur``, ``patch``) gives the degradation, loss and patch size, and a third of its
        learning rate. Options given explicitly always win."""
        train = (recorded or {}).get("train") or {}
        inherited = {
            "degradation": train.get("degradation") or train.get("blur") or (recorded or {}).get("degradation")
            or (recorded or {}).get("blur"),
            "loss": train.get("loss"), "patch_size": train.get("patch_size") or train.get("patch"),
            "lr": train["lr"] / 3 if train.get("lr") else None}
        values, said = {}, []
        for name, article in ARTICLE_RECIPE.items():
            given = getattr(self, name)
            value, where = ((given, "given") if given is not None else
                            (inherited[name], "from --init" if name != "lr" else "a third of --init's")
                            if inherited[name] is not None else (article, "the article's"))
            values[name] = value
            said.append(f"{name.replace('_', '-')} {value:g} ({where})" if isinstance(value, float) else
                        f"{name.replace('_', '-')} {value} ({where})")
        return dataclasses.replace(self, **values), "recipe: " + ", ".join(said)


@dataclass(frozen=True)
class PipelineConfig(RestoreConfig):
    """``deblur run``: the pipeline that de-blurs every image under ``input`` into ``output`` (Ray Data)."""

    input: str = option(help="folder/bucket (or one file) of blurred images")
    output: str = option(help="output root; input paths are mirrored below it")
    model: str | None = option(None, "checkpoint directory, or a training output (its best checkpoint); default: "
                                "the bundled model")
    format: str = option("png", "one image file per input, or Parquet rows with the encoded PNG (default: "
                          "%(default)s)", choices=PIPELINE_FORMATS)
    workers: int = option(1, "model actors (default: %(default)s)")
    worker_cpus: int = option(0, "CPUs Ray reserves for each model actor, which runs as many threads (0: on a local "
                               "cluster the run started, with fused stages, its CPUs shared among --workers; else "
                               "1, leaving a shared cluster's CPUs to others; default: %(default)s)")
    gpu: bool = option(False, "one GPU per model actor")
    batch_size: int = option(0, "images per actor task: results land (and progress moves) a task at a time, and "
                              "small images of a task share model calls (default: by bytes, as many as make about "
                              "1 MB of input, at most 256: a few photos, or hundreds of thumbnails)")
    overwrite: bool = option(False, "redo inputs the manifest already records as done")
    verify_outputs: bool = option(True, "trust the manifest: do not list the output to redo outputs deleted since "
                                   "their run", flag="--no-verify-outputs")
    fail_on_error: bool = option(False, "exit 1 when any input failed")
    max_megapixels: float = option(200.0, "inputs larger than this are refused with an error record (0: no limit; "
                                    "default: %(default)s)")
    max_pixels_per_byte: float = option(2000.0, "inputs over 16 megapixels that declare more pixels than this for "
                                         "each byte of their file are refused as decompression bombs (a photo "
                                         "has under 100; 0: no limit; default: %(default)s)")
    input_column: str | None = option(None, "read --input as a Parquet dataset whose column of this name holds "
                                       "encoded images (a 'path' column, if any, names them)")
    actor_resources: dict[str, float] | None = option(None, "extra Ray resources per model actor, as JSON")
    worker_memory: float = option(0.0, "GB of memory Ray reserves for each model actor, so that it schedules by "
                                   "memory instead of running out of it: about 0.6 GB plus 3x the decoded size of "
                                   "the largest image (0: none; default: %(default)s)")
    stages: str = option("auto", "split: decode and encode in CPU tasks, the model alone in its actors (default "
                          "with --gpu); fused: all in one actor (default on CPU)", choices=STAGES)
    read_roots: tuple[str, ...] | None = option(None, "with --input-column: a folder/bucket that rows without image "
                                                 "bytes may name by path, besides the dataset's own folder; "
                                                 "repeatable", flag="--read-root")
    multi_frame: str = option("refuse", "a multi-page TIFF or animated PNG/WebP: refused with an error record, or "
                               "its first frame de-blurred (default: %(default)s)", choices=MULTI_FRAME)
    detect_changes: str = option("metadata", "how a rerun tells a changed input: size and modification time/ETag, "
                                  "or a hash of its content (reads every input again; for tools that restore "
                                  "modification times) (default: %(default)s)", choices=CHANGE_DETECTION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_roots", tuple(self.read_roots or ()))
        _require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _require(self.worker_cpus >= 0, f"worker-cpus must be >= 0 (0: automatic), got {self.worker_cpus}")
        _require(self.batch_size >= 0, f"batch-size must be >= 0 (0: by bytes), got {self.batch_size}")
        _require(self.worker_memory >= 0, f"worker-memory must be >= 0 (0: none reserved), got {self.worker_memory}")
        _require(self.max_megapixels >= 0, f"max-megapixels must be >= 0 (0: no limit), got {self.max_megapixels}")
        _require(self.max_pixels_per_byte >= 0,
                 f"max-pixels-per-byte must be >= 0 (0: no limit), got {self.max_pixels_per_byte}")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig(_Config):
    """How degraded images are made from sharp ones (``deblur eval``, ``deblur degrade``): shrunk by
    ``downscale`` first, then degraded with draws from ``seed`` and each image's path."""

    seed: int = option(0, "random seed of the degradations; each image's draws also depend on its path "
                        "(default: %(default)s)")
    downscale: float = option(1.0, "shrink the sharp images by this factor first (default: %(default)s)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.downscale > 0, f"downscale must be > 0, got {self.downscale}")


@dataclass(frozen=True)
class EvalConfig(RestoreConfig, SynthesisConfig):
    """``deblur eval``: score a model, the degraded input and Wiener deconvolution against sharp images."""

    data: str = option(help="folder/bucket of sharp images")
    output: str = option(help="folder for metrics.parquet, summary.json, report.png/.html")
    model: str | None = option(None, "checkpoint directory or training output (default: the bundled model)")
    degradation: str | None = option(None, DEGRADATION_HELP + " (default: the one the model was trained on, "
                                      f"recorded in its checkpoint; else {DEFAULT_DEGRADATION})",
                                      renamed=RENAMED_DEGRADATION)
    paired: str | None = option(None, "folder of already degraded images named as in --data (instead of "
                                 "--degradation)")
    crop_border: int = option(0, "pixels dropped at each edge before scoring (default: %(default)s)")
    y_channel: bool = option(False, "score the luma (Y of YCbCr) of colour images")
    limit: int = option(0, "evaluate the first N images only (default: all)")
    report_images: int = option(6, "images shown in report.png (default: %(default)s)")

    def __post_init__(self) -> None:
        if self.degradation is not None:
            check_degradation(self.degradation)
        _require(self.crop_border >= 0, f"crop-border must be >= 0, got {self.crop_border}")
        _require(self.limit >= 0, f"limit must be >= 0 (0: all), got {self.limit}")
        super().__post_init__()


@dataclass(frozen=True)
class DegradeConfig(SynthesisConfig):
    """``deblur degrade``: write a degraded copy of every image under ``input`` below ``output``."""

    input: str = option(help="folder/bucket (or one file) of sharp images")
    output: str = option(help="output root; input paths are mirrored below it")
    degradation: str = option(help=DEGRADATION_HELP + "; 'none' with --downscale makes sharp copies",
                               renamed=RENAMED_DEGRADATION)
    format: str = option("png", "output format (default: %(default)s)", choices=IMAGE_FORMATS)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_degradation(self.degradation)
