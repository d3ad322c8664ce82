"""The Dockerfile: hadolint-clean, sends only the code to the builder, and builds when a container engine
runs here (none does on the development machines: that test is skipped, saying so)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HADOLINT = os.path.join(os.path.dirname(sys.executable), "hadolint")


def _hadolint(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", path], capture_output=True, text=True, timeout=60)


def test_dockerfile_passes_hadolint():
    result = _hadolint(os.path.join(ROOT, "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray:latest\nRUN cd /tmp && pip install torch\n")
    result = _hadolint(str(bad))
    assert result.returncode != 0 and "DL3007" in result.stdout  # the :latest tag


def test_the_image_is_ray_at_the_pinned_version_with_the_package():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pinned = next(ln for ln in f if '"ray[' in ln).split("==")[1].split(".*")[0]
    assert f"ARG RAY_VERSION={pinned}." in dockerfile and "FROM rayproject/ray:${RAY_VERSION}-py311-${CUDA}" in dockerfile
    assert "deblur.load()" in dockerfile  # the shipped model loads in the image


def test_torch_is_built_for_the_base_images_cuda_at_the_locked_version():
    """Issue 24: torch was `>=2.2`, so each build took PyPI's newest (built for another CUDA than the image's)."""
    import re

    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    cuda = re.search(r"^ARG CUDA=(cu\d+)$", dockerfile, re.M).group(1)
    assert "--index-url \"https://download.pytorch.org/whl/${CUDA}\"" in dockerfile and cuda.startswith("cu1")
    assert "grep -o '^torch==[^ ;]*' constraints.txt" in dockerfile and "-c constraints.txt" in dockerfile
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        locked = re.search(r"^torch==([\d.]+) ", f.read(), re.M)
    import torch

    assert locked and torch.__version__.split("+")[0] == locked.group(1)  # CI tests the version the image gets


def test_only_the_code_goes_to_the_builder():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        rules = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*" and set(rules[1:]) >= {"!src/", "!jobs/", "!pyproject.toml"}


def _engine() -> str | None:
    for tool in ("docker", "podman"):
        if shutil.which(tool) and subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0:
            return tool
    return None


def test_the_image_builds_and_loads_the_model():
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine runs on this machine (docker/podman info fails); hadolint only")
    tag = "deblur:test"
    subprocess.run([engine, "build", "-t", tag, ROOT], check=True, timeout=3600)
    out = subprocess.run([engine, "run", "--rm", tag, "deblur", "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "run" in out.stdout
