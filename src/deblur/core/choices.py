"""Names and choices: the one leaf module every other declares its settings from.

It imports nothing of deblur's (a test holds it to that), so the configs (:mod:`deblur.core.config`),
the command line and the registries all read one list of names, and parsing arguments or printing help
needs neither torch nor OpenCV. Each registry checks, when it is built, that it holds exactly the names
declared here for it.

The degradation grammar lives here too (:func:`split_degradation`): a config checks a spec's shape and
names with it; :func:`deblur.core.degrade.parse_degradation` builds on the same split and checks each
option against the blur or corruption it names.
"""

from __future__ import annotations

IMAGE_FORMATS = ("png", "jpg", "webp")
PIPELINE_FORMATS = (*IMAGE_FORMATS, "parquet")
STAGES = ("auto", "fused", "split")
DEGRADE_ON = ("loader", "device")
PAIR_LAYOUTS = ("basicsr", "gopro", "realblur")  # public layouts of real pairs (deblur.core.pairs.LAYOUTS)
MULTI_FRAME = ("refuse", "first")  # a multi-page TIFF or an animated PNG/WebP: refused, or its first frame
CHANGE_DETECTION = ("metadata", "content")  # how a rerun tells a changed input: size + mtime/ETag, or a hash
MODEL_NAMES = ("seed", "unet")  # architectures (deblur.core.models.REGISTRY)
LOSS_NAMES = ("bce", "charbonnier", "l1", "mse", "psnr")
SCHEDULE_NAMES = ("constant", "cosine")
PRECISION_NAMES = ("bf16", "fp16", "fp32")
RESTORE_PRECISIONS = ("auto", *PRECISION_NAMES)  # auto: bf16 where the hardware has it (restore.bf16_hardware)
ENGINE_NAMES = ("eager", "openvino")  # what runs a model's forward pass (deblur.core.engines)
RESTORE_ENGINES = ("auto", *ENGINE_NAMES)  # auto: openvino where installed (CPU, deblur's own models), else eager
TRAIN_PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the hardware has it (restore.bf16_hardware)
BLUR_NAMES = ("anisotropic", "blind", "defocus", "gaussian", "motion", "none", "seed", "shake", "warp", "real")
CORRUPTION_NAMES = ("jpeg", "noise", "poisson", "quantize")
DEFAULT_DEGRADATION = "blind+noise:sigma=0..0.02,p=0.7+jpeg:quality=60..95,p=0.3"  # the blind model's family
ARTICLE_RECIPE = {"degradation": "seed", "loss": "mse", "lr": 1e-3, "patch_size": 64}  # training without --init

DEGRADATION_HELP = (
    "degradation spec BLUR[:key=value,...][+CORRUPTION[:key=value,...]]..., BLUR one of "
    f"{', '.join(sorted(BLUR_NAMES))}; CORRUPTION one of {', '.join(CORRUPTION_NAMES)}; a value a..b is a range "
    "drawn per image, e.g. motion:length=9+noise:sigma=0.005")

Part = tuple[str, dict[str, str]]  # (blur or corruption name, {option: value text})


def split_degradation(spec: str) -> tuple[Part, ...]:
    """The parts of a degradation spec: a blur, then corruptions, each ``(name, {option: text})``.

    Raises ValueError on an unknown blur or corruption name, an option without ``=``, or a value that
    is neither a number nor a range ``a..b``. Which options each part has is its class's business
    (:func:`deblur.core.degrade.parse_degradation`)."""
    parts = []
    for i, text in enumerate(spec.split("+")):
        name, _, args = text.strip().partition(":")
        kind, names = ("blur", BLUR_NAMES) if i == 0 else ("corruption", CORRUPTION_NAMES)
        if name not in names:
            raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(names))}")
        options = {}
        for item in filter(None, args.split(",")):
            key, eq, value = (s.strip() for s in item.partition("="))
            if not eq or not key:
                raise ValueError(f"bad {kind} option {item!r} for {name!r}: expected KEY=VALUE")
            if not all(_is_number(v) for v in value.split("..", 1)):
                raise ValueError(f"bad value in {kind} option {item!r}: expected a number or a range a..b")
            options[key] = value
        parts.append((name, options))
    return tuple(parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
