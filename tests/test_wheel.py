"""The distribution: a wheel built from the repository installs and runs ``deblur demo`` without it."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

# one worker runs them all (the wheel is built once, in the repository's build folder); the demo starts Ray of its
# own, so they run first (tests/conftest.py)
pytestmark = [pytest.mark.xdist_group("wheel"), pytest.mark.ray]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), ROOT],
                   check=True, capture_output=True, timeout=300)
    (found,) = glob.glob(str(out / "deblur_ray-*.whl"))
    return found


def test_the_wheel_carries_the_model_and_the_photos(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("deblur/assets/default/model.safetensors", "deblur/assets/default/config.json",
                   "deblur/assets/samples/photos/kodim23.png", "deblur/cli.py", "deblur/jobs.py"):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_wheel_alone_runs_the_demo_from_another_folder(wheel, tmp_path):
    """A fresh venv holding only the wheel (its dependencies reached through a path entry to this venv's
    site-packages, whose editable install of the repository is not loaded: a path entry runs no .pth)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", wheel], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import deblur; print(deblur.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel's, not the repository's
    submit = subprocess.run([str(venv / "bin" / "python"), "-m", "deblur.jobs", "submit", "--help"], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0 and "--attempts" in submit.stdout, submit.stderr  # the wheel alone submits
    demo = subprocess.run([str(venv / "bin" / "deblur"), "demo", "--output", "out"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (elsewhere / "out" / "before_after.png").stat().st_size > 10_000
