"""End to end as users run it: a real head (`ray start --head`, dashboard on, token authentication on, as
Ray starts a head by default), `ray job submit` of a training job and a de-blur job over buckets on the moto
S3 server, re-submissions, the nightly trigger's retries, and what the upload carries."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pytest
import torch

from deblur.core.image import encode
from deblur.pipeline import sinks
from tests.conftest import _free_port, textured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
pytestmark = [pytest.mark.xdist_group("head"), pytest.mark.ray]  # one worker runs them all: one head
FINAL_LINE = re.compile(r"^(best checkpoint: |\d+ done, |\d+ images, |files: )", re.M)  # what each job prints last


@pytest.fixture(scope="module")
def head(s3_endpoint):
    """A Ray head on loopback, its dashboard serving the Jobs API; the moto endpoint is in its env. Its files
    sit beside the session's Ray's, on a short path: a Unix socket's path is at most 107 bytes, and pytest's
    temporary folders under a parallel worker are longer.

    Started with ``--block`` in its own process group, so tearing it down stops this head only, never
    another Ray on the machine (``ray stop`` would stop them all).
    """
    import signal

    from ray.job_submission import JobSubmissionClient

    port, dash = _free_port(), _free_port()
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": BIN + os.pathsep + os.environ["PATH"],
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # stops at once (as scripts/local-head.sh's head)
    env.pop("RAY_ADDRESS", None)
    files = tempfile.mkdtemp(prefix="head-", dir=os.environ["RAY_TMPDIR"])
    start = [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
             "--num-cpus=4", f"--temp-dir={files}", "--disable-usage-stats",
             # every port of its own: the session's Ray already holds the defaults (its agent's 52365, ...)
             *(f"--{name}={_free_port()}" for name in (
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                 "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))]
    proc = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 180
    while True:  # ready once it takes a job (the dashboard answers before its job agent is up)
        try:
            JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"}).submit_job(
                entrypoint="true", submission_id=f"readiness-{time.time_ns()}")
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            time.sleep(1)
    yield {"address": address, "env": env, "token": token, "gcs": f"127.0.0.1:{port}"}
    proc.terminate()  # `ray start` alone (as scripts/local-head.sh stops it) stops its processes, GCS last
    try:
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of its group
        except ProcessLookupError:
            pass
        _forget_head(port)


def _current_cluster() -> str:
    """Ray's note of the machine's cluster, which ray.init() follows (under RAY_TMPDIR when set)."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(None)


def _noted(port: int) -> bool:
    """Whether Ray's note of the machine's current cluster names the head on ``port``."""
    try:
        with open(_current_cluster()) as f:
            return f.read().strip().endswith(f":{port}")
    except FileNotFoundError:
        return False


def _forget_head(port: int) -> None:
    """Remove Ray's note when it names the head on ``port`` (as ray stop does): left behind, it makes a later
    plain ``ray.init()`` try to attach to a dead head."""
    if _noted(port):
        os.remove(_current_cluster())


def submit(head, *job: str) -> subprocess.CompletedProcess:
    """``ray job submit`` (waits for the job); ``stdout`` is then replaced by the job's complete log."""
    sid = f"test-{time.time_ns()}-{secrets.token_hex(3)}"  # unique when two are submitted at once
    ray = os.path.join(BIN, "ray")
    cmd = [ray, "job", "submit", "--address", head["address"], "--submission-id", sid, "--working-dir", ROOT,
           "--runtime-env", os.path.join(ROOT, "jobs", "runtime_env.yaml"), "--", sys.executable, *job]
    done = subprocess.run(cmd, env=head["env"], capture_output=True, text=True, timeout=600)
    client = _client(head)  # what `ray job logs` prints, without a process of its own
    for _ in range(20):  # the job's log file can trail its exit by a moment
        logs = client.get_job_logs(sid)
        if done.returncode or FINAL_LINE.search(logs):
            break
        time.sleep(1)
    return subprocess.CompletedProcess(cmd, done.returncode, logs, done.stdout + done.stderr)


def _client(head):
    """The head's Jobs API, authenticated with its token."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head["address"], headers={"Authorization": f"Bearer {head['token']}"})


def test_a_command_attaches_to_a_token_head_with_only_the_token_file(head, tmp_path):
    """Issue 24: `deblur run` against a head with token authentication printed InvalidAuthToken for ~20 s and
    failed, unless RAY_AUTH_MODE=token was exported: the CLI now finds the token where Ray keeps it, as
    jobs/submit.py does (one function, deblur.runtime.use_token_if_present)."""
    from deblur.core import checkpoint, models
    from tests.conftest import write_image

    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(head["token"])
    for i in range(2):
        write_image(tmp_path / "in" / f"a{i}.png", textured(32, 40, 3, seed=i))
    torch.manual_seed(0)
    checkpoint.save(str(tmp_path / "ck"), models.build("seed"), "seed", {"epoch": 1, "metrics": {}})
    env = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), RAY_ADDRESS=head["gcs"])
    run = subprocess.run([sys.executable, "-m", "deblur.cli", "run", "--model", str(tmp_path / "ck"), "--input",
                          str(tmp_path / "in"), "--output", str(tmp_path / "out")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and "2 done" in run.stdout, run.stdout[-2000:] + run.stderr[-3000:]
    port = head["gcs"].rpartition(":")[2]
    assert re.search(rf"attached to the cluster at [\d.]+:{port}\b", run.stderr) and "InvalidAuth" not in run.stderr


def test_train_then_deblur_jobs_over_buckets(head, bucket):
    fs = fsspec.filesystem("s3")
    root = bucket.removeprefix("s3://")
    for i in range(6):
        fs.pipe(f"{root}/sharp/s{i}.png", encode(textured(48, 48, 3, seed=i), "png"))
    for i in range(3):
        fs.pipe(f"{root}/incoming/day1/b{i}.png", encode(textured(40, 56, 3, seed=20 + i), "png"))

    train = submit(head, "jobs/train.py", "--data", f"{bucket}/sharp", "--val-data", f"{bucket}/sharp",
                   "--output", f"{bucket}/runs/r1", "--epochs", "2", "--batch-size", "4", "--patch-size", "32",
                   "--degradation", "gaussian:sigma=1.0", "--workers", "1")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-2000:]
    best = re.search(rf"best checkpoint: {re.escape(bucket)}/runs/r1/(epoch_000[12])\b", train.stdout)
    assert best, train.stdout[-3000:]  # the better of the two epochs by validation PSNR
    fs.invalidate_cache()
    assert fs.exists(f"{root}/runs/r1/epoch_0002/model.safetensors")
    assert fs.exists(f"{root}/runs/r1/{best.group(1)}/model.safetensors")

    job = ["jobs/deblur.py", "--model", f"{bucket}/runs/r1", "--input", f"{bucket}/incoming",
           "--output", f"{bucket}/deblurred"]
    with ThreadPoolExecutor(2) as pool:  # two jobs on the cluster at once: the evaluation and the first run
        evaluating = pool.submit(submit, head, "jobs/evaluate.py", "--model", f"{bucket}/runs/r1", "--data",
                                 f"{bucket}/sharp", "--degradation", "gaussian:sigma=1.0", "--output", f"{bucket}/eval")
        first = submit(head, *job)
        evaluation = evaluating.result()
    assert evaluation.returncode == 0, evaluation.stdout[-3000:] + evaluation.stderr[-2000:]
    assert "6 images, gaussian:sigma=1.0: blurred" in evaluation.stdout
    fs.invalidate_cache()
    assert {"metrics.parquet", "summary.json", "report.png", "report.html"} <= {
        p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/eval")}

    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "3 done, 0 skipped, 0 failed" in first.stdout
    fs.invalidate_cache()
    assert sorted(fs.find(f"{root}/deblurred/day1")) == [f"{root}/deblurred/day1/b{i}.png" for i in range(3)]
    assert len(sinks.read_manifest(f"{bucket}/deblurred")) == 3  # the next night's job, with nothing new to do:
    # test_the_readmes_local_head_lines_run_as_written


def _trigger(head, home, run: str, *job: str) -> subprocess.CompletedProcess:
    """The nightly trigger as cron runs it: jobs/submit.py, the token only in ``home``/.ray/auth_token."""
    env = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH")}
    cmd = [sys.executable, os.path.join(ROOT, "jobs", "submit.py"), "--address", head["address"], "--id", run,
           "--wait", "--", *job]
    return subprocess.run(cmd, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=300)


def test_the_installed_package_alone_submits_a_run(head, tmp_path):
    """Issue 24: the wheel left out jobs/, so submitting needed the repository. `python -m deblur.jobs submit`,
    from a folder outside it, no code uploaded: the job runs the `deblur` command the cluster has."""
    for i in range(2):
        write = tmp_path / "in" / f"s{i}.png"
        write.parent.mkdir(exist_ok=True)
        write.write_bytes(encode(textured(24, 24, 3, seed=i), "png"))
    env = {k: v for k, v in head["env"].items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "deblur.jobs", "submit", "--address", head["address"], "--id",
                           f"wheel-{time.time_ns()}", "--wait", "--", "deblur", "degrade", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--degradation", "gaussian"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "SUCCEEDED" in done.stdout, done.stdout + done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png", "s1.png"]


def test_the_nightly_trigger_retries_a_failed_run_and_never_doubles_one(head, tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(head["token"])  # Ray's standard place; no RAY_AUTH_MODE set
    marker = tmp_path / "failed-once"  # the job fails the first time it runs, then succeeds
    job = [sys.executable, "-c", f"import os, sys; p = {str(marker)!r}; ok = os.path.exists(p); "
                                 "open(p, 'w').close(); print('nightly'); sys.exit(0 if ok else 1)"]
    run = f"deblur-nightly-{time.time_ns()}"
    first = _trigger(head, home, run, *job)
    assert first.returncode == 1 and f"attempt {run}-1 FAILED" in first.stdout, first.stdout + first.stderr
    assert "  nightly" in first.stderr and f"ray job logs --address {head['address']} {run}-1" in first.stderr  # why
    second = _trigger(head, home, run, *job)  # the next trigger retries it
    assert second.returncode == 0 and f"submitted attempt {run}-2 (after 1 failed)" in second.stdout
    assert f"attempt {run}-2 SUCCEEDED" in second.stdout
    third = _trigger(head, home, run, *job)  # done: nothing more
    assert third.returncode == 0 and "not submitting again" in third.stdout
    ids = sorted(j.submission_id for j in _client(head).list_jobs() if (j.submission_id or "").startswith(run))
    assert ids == [f"{run}-1", f"{run}-2"]


def test_without_the_token_the_trigger_says_how_to_get_it(head, tmp_path):
    result = _trigger(head, tmp_path, f"no-token-{time.time_ns()}", "true")
    assert result.returncode == 2 and "ray get-auth-token" in result.stderr, result.stderr[-2000:]


def test_only_the_code_is_uploaded(head):
    """A 110 MB folder of data beside the code (not in .gitignore) does not travel: Ray's request limit is
    100 MB, so the submission would fail if it did."""
    bulky = os.path.join(ROOT, f"photos-{os.getpid()}")
    os.makedirs(bulky)
    try:
        with open(os.path.join(bulky, "big.bin"), "wb") as f:
            f.write(os.urandom(110 * 2**20))  # incompressible
        job = submit(head, "-c", "import os; print('files:', sorted(os.listdir('.')))")
    finally:
        shutil.rmtree(bulky)
    assert job.returncode == 0, job.stderr[-2000:]
    assert "files: ['jobs', 'pyproject.toml', 'src']" in job.stdout, job.stdout[-2000:]


def test_the_readmes_local_head_lines_run_as_written(tmp_path):
    """Issue 24: the README's local head, line by line (on free ports, in a fresh HOME): start it from the
    venv, `deblur run` attaching with no exports, `ray job submit` and `ray job logs` as written, and stop
    that head only (a bystander Ray, this session's, is still there afterwards)."""
    import ray

    from tests.test_readme import BLOCKS

    (block,) = [b for b in BLOCKS if "scripts/local-head.sh start" in b]
    port, dash = _free_port(), _free_port()
    others = " ".join(f"--{name}={_free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
        "ray-client-server-port", "node-manager-port", "object-manager-port"))
    photos = tmp_path / "photos"
    for i in range(2):
        (photos / "day1").mkdir(parents=True, exist_ok=True)
        (photos / "day1" / f"p{i}.png").write_bytes(encode(textured(40, 48, 3, seed=i), "png"))
    lines = [ln.split("  #")[0] for ln in block.replace("\\\n", " ").splitlines() if ln.strip()]
    script = "\n".join(lines).replace("$PWD", str(tmp_path)).replace("6379", str(port)).replace("8265", str(dash))
    script = script.replace(f"local-head.sh start {port} {dash}", f"local-head.sh start {port} {dash} -- {others}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(HOME=str(tmp_path))
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    finally:
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "local-head.sh"), "stop", str(port)], env=env,
                       capture_output=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "2 done, 0 skipped, 0 failed" in out and "0 done, 2 skipped, 0 failed" in out, out[-4000:]  # run, then job
    assert f"stopped the head on port {port}" in out
    assert not _noted(port)  # nor Ray's note of it, which a plain ray.init() would follow
    if ray.is_initialized():  # the session's own Ray, when a test started it, is untouched
        assert ray.cluster_resources().get("CPU", 0) > 0
