"""Command line: ``deblur train | run | blur | eval | sprite | demo``. Parses, builds one config, calls one function,
prints one result line. Bad arguments, missing inputs and unreadable checkpoints end with one clear
error line and exit status 2, not a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from deblur import degrade, models
from deblur.config import DeblurConfig, EvalConfig, TrainConfig
from deblur.io import OUTPUT_FORMATS
from deblur.steps import LOSSES, SCHEDULES

EPILOG = "URIs may be local paths or any fsspec URL (s3://, gs://, file://, memory://)."
BLUR_HELP = (f"degradation spec BLUR[:key=value,...][+noise:sigma=S][+jpeg:quality=Q][+quantize:bits=B], BLUR in "
             f"{degrade.names()}; a..b is a range drawn per image, e.g. motion:length=9+noise:sigma=0.005")


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


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a de-blurring model with Ray Train", epilog=EPILOG)
    p.add_argument("--data", required=True, help="folder/bucket of sharp images, or fashion-mnist[:URI]")
    p.add_argument("--output", required=True, help="training output: checkpoints land in OUTPUT/epoch_NNNN; "
                   "rerunning with the same output resumes")
    p.add_argument("--model", default="seed", choices=models.names(), help="architecture (default: seed)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="model channels (default: 1)")
    p.add_argument("--model-option", dest="model_options", type=_option, action="append",
                   help="extra model setting KEY=VALUE (JSON value), e.g. width=16; repeatable")
    p.add_argument("--blur", default="seed", help=BLUR_HELP + " (default: seed, the article's 3x3 Gaussian; "
                   f"the default model's family is {degrade.BLIND})")
    p.add_argument("--epochs", type=int, default=10, help="total epochs (default: 10)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size (default: 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--loss", default="mse", choices=LOSSES, help="loss (default: mse)")
    p.add_argument("--schedule", default="constant", choices=SCHEDULES,
                   help="learning rate: constant, or warm-up then cosine decay over the epochs (default: constant)")
    p.add_argument("--flips", action="store_true", help="random flips/rotations of each training crop")
    p.add_argument("--patch-size", type=int, default=64, help="random crop size (default: 64)")
    p.add_argument("--patches-per-image", type=int, default=1, help="random crops per image per epoch (default: 1)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of a folder (default: 0.1)")
    p.add_argument("--val-data", help="separate folder/bucket of validation images")
    p.add_argument("--workers", type=int, default=1, help="data-parallel training workers (default: 1)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, nccl, bf16 autocast")
    p.add_argument("--worker-resources", type=_json_dict, help='extra Ray resources per training worker, as JSON, '
                   'e.g. \'{"accelerator_type:A10G": 0.001}\'')
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="stream images from Ray Data every epoch instead of caching them in worker memory")
    p.add_argument("--seed", type=int, default=0, help="random seed for crops and blurs (default: 0)")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default: 1)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="best checkpoints kept (default: 3)")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="de-blur every image under a folder/bucket with Ray Data", epilog=EPILOG)
    p.add_argument("--input", required=True, help="folder/bucket (or one file) of blurred images")
    p.add_argument("--output", required=True, help="output root; input paths are mirrored below it")
    p.add_argument("--input-column", help="read --input as a Parquet dataset whose column of this name holds "
                   "encoded images (a 'path' column, if any, names them)")
    p.add_argument("--model", help="checkpoint directory, or a training output (its best checkpoint); "
                   "default: the bundled model")
    p.add_argument("--format", default="png", choices=(*OUTPUT_FORMATS, "parquet"),
                   help="one image file per input, or Parquet rows with the encoded PNG (default: png)")
    p.add_argument("--workers", type=int, default=1, help="model actors (default: 1)")
    p.add_argument("--gpu", action="store_true", help="one GPU per model actor")
    p.add_argument("--stages", default="auto", choices=("auto", "fused", "split"),
                   help="split: decode and encode in CPU tasks, the model alone in its actors (default with "
                   "--gpu); fused: all in one actor (default on CPU)")
    p.add_argument("--actor-resources", type=_json_dict, help="extra Ray resources per model actor, as JSON")
    p.add_argument("--batch-size", type=int, default=4, help="images per actor call (default: 4)")
    p.add_argument("--tile", type=int, default=512, help="largest tile side; bigger images go in tiles (default: 512)")
    p.add_argument("--tile-pad", type=int, default=32, help="context kept around each tile (default: 32)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 8 flips/rotations of each image (8x the compute)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs the manifest already records as done")
    p.add_argument("--fail-on-error", action="store_true", help="exit 1 when any input failed")
    p.add_argument("--max-megapixels", type=float, default=200.0,
                   help="inputs larger than this are refused with an error record (default: 200)")


def _blur_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blur", help="write degraded copies of every image under a folder/bucket", epilog=EPILOG)
    p.add_argument("--input", required=True, help="folder/bucket (or one file) of sharp images")
    p.add_argument("--output", required=True, help="output root; input paths are mirrored below it")
    p.add_argument("--blur", required=True, help=BLUR_HELP + "; 'none' with --downscale makes sharp copies")
    p.add_argument("--downscale", type=float, default=1.0, help="shrink inputs by this factor first (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; each image's draws also depend on its path")
    p.add_argument("--format", default="png", choices=OUTPUT_FORMATS, help="output format (default: png)")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM of a model vs the blurred input and Wiener deconvolution, "
                       "with a Parquet table and a PNG/HTML report", epilog=EPILOG)
    p.add_argument("--data", required=True, help="folder/bucket of sharp images")
    p.add_argument("--output", required=True, help="folder for metrics.parquet, summary.json, report.png/.html")
    p.add_argument("--model", help="checkpoint directory or training output (default: the bundled model)")
    p.add_argument("--blur", default="seed", help=BLUR_HELP + " (default: seed)")
    p.add_argument("--paired", help="folder of already degraded images named as in --data (instead of --blur)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the degradations (default: 0)")
    p.add_argument("--downscale", type=float, default=1.0, help="shrink sharp images by this factor first")
    p.add_argument("--crop-border", type=int, default=0, help="pixels dropped at each edge before scoring")
    p.add_argument("--y-channel", action="store_true", help="score the luma (Y of YCbCr) of colour images")
    p.add_argument("--self-ensemble", action="store_true", help="average the model over 8 flips/rotations")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N images only (default: all)")
    p.add_argument("--report-images", type=int, default=6, help="images shown in report.png (default: 6)")


def _sprite_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sprite", help="cut the Fashion-MNIST sprite into train/ (tiles 0-599), "
                       "eval/ (600-899) and eval-blurred/ PNG folders")
    p.add_argument("--sprite", required=True, help="fashion-mnist-sprite.png")
    p.add_argument("--output", required=True, help="folder to write")


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="blur the bundled sample photos, de-blur them, write a before/after picture")
    p.add_argument("--output", default="demo-output", help="folder to write (default: demo-output)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deblur", description="De-blur images at scale with Ray.")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _run_parser, _blur_parser, _eval_parser, _sprite_parser, _demo_parser):
        add(sub)
    return p


def _config(cls, args: argparse.Namespace):
    values = vars(args)
    if values.get("model_options"):
        values = {**values, "model_options": dict(values["model_options"])}
    return cls.from_dict(values)


def dispatch(args: argparse.Namespace) -> str:
    """Run the chosen command; returns its one-line result."""
    if args.command == "sprite":
        from deblur.demo import write_sprite_folders
        return write_sprite_folders(args.sprite, args.output)
    if args.command == "demo":
        from deblur.demo import demo
        return demo(args.output)
    if args.command == "blur":
        from deblur.synth import write_degraded
        return write_degraded(args.input, args.output, args.blur, args.seed, args.downscale, args.format)
    if args.command == "eval":
        from deblur.evaluate import evaluate
        return evaluate(_config(EvalConfig, args))
    if args.command == "train":
        from deblur.train import fit
        return f"best checkpoint: {fit(_config(TrainConfig, args))}"
    from deblur.infer import run
    summary = run(_config(DeblurConfig, args))
    if args.fail_on_error and summary.failed:
        raise RunFailed(summary.line())
    return summary.line()


class RunFailed(Exception):
    """Some inputs failed and ``--fail-on-error`` was given."""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        print(dispatch(args), flush=True)
    except (ValueError, FileNotFoundError, PermissionError, json.JSONDecodeError) as e:
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"deblur: error: {type(e).__name__}: {first} (rerun with -v for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
