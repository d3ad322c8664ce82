"""Every KubeRay manifest under jobs/k8s/ validates against KubeRay's CRDs (tests/schemas/kuberay/), strictly:
an unknown field is an error, as with ``kubectl apply --validate=strict`` (the API server would otherwise drop
it silently, e.g. a ``schedule`` on a RayJob)."""

from __future__ import annotations

import glob
import gzip
import os

import jsonschema
import pytest
import yaml

from tests.conftest import makefile_variable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = sorted(p for p in glob.glob(os.path.join(ROOT, "jobs", "k8s", "*.yaml"))
                   if not p.endswith("kustomization.yaml"))


def strict(schema: dict) -> dict:
    """The schema with ``additionalProperties: false`` wherever it lists properties and does not say to keep
    unknown fields."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(s) for s in schema]
    return schema


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    """kind -> the v1 openAPIV3Schema of its CRD, made strict."""
    out = {}
    for path in glob.glob(os.path.join(ROOT, "tests", "schemas", "kuberay", "*.yaml.gz")):
        with gzip.open(path, "rt") as f:
            crd = yaml.safe_load(f)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        out[crd["spec"]["names"]["kind"]] = strict(version["schema"]["openAPIV3Schema"])
    return out


def _load(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def test_there_is_a_training_job_and_a_nightly_schedule():
    kinds = {_load(p)["kind"]: p for p in MANIFESTS}
    assert {"RayJob", "RayCronJob"} <= set(kinds)


@pytest.mark.parametrize("path", MANIFESTS, ids=os.path.basename)
def test_manifest_validates_against_its_crd(schemas, path):
    manifest = _load(path)
    assert manifest["apiVersion"] == "ray.io/v1"
    jsonschema.validate(manifest, schemas[manifest["kind"]])


@pytest.mark.parametrize("path", MANIFESTS, ids=os.path.basename)
def test_clusters_autoscale_use_the_built_image_and_token_auth(path):
    manifest = _load(path)
    job = manifest["spec"]["jobTemplate"] if manifest["kind"] == "RayCronJob" else manifest["spec"]
    cluster = job["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["authOptions"]["mode"] == "token"
    assert job["backoffLimit"] >= 1  # a failed run is retried
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert images == {makefile_variable("IMAGE")}  # what `make image` builds (kustomize renames it)
    assert any(g["maxReplicas"] > g["minReplicas"] for g in cluster["workerGroupSpecs"])
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for g in cluster["workerGroupSpecs"]
               for c in g["template"]["spec"]["containers"])


def test_the_training_job_trains_the_default_models_recipe():
    job = _load(os.path.join(ROOT, "jobs", "k8s", "rayjob-train.yaml"))["spec"]["entrypoint"]
    realistic = makefile_variable("REALISTIC")
    assert f"--degradation {realistic}" in job and "--model unet" in job and "--gpu" in job
    assert "--init /home/ray/deblur/deblur/assets/default" in job


@pytest.mark.parametrize("field, value", [("schedule", "0 2 * * *"), ("entrypoint", 42)])
def test_a_wrong_field_fails(schemas, field, value):
    manifest = _load(os.path.join(ROOT, "jobs", "k8s", "rayjob-train.yaml"))
    manifest["spec"][field] = value  # a RayJob has no schedule (that is a RayCronJob); entrypoint is a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schemas["RayJob"])

