"""Shared fixtures: one real local Ray cluster and one real S3 protocol server (moto) per test session,
and small images made on the fly."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import cv2
import numpy as np
import pytest


def makefile_variable(name: str) -> str:
    """The value the Makefile gives ``name`` (``NAME := ...`` or ``NAME ?= ...``)."""
    import re

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Makefile")) as f:
        return re.search(rf"^{name} [?:]?= (.+)$", f.read(), re.M).group(1).strip()


def pytest_configure(config) -> None:
    """Ray's files (sessions, sockets, and its note of "the cluster on this machine" that a plain ``ray.init()``
    follows) in a folder of this test process's own, set before any Ray starts and inherited by every command a
    test runs: no test attaches to a head the user runs here, nor to a parallel test worker's."""
    config._deblur_ray_tmpdir = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="deblur-ray-")
    # the tests' clusters are local, as a command's own is: no node is ever drained, so no preemption watcher
    # (a process per training run; deblur.train.trainer turns it off on a command's own local cluster alike)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # Ray Train's controller moves on at its polls (deblur sets 0.5 s; Ray's default is 2 s): a tenth of a second
    # on an idle test cluster takes about a second off each of the suite's training runs
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    # deblur's cache (public models, converted models) in that folder too: nothing written to the user's home
    os.environ["DEBLUR_CACHE"] = os.path.join(config._deblur_ray_tmpdir, "deblur-cache")


def pytest_unconfigure(config) -> None:
    """That folder goes at the end (each session's Ray has stopped by then)."""
    shutil.rmtree(config._deblur_ray_tmpdir, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run Ray (the session's cluster, a head, or a command starting its own) first, the quick ones
    after, each in its order: parallel workers (``make test`` runs two) then end together, rather than one
    finishing a long test alone."""
    items.sort(key=lambda item: not ({"ray_cluster", "head"} & set(item.fixturenames)
                                     or item.get_closest_marker("ray")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server on a fixed loopback port; it can be stopped and started again (an outage), and keeps
    its buckets meanwhile (moto's state lives in this process)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """The S3 protocol server, reached through the standard AWS variables (as users configure it).

    Set before Ray starts, so Ray workers inherit the same endpoint and credentials.
    """
    server = S3Server()
    server.start()
    os.environ.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server) -> str:
    """The S3 server's URL."""
    return s3_server.url


@pytest.fixture(scope="session")
def ray_cluster(s3_endpoint):
    """One local Ray cluster for the session (4 logical CPUs: Ray Data and Ray Train both need room); always
    a new one, never a head the user runs here."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="WARNING", configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def bucket(s3_endpoint, request):
    """A fresh, empty bucket; returns its ``s3://`` URL."""
    import fsspec

    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40]
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    if fs.exists(name):
        fs.rm(name, recursive=True)
    fs.mkdir(name)
    return f"s3://{name}"


def textured(h: int, w: int, channels: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """A deterministic image with edges and texture (smooth noise plus rectangles), HW or HWC."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((max(2, h // 6), max(2, w // 6), channels)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
    for _ in range(6):
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[y : y + h // 4, x : x + w // 4] = rng.random(channels)
    img = np.clip(img, 0, 1)
    top = 65535 if dtype == np.uint16 else 255
    out = np.rint(img * top).astype(dtype)
    return out[..., 0] if channels == 1 else out


def write_image(path, img: np.ndarray) -> str:
    """Write RGB(A)/grey ``img`` to ``path`` (format from the extension); returns the path as str."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(path, img)
    return path


@pytest.fixture(scope="session")
def seed_checkpoint(tmp_path_factory) -> str:
    """An untrained ``seed`` model (fixed init) saved as a checkpoint: fast, and a real network."""
    import torch

    from deblur.core import checkpoint, models

    path = tmp_path_factory.mktemp("ck") / "seed"
    torch.manual_seed(0)
    checkpoint.save(str(path), models.build("seed"), "seed", {"epoch": 1, "metrics": {"val_psnr": 1.0}})
    return str(path)


def random_model(name: str, channels: int = 3, seed: int = 0):
    """The registered model ``name`` in eval mode with random weights far from the identity (a fresh
    U-Net is the identity: its last layer starts at zero), so that a comparison of two outputs can fail."""
    import torch

    from deblur.core import models

    torch.manual_seed(seed)
    model = models.build(name, channels=channels).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        x = torch.rand(1, channels, 24, 24)
        assert (model(x) - x).abs().mean() > 0.01, f"{name} is still close to the identity"
    return model


@pytest.fixture
def photo_folder(tmp_path):
    """A small folder of sharp images: mixed sizes, grey and colour, nested."""
    root = tmp_path / "photos"
    for i, (h, w, c) in enumerate([(48, 64, 3), (40, 40, 1), (64, 48, 3), (36, 52, 3), (56, 56, 1), (44, 60, 3)]):
        write_image(root / ("sub" if i % 2 else "") / f"img{i}.png", textured(h, w, c, seed=i))
    return root
