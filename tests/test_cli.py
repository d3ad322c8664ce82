"""The real console script, as a user runs it (a subprocess; errors must be one clear line)."""

import os
import subprocess
import sys

import pytest

from deblur.core import checkpoint, models
from deblur.cli import parser


def deblur(*args, env=None):
    return subprocess.run([sys.executable, "-m", "deblur.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_explains_every_option():
    for command, action_count in (("train", 10), ("run", 5)):
        sub = parser().get_default("commands")[command]
        for action in sub._actions:
            assert action.help, f"{command} {action.option_strings} has no help"
        assert len(sub._actions) > action_count
    result = deblur("run", "--help")
    assert result.returncode == 0 and "--input" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "x"], "the following arguments are required: --output"),
    (["train", "--data", "x", "--output", "y", "--epochs", "many"], "invalid int value"),
    (["run", "--input", "x", "--output", "y", "--format", "gif"], "invalid choice"),
])
def test_bad_arguments_exit_non_zero_with_usage(args, message):
    result = deblur(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_input_and_unreadable_checkpoint_are_one_line_errors(tmp_path):
    ck = tmp_path / "ck"
    checkpoint.save(str(ck), models.build("seed"), "seed", {})
    result = deblur("run", "--model", str(ck), "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("deblur: error: input not found")
    assert "Traceback" not in result.stderr
    (ck / "model.safetensors").write_bytes(b"broken")
    (tmp_path / "in").mkdir()
    result = deblur("run", "--model", str(ck), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "not a readable deblur checkpoint" in result.stderr
    result = deblur("run", "--model", str(tmp_path / "none"), "--input", str(tmp_path / "in"), "--output",
                    str(tmp_path / "o"))
    assert result.returncode == 2 and "no checkpoint" in result.stderr
    assert not (tmp_path / "o").exists()  # a refused run leaves nothing behind


@pytest.mark.parametrize("flag", ["--degradation", "--blur"])  # --blur: the older name, still accepted
def test_bad_degradation_spec_is_one_line_error(tmp_path, flag):
    result = deblur("train", "--data", str(tmp_path), "--output", str(tmp_path / "o"), flag, "gaussian:sigma=-")
    assert result.returncode == 2 and "deblur: error: bad value in blur option" in result.stderr


def test_a_missing_output_bucket_or_a_file_in_the_way_fail_before_any_work(tmp_path, s3_endpoint, photo_folder):
    (tmp_path / "a-file").write_bytes(b"x")
    for output, message in ((f"s3://missing-bucket-{os.getpid()}/out", "does not exist"),
                            (str(tmp_path / "a-file" / "out"), "lies under one")):
        result = deblur("run", "--input", str(photo_folder), "--output", output)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-500:]


def test_older_names_still_work_with_a_warning_and_stay_out_of_help(tmp_path, photo_folder, capsys):
    """`deblur blur` and `--blur` (the names before `degrade` and `--degradation`) are still accepted for one
    release, each with a warning naming the new name, and no help lists them."""
    from deblur import cli

    assert cli.main(["blur", "--input", str(photo_folder), "--output", str(tmp_path / "o"), "--blur", "gaussian"]) == 0
    assert len(list((tmp_path / "o").rglob("*.png"))) == 6
    err = capsys.readouterr().err
    assert "'blur' is now 'degrade'" in err and "'--blur' is now '--degradation'" in err
    for argv in ([], ["degrade"], ["train"], ["eval"]):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        shown = capsys.readouterr().out
        assert "blur}" not in shown and "--blur" not in shown and "(blur)" not in shown, shown
    assert "\r" not in err and "degrading" not in err  # progress bars only on a terminal, not in logs
    with pytest.raises(SystemExit):  # one name at a time
        cli.main(["degrade", "--input", "x", "--output", "y", "--blur", "gaussian", "--degradation", "box"])


class StorageDown(OSError):
    """Stands for a storage client's error raised inside a Ray worker."""


def test_a_worker_error_reaches_the_one_line_error_with_its_type_and_message(ray_cluster):
    from deblur.cli import one_line

    @ray_cluster.remote
    def read():
        raise StorageDown("Unable to locate credentials")

    with pytest.raises(Exception) as info:
        ray_cluster.get(read.remote())
    assert type(info.value).__name__.startswith("RayTaskError")
    assert one_line(info.value) == "StorageDown: Unable to locate credentials"


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_help_imports_neither_torch_nor_ray():
    """`deblur --help` and every command's help come from the configs alone (fast: no torch, no Ray)."""
    loaded = _python("import sys; from deblur.cli import parser; p = parser(); p.format_help(); "
                     "[s.format_help() for s in p._subparsers._group_actions[0].choices.values()]; "
                     "print(sorted(m for m in ('torch', 'ray', 'cv2', 'spandrel') if m in sys.modules))")
    assert loaded == "[]"


def test_spandrel_is_imported_only_for_a_foreign_checkpoint():
    loaded = _python("import sys, deblur; deblur.load(device='cpu'); print('spandrel' in sys.modules)")
    assert loaded == "False"


@pytest.mark.parametrize("args", [["run", "--input", "/nonexistent/in", "--output", "/tmp/o"],
                                  ["train", "--data", "/nonexistent/in", "--output", "/tmp/o"],
                                  ["train", "--data", ".", "--val-data", "/nonexistent/val", "--output", "/tmp/o"]])
def test_bad_input_fails_before_ray_is_even_imported(args):
    out = _python(f"import sys; from deblur.cli import main; rc = main({args!r}); print(rc, 'ray' in sys.modules)")
    assert out == "2 False"


@pytest.mark.parametrize("case", ["overlap", "model", "memory"])
def test_a_bad_run_fails_before_ray_or_torch_is_imported(tmp_path, case):
    """Issue 39: the overlap and model checks answered in 4-5 s (after Ray Data's and torch's imports)."""
    (tmp_path / "in").mkdir()
    args = {"overlap": ["--output", str(tmp_path / "in" / "out")],
            "model": ["--output", str(tmp_path / "out"), "--model", str(tmp_path / "no-model")],
            "memory": ["--output", "memory://out"]}[case]
    argv = ["run", "--input", str(tmp_path / "in"), *args]
    out = _python(f"import sys; from deblur.cli import main; rc = main({argv!r}); "
                  "print(rc, sorted({'ray', 'torch'} & set(sys.modules)))")
    assert out == "2 []"


def test_inspect_says_what_a_checkpoint_is(tmp_path, capsys):
    from deblur import cli

    assert cli.main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "architecture: unet" in out and "macs_per_pixel: 101,520" in out and "parameters: 2,125,443" in out
    pytest.importorskip("spandrel")
    from tests.core.test_foreign import nafnet, random_weights, save

    assert cli.main(["inspect", save(random_weights(nafnet), tmp_path / "n", "pth")]) == 0
    out = capsys.readouterr().out
    assert "architecture: NAFNet" in out and "precisions: ['bf16', 'fp32']" in out and "licence:" in out


@pytest.mark.parametrize("args, message", [
    (["run", "--inptu", "in", "--output", "out"], "deblur run: error: unrecognized argument --inptu: did you mean --input?"),
    (["run", "--input", "in", "--fromat", "png", "--output", "o"], "deblur run: error: unrecognized argument --fromat: "
                                                                   "did you mean --format?"),
    (["run", "--input", "s3:/bucket/in", "--output", "o"], "'s3:/bucket/in' is not a URL: did you mean s3://bucket/in?"),
    (["run", "--input", "abfs://container/in", "--output", "o"], "abfs:// needs a filesystem package that is not installed"),
])
def test_messages_name_the_fix(args, message):
    """Issue 39: a typo named nothing (or showed the top-level usage); s3:/ said "input not found"; a missing
    filesystem package was a ModuleNotFoundError with exit 1."""
    result = deblur(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_version_and_the_spellings_of_a_format():
    from deblur import __version__
    from deblur.cli import _config
    from deblur.core.config import DegradeConfig

    result = deblur("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"deblur {__version__} (deblur-ray)"
    args = parser().parse_args(["degrade", "--input", "a", "--output", "b", "--degradation", "seed", "--format", "JPEG"])
    assert _config(DegradeConfig, args).format == "jpg"


def test_s3_without_credentials_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "deblur.cli", "run", "--input", "s3://bucket/in", "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2 and "no credentials for s3://bucket/in" in result.stderr, result.stderr
