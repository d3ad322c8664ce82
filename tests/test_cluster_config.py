"""cluster.yaml validates against the schema inside the installed ray package and Ray's own preparation."""

import copy
import os

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import makefile_variable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def config():
    with open(os.path.join(ROOT, "cluster.yaml")) as f:
        return yaml.safe_load(f)


def test_cluster_yaml_validates_and_prepares(config):
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    nodes = prepared["available_node_types"]
    assert nodes["head"]["resources"] == {"CPU": 0}  # the head does no work
    assert nodes["gpu_worker"]["min_workers"] == 0 and nodes["gpu_worker"]["resources"]["GPU"] == 1
    assert all("IamInstanceProfile" in n["node_config"] for n in nodes.values())  # credentials from roles
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["docker"]["image"] == makefile_variable("IMAGE")  # the image `make image` builds
    assert not prepared["setup_commands"]  # everything is in the image
    starts = prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)  # token auth, one shared token
    assert prepared["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}


@pytest.mark.parametrize("where, key, typo", [
    ((), "idle_timeout_minutes", "idle_timeout_minute"),
    (("available_node_types", "gpu_worker"), "min_workers", "min_worker"),
    (("available_node_types", "cpu_worker"), "node_config", "node_confg"),
    (("provider",), "type", "typ"),
])
def test_a_typo_in_a_key_fails(config, where, key, typo):
    node = config
    for step in where:
        node = node[step]
    node[typo] = node.pop(key)
    with pytest.raises((jsonschema.ValidationError, ValueError, KeyError)):
        validate_config(prepare_config(config))

