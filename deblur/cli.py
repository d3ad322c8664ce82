"""Command line: ``deblur train | run | degrade | eval | sprite | demo``. Parses, builds one config, calls one function,
prints one result line. Bad arguments, missing inputs and unreadable checkpoints end with one clear
error line and exit status 2, not a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys

from deblur.core.config import (ARTICLE_RECIPE, BLUR_NAMES, CHANGE_DETECTION, DEFAULT_DEGRADATION, DEGRADE_ON, IMAGE_FORMATS,
                                LOSS_NAMES, MODEL_NAMES, MULTI_FRAME, PIPELINE_FORMATS, RESTORE_PRECISIONS, SCHEDULE_NAMES,
                                STAGES, TRAIN_PRECISIONS, DegradeConfig, EvalConfig, PipelineConfig, RestoreConfig, TrainConfig)

EPILOG = "URIs may be local paths or any fsspec URL (s3://, gs://, file://, memory://)."
DEGRADATION_HELP = (f"degradation spec BLUR[:key=value,...][+noise:sigma=S][+jpeg:quality=Q][+quantize:bits=B], "
                    f"BLUR in {sorted(BLUR_NAMES)}; a..b is a range drawn per image, e.g. motion:length=9+noise:sigma=0.005")
T, P, E, R = TrainConfig, PipelineConfig, EvalConfig, RestoreConfig  # where every default below comes from


def _json_dict(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
        if isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            return {str(k): float(v) for k, v in value.items()}
    except json.JSONDecodeError:
        pass
    raise argparse.ArgumentTypeError(f"expected a JSON object of numbers, got {text!r}")


def _option(text: str) -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


RENAMED = {"--blur": "--degradation", "blur": "degrade"}  # older name -> name; accepted, warned, hidden until 0.2


def _warn_renamed(old: str) -> None:
    print(f"deblur: warning: '{old}' is now '{RENAMED[old]}'; the old name goes in deblur-ray 0.2", file=sys.stderr)


class _Renamed(argparse.Action):
    """A flag's older name: sets the new one's value with a warning, and stays out of ``--help``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        _warn_renamed(option_string)
        setattr(namespace, self.dest, values)


def _degradation(p: argparse.ArgumentParser, default: str | None, extra: str, required: bool = False) -> None:
    """``--degradation`` (and ``--blur``, its older name: see :data:`RENAMED`)."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--degradation", default=default, help=DEGRADATION_HELP + extra)
    group.add_argument("--blur", dest="degradation", action=_Renamed, default=argparse.SUPPRESS)


def _restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=R.tile, help="largest tile side; bigger images go in tiles "
                   "(default: %(default)s)")
    p.add_argument("--tile-pad", type=int, default=R.tile_pad, help="context kept around each tile "
                   "(default: %(default)s)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 8 flips/rotations of each image (8x the compute)")
    p.add_argument("--precision", default=R.precision, choices=RESTORE_PRECISIONS,
                   help="numeric precision of the model (autocast; default: %(default)s, bf16 on CPUs with AMX or "
                   "AVX512-BF16 and GPUs with bf16, fp32 elsewhere; the summary says which ran)")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a de-blurring model with Ray Train", epilog=EPILOG)
    p.add_argument("--data", required=True, help="folder/bucket of sharp images, or fashion-mnist[:URI]")
    p.add_argument("--output", required=True, help="training output: checkpoints land in OUTPUT/epoch_NNNN; "
                   "rerunning with the same output resumes")
    p.add_argument("--model", default=T.model, choices=sorted(MODEL_NAMES), help="architecture (default: %(default)s)")
    p.add_argument("--channels", type=int, default=T.channels, choices=(1, 3), help="model channels (default: %(default)s)")
    p.add_argument("--model-option", dest="model_options", type=_option, action="append",
                   help="extra model setting KEY=VALUE (JSON value), e.g. width=16; repeatable")
    _degradation(p, T.degradation, f" (default: with --init, the one its checkpoint records; else "
                 f"{ARTICLE_RECIPE['degradation']}, the article's 3x3 Gaussian; the default model's is {DEFAULT_DEGRADATION})")
    p.add_argument("--epochs", type=int, default=T.epochs, help="total epochs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=T.steps, help="train by steps instead of epochs: total optimiser "
                   "steps on endless random crops (default: by epochs)")
    p.add_argument("--minutes", type=float, default=T.minutes, help="train by time instead: stop at the first "
                   "validation after this many minutes (the schedule follows the clock)")
    p.add_argument("--val-every", type=int, default=T.val_every,
                   help="with --steps/--minutes: steps between validations and checkpoints (default: %(default)s)")
    p.add_argument("--loader-workers", type=int, default=T.loader_workers, help="with --steps/--minutes: crop-"
                   "degrading processes per training worker (default: %(default)s)")
    p.add_argument("--degrade-on", default=T.degrade_on, choices=DEGRADE_ON, help="with --steps/--minutes: where "
                   "blur and noise are applied to crops, in the loader or on the training device (default: %(default)s)")
    p.add_argument("--init", help="start from this checkpoint's weights (its model and settings): fine-tuning")
    p.add_argument("--clip", type=float, default=T.clip, help="gradient norm clipping (0: off; default: %(default)s)")
    p.add_argument("--mixup", type=float, default=T.mixup, help="with --steps/--minutes: share of crops cut from a "
                   "blend of two same-sized images (blur is linear; default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=T.batch_size, help="global batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=T.lr, help="Adam learning rate (default: with --init, a third of "
                   f"its checkpoint's; else {ARTICLE_RECIPE['lr']})")
    p.add_argument("--loss", default=T.loss, choices=sorted(LOSS_NAMES), help="loss (default: with --init, its "
                   f"checkpoint's; else {ARTICLE_RECIPE['loss']})")
    p.add_argument("--schedule", default=T.schedule, choices=sorted(SCHEDULE_NAMES),
                   help="learning rate: constant, or warm-up then cosine decay over the epochs (default: %(default)s)")
    p.add_argument("--flips", action="store_true", help="random flips/rotations of each training crop")
    p.add_argument("--patch-size", type=int, default=T.patch_size, help="random crop size (default: with --init, "
                   f"its checkpoint's; else {ARTICLE_RECIPE['patch_size']})")
    p.add_argument("--patches-per-image", type=int, default=T.patches_per_image,
                   help="random crops per image per epoch (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=T.val_fraction,
                   help="validation share of a folder (default: %(default)s)")
    p.add_argument("--val-data", help="separate folder/bucket of validation images")
    p.add_argument("--val-crops", type=int, default=T.val_crops, help="validation crops per image: the centre, "
                   "then seeded places, each with its own degradation draw (default: %(default)s)")
    p.add_argument("--workers", type=int, default=T.workers, help="data-parallel training workers (default: %(default)s)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, nccl")
    p.add_argument("--precision", default=T.precision, choices=TRAIN_PRECISIONS, help="autocast of the forward "
                   "pass, fp32 master weights; auto: bf16 on GPUs and CPUs that compute it natively (AMX, "
                   "AVX512-BF16), else fp32 (default: %(default)s)")
    p.add_argument("--worker-resources", type=_json_dict, help='extra Ray resources per training worker, as JSON, '
                   'e.g. \'{"accelerator_type:A10G": 0.001}\'')
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="stream images from Ray Data every epoch instead of caching them in worker memory")
    p.add_argument("--seed", type=int, default=T.seed, help="random seed for crops and degradations (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=T.checkpoint_every,
                   help="epochs between checkpoints (default: %(default)s)")
    p.add_argument("--keep-checkpoints", type=int, default=T.keep_checkpoints,
                   help="best checkpoints kept (default: %(default)s)")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="de-blur every image under a folder/bucket: the pipeline, with Ray Data",
                       epilog=EPILOG)
    p.add_argument("--input", required=True, help="folder/bucket (or one file) of blurred images")
    p.add_argument("--output", required=True, help="output root; input paths are mirrored below it")
    p.add_argument("--input-column", help="read --input as a Parquet dataset whose column of this name holds "
                   "encoded images (a 'path' column, if any, names them)")
    p.add_argument("--model", help="checkpoint directory, or a training output (its best checkpoint); "
                   "default: the bundled model")
    p.add_argument("--format", default=P.format, choices=PIPELINE_FORMATS,
                   help="one image file per input, or Parquet rows with the encoded PNG (default: %(default)s)")
    p.add_argument("--workers", type=int, default=P.workers, help="model actors (default: %(default)s)")
    p.add_argument("--gpu", action="store_true", help="one GPU per model actor")
    p.add_argument("--stages", default=P.stages, choices=STAGES,
                   help="split: decode and encode in CPU tasks, the model alone in its actors (default with "
                   "--gpu); fused: all in one actor (default on CPU)")
    p.add_argument("--actor-resources", type=_json_dict, help="extra Ray resources per model actor, as JSON")
    p.add_argument("--worker-memory", type=float, default=P.worker_memory,
                   help="GB of memory Ray reserves for each model actor, so that it schedules by memory instead of "
                   "running out of it: about 0.6 GB plus 3x the decoded size of the largest image (0: none; "
                   "default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=P.batch_size,
                   help="images per actor task: results land (and progress moves) a batch at a time; raise it for "
                   "many small images, which then share model calls (default: %(default)s)")
    _restore_options(p)
    p.add_argument("--overwrite", action="store_true", help="redo inputs the manifest already records as done")
    p.add_argument("--no-verify-outputs", dest="verify_outputs", action="store_false",
                   help="trust the manifest: do not list the output to redo outputs deleted since their run")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 when any input failed")
    p.add_argument("--max-megapixels", type=float, default=P.max_megapixels,
                   help="inputs larger than this are refused with an error record (0: no limit; default: %(default)s)")
    p.add_argument("--multi-frame", default=P.multi_frame, choices=MULTI_FRAME,
                   help="a multi-page TIFF or animated PNG/WebP: refused with an error record, or its first "
                   "frame de-blurred (default: %(default)s)")
    p.add_argument("--detect-changes", default=P.detect_changes, choices=CHANGE_DETECTION,
                   help="how a rerun tells a changed input: size and modification time/ETag, or a hash of its "
                   "content (reads every input again; for tools that restore modification times) (default: "
                   "%(default)s)")
    p.add_argument("--read-root", dest="read_roots", action="append", default=P.read_roots,
                   help="with --input-column: a folder/bucket that rows without image bytes may name by path, "
                   "besides the dataset's own folder; repeatable")


def _degrade_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("degrade", help="write degraded copies of every image under a folder/bucket",
                       epilog=EPILOG)
    p.add_argument("--input", required=True, help="folder/bucket (or one file) of sharp images")
    p.add_argument("--output", required=True, help="output root; input paths are mirrored below it")
    _degradation(p, None, "; 'none' with --downscale makes sharp copies", required=True)
    p.add_argument("--downscale", type=float, default=DegradeConfig.downscale,
                   help="shrink inputs by this factor first (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DegradeConfig.seed,
                   help="random seed; each image's draws also depend on its path (default: %(default)s)")
    p.add_argument("--format", default=DegradeConfig.format, choices=IMAGE_FORMATS,
                   help="output format (default: %(default)s)")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM of a model vs the blurred input and Wiener deconvolution, "
                       "with a Parquet table and a PNG/HTML report", epilog=EPILOG)
    p.add_argument("--data", required=True, help="folder/bucket of sharp images")
    p.add_argument("--output", required=True, help="folder for metrics.parquet, summary.json, report.png/.html")
    p.add_argument("--model", help="checkpoint directory or training output (default: the bundled model)")
    _degradation(p, E.degradation, " (default: the one the model was trained on, recorded in its checkpoint; "
                 f"else {DEFAULT_DEGRADATION})")
    p.add_argument("--paired", help="folder of already degraded images named as in --data (instead of --degradation)")
    p.add_argument("--seed", type=int, default=E.seed, help="random seed of the degradations (default: %(default)s)")
    p.add_argument("--downscale", type=float, default=E.downscale, help="shrink sharp images by this factor first")
    p.add_argument("--crop-border", type=int, default=E.crop_border, help="pixels dropped at each edge before scoring")
    p.add_argument("--y-channel", action="store_true", help="score the luma (Y of YCbCr) of colour images")
    _restore_options(p)
    p.add_argument("--limit", type=int, default=E.limit, help="evaluate the first N images only (default: all)")
    p.add_argument("--report-images", type=int, default=E.report_images,
                   help="images shown in report.png (default: %(default)s)")


def _sprite_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sprite", help="cut the Fashion-MNIST sprite into train/ (tiles 0-599), "
                       "eval/ (600-899) and eval-blurred/ PNG folders")
    p.add_argument("--sprite", required=True, help="fashion-mnist-sprite.png")
    p.add_argument("--output", required=True, help="folder to write")


def _inspect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="what a checkpoint is: architecture, parameters, MACs per pixel, size "
                       "needs, precisions, licence", epilog=EPILOG)
    p.add_argument("model", nargs="?", help="checkpoint directory, training output, or a weights file "
                   "(.pth/.ckpt/.safetensors of a spandrel architecture, e.g. NAFNet); default: the bundled model")


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="blur the bundled sample photos, de-blur them, write a before/after picture")
    p.add_argument("--output", default="demo-output", help="folder to write (default: %(default)s)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deblur", description="De-blur images at scale with Ray.")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _run_parser, _degrade_parser, _eval_parser, _inspect_parser, _sprite_parser,
                _demo_parser):
        add(sub)
    return p


def _config(cls, args: argparse.Namespace):
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}  # the rest: the command, -v, ...
    if values.get("model_options"):
        values = {**values, "model_options": dict(values["model_options"])}
    return cls.from_dict(values)


def dispatch(args: argparse.Namespace) -> str:
    """Run the chosen command; returns its one-line result."""
    from deblur.core.storage import check_input

    if args.command == "sprite":
        from deblur.demo import write_sprite_folders
        return write_sprite_folders(args.sprite, args.output)
    if args.command == "demo":
        from deblur.demo import demo
        return demo(args.output)
    if args.command == "inspect":
        from deblur.core.checkpoint import describe
        return "\n".join(f"{k}: {v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k}: {v}"
                         for k, v in describe(args.model).items())
    if args.command == "degrade":
        from deblur.core.synth import write_degraded
        return write_degraded(_config(DegradeConfig, args))
    if args.command == "eval":
        from deblur.core.evaluate import evaluate
        return evaluate(_config(EvalConfig, args))
    if args.command == "train":
        cfg = _config(TrainConfig, args)
        check_input(*cfg.sources())  # before the Ray layer is even imported: bad input fails in a second
        from deblur.train.trainer import fit
        return f"best checkpoint: {fit(cfg)}"
    cfg = _config(PipelineConfig, args)
    check_input(cfg.input)
    from deblur.pipeline.run import run
    summary = run(cfg)
    if args.fail_on_error and summary.failed:
        raise RunFailed(summary.line())
    return summary.line()


class RunFailed(Exception):
    """Some inputs failed and ``--fail-on-error`` was given."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command is not None and argv[command] in RENAMED:  # ``deblur blur``: the older name of ``degrade``
        _warn_renamed(argv[command])
        argv[command] = RENAMED[argv[command]]
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        print(dispatch(args), flush=True)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, ConnectionError,
            json.JSONDecodeError) as e:
        if args.verbose:
            raise
        print(f"deblur: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(e)
        print("deblur: error: some inputs failed; the manifest has each error", file=sys.stderr)
        return 1
    except Exception as e:  # a failure while running (a worker died, storage went away): one line, exit 1
        if args.verbose:
            raise
        print(f"deblur: error: {one_line(e)} (rerun with -v for the traceback)", file=sys.stderr)
        return 1
    return 0


def root_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of Ray's wrappers (``RayTaskError`` -> ``UserCodeException`` -> ...):
    what actually went wrong in a worker, e.g. ``NoCredentialsError``."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None) or error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


_WRAPPERS = ("RayTaskError", "UserCodeException", "RayActorError", "ActorDiedError")
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Warning|Exit)): (.+)$")


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` of the root cause, without Ray's task-location prefixes. When
    only Ray's wrappers came back (a worker's exception chain crossed a process as text), the last
    non-wrapper exception named in that text."""
    cause = root_cause(error)
    if type(cause).__name__.startswith(_WRAPPERS):
        for text in (str(cause), str(error)):
            raised = [m for ln in text.splitlines() if (m := _RAISED.match(ln.strip()))
                      and not m.group(1).startswith(_WRAPPERS)]
            if raised:
                return f"{raised[-1].group(1)}: {raised[-1].group(2)}"
    lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
    text = next((ln for ln in reversed(lines) if not ln.startswith(("ray::", "File ", "Traceback"))), "")
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


if __name__ == "__main__":
    sys.exit(main())
