"""Multi-node on one machine: training workers land one per node and checkpoint to shared storage (the S3
server); the de-blur pipeline's actors spread across nodes. Runs in its own process, beside the session's
Ray, because a Cluster needs a driver of its own."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ray  # starts Ray of its own: run first (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_nodes(s3_endpoint, bucket):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multinode.py"), bucket], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "OK training workers on 2 nodes, model actors on 2 nodes, one download" in result.stdout
