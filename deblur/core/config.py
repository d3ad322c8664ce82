"""Typed, frozen configuration: the single source of every command's defaults and choices.

The CLI takes its defaults from these classes and its choices from the registries they check against;
each class validates itself on construction (``__post_init__``), so the CLI, the Python API and a Ray
worker rebuilding a config all fail the same way, at once, with a ``ValueError``. ``train.fit`` and
``pipeline.run`` are the only places that take a config apart; leaf functions receive plain values.
``to_dict``/``from_dict`` carry a config to Ray workers and into checkpoints as JSON.

Registries are imported when a config is checked, not when this module is, so parsing stays cheap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound="_Config")

IMAGE_FORMATS = ("png", "jpg", "webp")
PIPELINE_FORMATS = (*IMAGE_FORMATS, "parquet")
STAGES = ("auto", "fused", "split")
DEGRADE_ON = ("loader", "device")
MULTI_FRAME = ("refuse", "first")  # a multi-page TIFF or an animated PNG/WebP: refused, or its first frame
CHANGE_DETECTION = ("metadata", "content")  # how a rerun tells a changed input: size + mtime/ETag, or a hash
# The names each registry must hold (checked when the registry is built), here so that parsing arguments
# and printing help need no torch: models, losses, schedules, precisions, blurs.
MODEL_NAMES = ("seed", "unet")
LOSS_NAMES = ("bce", "charbonnier", "l1", "mse", "psnr")
SCHEDULE_NAMES = ("constant", "cosine")
PRECISION_NAMES = ("bf16", "fp16", "fp32")
RESTORE_PRECISIONS = ("auto", *PRECISION_NAMES)  # auto: bf16 where the hardware has it (restore.bf16_hardware)
TRAIN_PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the hardware has it (restore.bf16_hardware)
BLUR_NAMES = ("anisotropic", "blind", "defocus", "gaussian", "motion", "none", "seed", "shake", "warp", "real")
DEFAULT_DEGRADATION = "blind+noise:sigma=0..0.02,p=0.7+jpeg:quality=60..95,p=0.3"  # the blind model's family


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _one_of(value: str, choices: tuple[str, ...], what: str) -> None:
    _require(value in choices, f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


@dataclass(frozen=True)
class _Config:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """The config ``data`` describes; a key that is not one of its settings is a ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        _require(not unknown, f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class RestoreConfig(_Config):
    """How one image is restored (``deblur.load``, ``deblur run``, ``deblur eval``): tiles of at most
    ``tile`` pixels with ``tile_pad`` pixels of context, the x8 ``self_ensemble``, autocast ``precision``
    ("auto": bf16 on CPUs with AMX or AVX512-BF16 and on GPUs with bf16, fp32 elsewhere).
    The configs of the commands that restore images extend it."""

    tile: int = 512
    tile_pad: int = 32
    self_ensemble: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        _one_of(self.precision, RESTORE_PRECISIONS, "precision")
        _require(self.tile_pad >= 0, f"tile padding must be >= 0, got {self.tile_pad}")
        _require(self.tile > 2 * self.tile_pad, f"tile ({self.tile}) must exceed twice the padding ({self.tile_pad})")

    def restore(self) -> RestoreConfig:
        """Just the restore settings (of a command's config)."""
        return RestoreConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RestoreConfig)})


def check_degradation(spec: str) -> None:
    """Raise ValueError when ``spec`` is not a valid degradation spec."""
    from deblur.core.degrade import parse_degradation

    parse_degradation(spec)


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

    data: str
    output: str
    model: str = "seed"
    channels: int = 1
    model_options: dict[str, Any] | None = None
    degradation: str | None = None  # None: the recipe's (ARTICLE_RECIPE, or what ``init`` records)
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    loss: str | None = None
    schedule: str = "constant"
    flips: bool = False
    patch_size: int | None = None
    patches_per_image: int = 1
    val_fraction: float = 0.1
    val_data: str | None = None
    workers: int = 1
    gpu: bool = False
    cache: bool = True
    seed: int = 0
    keep_checkpoints: int = 3
    checkpoint_every: int = 1
    worker_resources: dict[str, float] | None = None
    steps: int = 0
    minutes: float = 0.0
    val_every: int = 500
    loader_workers: int = 2
    init: str | None = None
    clip: float = 0.0
    degrade_on: str = "loader"
    mixup: float = 0.0
    precision: str = "auto"
    val_crops: int = 1

    @property
    def by_steps(self) -> bool:
        """True when training runs by steps or minutes rather than epochs."""
        return self.steps > 0 or self.minutes > 0

    def sources(self) -> list[str]:
        """The folders/buckets this run reads and that must exist (``data`` unless it names the
        Fashion-MNIST download, and ``val_data``)."""
        from deblur.core.fashion_mnist import FASHION_MNIST

        data = [] if self.data.startswith(FASHION_MNIST) else [self.data]
        return data + ([self.val_data] if self.val_data else [])

    def __post_init__(self) -> None:
        from deblur.core import models, training

        if not self.init:
            models.check(self.model, {"channels": self.channels, **(self.model_options or {})})
        _one_of(self.degrade_on, DEGRADE_ON, "degrade-on")
        _one_of(self.precision, TRAIN_PRECISIONS, "precision")
        _require(self.steps >= 0 and self.minutes >= 0, "steps and minutes must be >= 0")
        _require(self.val_every >= 1 and self.loader_workers >= 0, "val-every must be >= 1, loader-workers >= 0")
        _require(self.clip >= 0, f"clip must be >= 0, got {self.clip}")
        _require(0 <= self.mixup <= 1, f"mixup must be in [0, 1], got {self.mixup}")
        if self.degradation is not None:
            check_degradation(self.degradation)
        if self.loss is not None:
            training.LOSSES[self.loss]
        training.SCHEDULES[self.schedule]
        for name in ("epochs", "batch_size", "patch_size", "patches_per_image", "workers", "keep_checkpoints",
                     "checkpoint_every", "val_crops"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{name.replace('_', '-')} must be >= 1, got {value}")
        _require(self.lr is None or self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        _require(0 <= self.val_fraction < 1, f"val-fraction must be in [0, 1), got {self.val_fraction}")


    def with_recipe(self, recorded: dict[str, Any] | None = None) -> tuple[TrainConfig, str]:
        """(this config with every recipe setting filled, a line naming each and where it came from).

        ``recorded``: the ``init`` checkpoint's config.json; its training record (``train``; older
        checkpoints say ``blur``, ``patch``) gives the degradation, loss and patch size, and a third of its
        learning rate. Settings given explicitly always win."""
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


ARTICLE_RECIPE = {"degradation": "seed", "loss": "mse", "lr": 1e-3, "patch_size": 64}  # TrainConfig's without init


@dataclass(frozen=True)
class PipelineConfig(RestoreConfig):
    """``deblur run``: the pipeline that de-blurs every image under ``input`` into ``output`` (Ray Data)."""

    input: str
    output: str
    model: str | None = None
    format: str = "png"
    workers: int = 1
    gpu: bool = False
    batch_size: int = 4
    overwrite: bool = False
    verify_outputs: bool = True
    fail_on_error: bool = False
    max_megapixels: float = 200.0
    input_column: str | None = None
    actor_resources: dict[str, float] | None = None
    worker_memory: float = 0.0  # GB of memory Ray reserves per model actor (0: none reserved)
    stages: str = "auto"
    read_roots: tuple[str, ...] | None = None  # None: none (the CLI's default)
    multi_frame: str = "refuse"
    detect_changes: str = "metadata"

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_roots", tuple(self.read_roots or ()))
        _one_of(self.format, PIPELINE_FORMATS, "format")
        _one_of(self.multi_frame, MULTI_FRAME, "multi-frame")
        _one_of(self.detect_changes, CHANGE_DETECTION, "detect-changes")
        _one_of(self.stages, STAGES, "stages")
        _require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _require(self.batch_size >= 1, f"batch-size must be >= 1, got {self.batch_size}")
        _require(self.worker_memory >= 0, f"worker-memory must be >= 0 (0: none reserved), got {self.worker_memory}")
        _require(self.max_megapixels >= 0, f"max-megapixels must be >= 0 (0: no limit), got {self.max_megapixels}")
        super().__post_init__()


@dataclass(frozen=True)
class EvalConfig(RestoreConfig):
    """``deblur eval``: score a model, the degraded input and Wiener deconvolution against sharp images."""

    data: str
    output: str
    model: str | None = None
    degradation: str | None = None  # None: the model's own training degradation (see evaluate)
    paired: str | None = None
    seed: int = 0
    downscale: float = 1.0
    crop_border: int = 0
    y_channel: bool = False
    limit: int = 0
    report_images: int = 6

    def __post_init__(self) -> None:
        if self.degradation is not None:
            check_degradation(self.degradation)
        _require(self.downscale > 0, f"downscale must be > 0, got {self.downscale}")
        _require(self.crop_border >= 0, f"crop-border must be >= 0, got {self.crop_border}")
        _require(self.limit >= 0, f"limit must be >= 0 (0: all), got {self.limit}")
        super().__post_init__()


@dataclass(frozen=True)
class DegradeConfig(_Config):
    """``deblur degrade``: write a degraded copy of every image under ``input`` below ``output``."""

    input: str
    output: str
    degradation: str
    downscale: float = 1.0
    seed: int = 0
    format: str = "png"

    def __post_init__(self) -> None:
        check_degradation(self.degradation)
        _one_of(self.format, IMAGE_FORMATS, "format")
        _require(self.downscale > 0, f"downscale must be > 0, got {self.downscale}")
