"""Which Ray a command uses (attach or start), and that a killed command leaves no Ray process behind."""

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from deblur import reaper
from tests.conftest import textured, write_image

pytestmark = pytest.mark.ray  # starts Ray of its own: run first (tests/conftest.py)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has exited; this machine's init may not reap it)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_killed_command_leaves_no_ray_process_behind(tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(120):  # one at a time: far more than start-up leaves time for before the kill
        write_image(src / f"img{i:03d}.png", textured(128, 128, 3, seed=i))
    env = {**os.environ, "RAY_ADDRESS": "local"}  # its own local cluster, not the tests' one
    proc = subprocess.Popen([sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input",
                             str(src), "--output", str(out), "--batch-size", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(out.glob("*.png")):
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()
    descendants = psutil.Process(proc.pid).children(recursive=True)
    names = {p.name() for p in _alive(descendants)}
    assert "ray::DashboardAgent" in names and "raylet" in names  # a real local cluster was started
    assert not [n for n in names if n.startswith("ray-dashboard")], names  # without Ray's dashboard (README)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, as the OOM killer would
    proc.wait()
    deadline = time.time() + reaper.GRACE_S + 30
    while time.time() < deadline and _alive(descendants):
        time.sleep(0.5)
    assert not _alive(descendants), [p.name() for p in _alive(descendants)]
    said = proc.stderr.read()
    size = re.search(r"ray: started a local cluster \((\d+) CPUs", said)
    assert size, said[-2000:]  # and its one actor takes all of them
    assert f"ray: 1 model actor, {size[1]} CPU" in said and "each (the local cluster is this run's)" in said


def test_a_command_killed_while_ray_starts_leaves_nothing_behind(tmp_path, seed_checkpoint):
    """Finding 10 of issue 19: killed during Ray's start-up (before the watcher used to start), its dashboard
    and runtime-env agents were still alive 30 s later."""
    write_image(tmp_path / "in" / "a.png", textured(32, 32, 3))
    env = {**os.environ, "RAY_ADDRESS": "local"}
    proc = subprocess.Popen([sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input",
                             str(tmp_path / "in"), "--output", str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, psutil.Process] = {}
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        for p in psutil.Process(proc.pid).children(recursive=True):
            seen.setdefault(p.pid, p)
        if any(p.name() == "raylet" for p in _alive(list(seen.values()))):
            break  # Ray is starting: the driver is inside ray.init
        time.sleep(0.05)
    assert proc.poll() is None and any(p.name() == "raylet" for p in seen.values())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + reaper.GRACE_S + 30
    while time.time() < deadline:
        for p in _alive(list(seen.values())):  # what the survivors start meanwhile counts too
            try:
                seen.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        if not _alive(list(seen.values())):
            break
        time.sleep(0.5)
    assert not _alive(list(seen.values())), [p.name() for p in _alive(list(seen.values()))]


def test_a_command_attaches_to_a_running_cluster_and_says_so(ray_cluster, tmp_path, seed_checkpoint, photo_folder):
    address = ray_cluster.get_runtime_context().gcs_address
    result = subprocess.run([sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input",
                             str(photo_folder), "--output", str(tmp_path / "out")], capture_output=True, text=True,
                            env={**os.environ, "RAY_ADDRESS": address}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ray: attached to the cluster at {address}" in result.stderr
    assert "started a local cluster" not in result.stderr
    assert "ray: 1 model actor, 1 CPU each (the cluster is shared; --worker-cpus N takes more)" in result.stderr


def test_a_cluster_is_the_commands_own_only_while_it_is_the_local_one_it_started(ray_cluster, monkeypatch):
    """A flag set when ensure_ray started a local cluster stayed set after that cluster was shut down and Ray
    initialised again on a shared cluster, whose CPUs a run would then all take."""
    from deblur import runtime

    assert not runtime.cluster_is_ours()  # the session's cluster: ensure_ray attached (here: found it running)
    monkeypatch.setitem(runtime._STARTED, "address", "127.0.0.1:1")  # one it started earlier, since shut down
    assert not runtime.cluster_is_ours()
    monkeypatch.setitem(runtime._STARTED, "address", ray_cluster.get_runtime_context().gcs_address)
    assert runtime.cluster_is_ours()


def test_the_watcher_kills_what_outlives_the_driver_and_nothing_else():
    """A stand-in driver with a child that ignores its parent's death; an unrelated process is spared."""
    bystander = subprocess.Popen(["sleep", "60"])
    script = ("import os, subprocess, time\n"
              "from deblur import reaper\n"
              "subprocess.Popen(['sleep', '60'])\n"
              "reaper.start(os.getpid())\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    driver = subprocess.Popen([sys.executable, "-c", script],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert driver.stdout.readline().strip() == "ready"
    time.sleep(reaper.POLL_S * 2)  # the watcher has seen the child
    orphan = [p for p in psutil.Process(driver.pid).children() if p.name() == "sleep"]
    assert len(orphan) == 1
    driver.kill()
    driver.wait()
    deadline = time.time() + reaper.GRACE_S + 15
    while time.time() < deadline and _alive(orphan):
        time.sleep(0.2)
    assert not _alive(orphan)
    assert bystander.poll() is None
    bystander.kill()


def test_commands_are_quiet_unless_verbose(ray_cluster, tmp_path, photo_folder, seed_checkpoint):
    """Each epoch line once, no Ray Train/Data chatter, no colour codes in redirected output, a warning for
    images smaller than the patch; a run without the driver's C++ note on its actor pool; -v shows all."""
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}

    def command(args: list[str]) -> str:
        result = subprocess.run([sys.executable, "-m", "deblur.cli", *args], capture_output=True, text=True,
                                env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    def run(flags: list[str]) -> list[str]:
        return [*flags, "run", "--model", seed_checkpoint, "--input", str(photo_folder), "--output",
                str(tmp_path / f"restored{len(flags)}")]

    train = ["train", "--data", str(photo_folder), "--val-data", str(photo_folder), "--output", str(tmp_path / "run"),
             "--epochs", "1", "--batch-size", "2", "--patch-size", "48", "--workers", "1"]
    with ThreadPoolExecutor(3) as pool:  # side by side on the session's cluster
        quiet, ran, loud = pool.map(command, (train, run([]), run(["-v"])))
    assert quiet.count("epoch 1/1 ") == 1, quiet[-3000:]
    assert "\x1b[" not in quiet
    assert "warning: 3 of 6 training images are smaller than --patch-size 48 (the smallest is 52x36)" in quiet
    # Ray Data's warning when a dataset starts at an instant with no CPU free is timing, not chatter: three
    # commands share the session's 4 CPUs (it was this test's failure in CI), so it is kept and left out here
    busy = "currently does not have any available CPUs"
    quiet, ran = ("\n".join(line for line in out.splitlines() if busy not in line) for out in (quiet, ran))
    for noise in ("Reporting training result", "Running Dataset", "Total Progress", "core_worker.cc", "Warning:",
                  "Starting execution of Dataset"):
        assert noise not in quiet, (noise, quiet[-3000:])
        assert noise not in ran, (noise, ran[-3000:])
    assert "6 done, 0 skipped, 0 failed" in ran and "6 done, 0 skipped, 0 failed" in loud, ran[-3000:]
    # issue 39: one line per phase of start-up, in order, each with its time
    phases = [r"6 inputs listed and diffed against the manifest in \d+\.\ds", r"ray: attached to the cluster at \S+ "
              r"\(\d+ CPUs, 0 GPUs\) in \d+\.\ds", r"model: actors up, model loaded, first results in \d+\.\ds"]
    found = [re.search(p, ran) for p in phases]
    assert all(found) and [m.start() for m in found] == sorted(m.start() for m in found), ran[-3000:]
    assert "Starting execution of Dataset" in loud and "DEBUG " in loud  # -v: everything (Ray Train's lines alike)


@pytest.mark.parametrize("command", [["run", "--input", "{src}", "--output", "{out}"],
                                     ["train", "--data", "{src}", "--output", "{out}", "--epochs", "1"]])
def test_gpu_work_on_a_cluster_without_gpus_fails_at_once(ray_cluster, tmp_path, photo_folder, command):
    """Not a wait for ever: the tests' cluster has no GPU and no autoscaler that could add one."""
    args = [a.format(src=photo_folder, out=tmp_path / "out") for a in command]
    result = subprocess.run([sys.executable, "-m", "deblur.cli", *args, "--gpu"], capture_output=True, text=True,
                            env={**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address},
                            timeout=120)
    assert result.returncode == 2 and "--gpu, but the cluster has no GPU" in result.stderr, result.stderr[-2000:]


def test_attaching_passes_storage_settings_to_workers_but_no_secret(ray_cluster):
    script = ("import os, ray\nfrom deblur.runtime import ensure_ray\nensure_ray()\n"
              "env = ray.get(ray.remote(lambda: [os.environ.get(k) for k in "
              "('AWS_REGION', 'AWS_SECRET_ACCESS_KEY')]).remote())\nprint(env)\n")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address, "AWS_REGION": "eu-west-3",
           "AWS_SECRET_ACCESS_KEY": "the-client-s-own"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    region, secret = eval(result.stdout.strip().splitlines()[-1])
    assert region == "eu-west-3" and secret != "the-client-s-own"


def test_the_tests_ray_keeps_its_files_in_a_folder_of_its_own():
    """Ray's note of "the cluster on this machine", which a plain ``ray.init()`` and every ``deblur`` command
    follow, lies in this test process's folder: a head the user started here (noted in /tmp/ray), or a
    parallel test worker's, is never attached to (tests/conftest.py)."""
    from ray._common.utils import get_ray_address_file

    folder = os.environ["RAY_TMPDIR"]
    assert os.path.basename(folder).startswith("deblur-ray-") and os.path.isdir(folder)
    assert get_ray_address_file(None).startswith(folder + os.sep)
