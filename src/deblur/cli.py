"""Command line: ``deblur train | run | degrade | eval | sprite | demo``. Parses, builds one config, calls one function,
prints one result line. Bad arguments, missing inputs and unreadable checkpoints end with one clear
error line and exit status 2, not a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import re
import sys

from deblur.core.config import DegradeConfig, EvalConfig, PipelineConfig, TrainConfig

EPILOG = "URIs may be local paths or any fsspec URL (s3://, gs://, file://, memory://)."
COMMANDS = {"train": TrainConfig, "run": PipelineConfig, "degrade": DegradeConfig, "eval": EvalConfig}


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


FORMAT_SPELLINGS = {"jpeg": "jpg", "jpe": "jpg"}  # --format jpeg is --format jpg
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


def _flag(field: dataclasses.Field) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _argument(field: dataclasses.Field) -> dict:
    """argparse's keywords for a config field, from its type, default and :func:`~deblur.core.config.option`."""
    meta, kind = field.metadata, str(field.type)
    arg = {"dest": field.name, "help": meta["help"]}
    if field.default is dataclasses.MISSING:
        arg["required"] = True
    else:
        arg["default"] = field.default
    if kind == "bool":
        return {**arg, "action": "store_false" if field.default else "store_true"}
    if meta["choices"]:
        arg["choices"] = meta["choices"]
        if field.name == "format":  # the spellings people use for the formats offered
            arg["type"] = lambda text: FORMAT_SPELLINGS.get(text.lower(), text.lower())
    if kind.startswith("dict[str, float]"):
        return {**arg, "type": _json_dict}
    if kind.startswith("dict"):
        return {**arg, "type": _option, "action": "append"}
    if kind.startswith("tuple"):
        return {**arg, "action": "append"}
    number = next((t for t in (int, float) if kind.split(" ")[0] == t.__name__), None)
    return {**arg, "type": number} if number else arg


def _add_options(p: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of the config ``cls`` (its own first, then those it extends), each older name
    of a flag (hidden, warned) beside it."""
    own = cls.__dict__.get("__annotations__", {})
    for field in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        arg = _argument(field)
        if not field.metadata["renamed"]:
            p.add_argument(_flag(field), **arg)
            continue
        group = p.add_mutually_exclusive_group(required=arg.pop("required", False))
        group.add_argument(_flag(field), **arg)
        for old in field.metadata["renamed"]:
            group.add_argument(old, dest=field.name, action=_Renamed, default=argparse.SUPPRESS)


def _command(sub: argparse._SubParsersAction, name: str, help: str) -> None:
    _add_options(sub.add_parser(name, help=help, epilog=EPILOG), COMMANDS[name])


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


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="public models by name (--model NAME): what each is, its licence, sha256 and "
                       "sources; `models add NAME FILE|URL` caches a file fetched by hand, checked against its sha256")
    actions = p.add_subparsers(dest="models_command")
    add = actions.add_parser("add", help="put a file fetched by hand (or from your bucket) into the cache as NAME's")
    add.add_argument("name", help="the model's name (`deblur models` lists them)")
    add.add_argument("source", help="the file: a path or any fsspec URL")


def _models(args: argparse.Namespace) -> str:
    from deblur.core import catalog

    if args.models_command == "add":
        return f"{args.name}: checked and cached at {catalog.add(args.name, args.source)}"
    blocks = []
    for e in catalog.describe():
        size = f"{e['size'] / 1e6:.1f} MB" if e["size"] else "size not stated"
        blocks.append("\n".join([
            f"{e['name']}  ({'cached' if e['cached'] else 'not cached'})",
            f"  {e['architecture']}; {e['task']}; trained on {e['data']}",
            f"  score: {e['score']}", f"  licence: {e['licence']}; {size}", f"  sha256: {e['sha256']}",
            *(f"  url: {u}" for u in e["urls"]), *(f"  source: {s}" for s in e["sources"])]))
    return "\n\n".join(blocks)


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="blur the bundled sample photos, de-blur them, write a before/after picture")
    p.add_argument("--output", default="demo-output", help="folder to write (default: %(default)s)")


def parser() -> argparse.ArgumentParser:
    from deblur import __version__

    p = argparse.ArgumentParser(prog="deblur", description="De-blur images at scale with Ray.")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action="version", version=f"deblur {__version__} (deblur-ray)")
    sub = p.add_subparsers(dest="command", required=True)
    _command(sub, "train", "train a de-blurring model with Ray Train")
    _command(sub, "run", "de-blur every image under a folder/bucket: the pipeline, with Ray Data")
    _command(sub, "degrade", "write degraded copies of every image under a folder/bucket")
    _command(sub, "eval", "PSNR/SSIM of a model vs the blurred input and Wiener deconvolution, with a Parquet "
             "table and a PNG/HTML report")
    for add in (_inspect_parser, _models_parser, _sprite_parser, _demo_parser):
        add(sub)
    p.set_defaults(commands=sub.choices)
    return p


def check_flags(p: argparse.ArgumentParser, argv: list[str]) -> None:
    """Stop at the first flag the chosen command does not have, with that command's usage and the flag it
    most resembles (argparse names neither: ``--inptu`` only made ``--input`` missing, and ``--fromat`` got the
    top-level usage)."""
    commands = p.get_default("commands")
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is None or argv[at] not in commands:
        return
    sub = commands[argv[at]]
    known = [o for action in [*sub._actions, *p._actions] for o in action.option_strings]
    for token in argv[at + 1:]:
        name = token.split("=", 1)[0]
        if name.startswith("--") and name != "--" and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            sub.error(f"unrecognized argument {name}" + (f": did you mean {close[0]}?" if close else ""))
        if name == "--":
            return


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
    if args.command == "models":
        return _models(args)
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
    from deblur.pipeline.checks import preflight

    preflight(cfg)  # before the Ray layer and torch are even imported: a bad run fails in a fraction of a second
    from deblur.pipeline.run import run
    summary = run(cfg)
    if args.fail_on_error and summary.failed:
        raise RunFailed(summary.line())
    return summary.line()


MAX_LINE = 300  # the longest line of an error message (a value echoed back may be huge)


def short(text: str) -> str:
    """``text`` with every line cut to :data:`MAX_LINE` characters."""
    return "\n".join(ln if len(ln) <= MAX_LINE else ln[:MAX_LINE - 1] + "…" for ln in text.splitlines())


class RunFailed(Exception):
    """Some inputs failed and ``--fail-on-error`` was given."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command is not None and argv[command] in RENAMED:  # ``deblur blur``: the older name of ``degrade``
        _warn_renamed(argv[command])
        argv[command] = RENAMED[argv[command]]
    p = parser()
    check_flags(p, argv)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        print(dispatch(args), flush=True)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, ConnectionError,
            json.JSONDecodeError) as e:
        if args.verbose:
            raise
        print(short(f"deblur: error: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: training aborts its run first; the pipeline's manifest keeps what is done
        print("deblur: interrupted", file=sys.stderr)
        return 130
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
