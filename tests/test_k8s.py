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
MANIFESTS = sorted(p for p in glob.glob(os.path.join(ROOT, "jobs", "k8s", "base", "*.yaml"))
                   if not p.endswith("kustomization.yaml"))
KUSTOMIZATIONS = sorted(os.path.relpath(os.path.dirname(p), ROOT) for p in glob.glob(
    os.path.join(ROOT, "jobs", "k8s", "**", "kustomization.yaml"), recursive=True))
OVERLAYS = ("eks", "gke", "aks")


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
def schemas() -> dict[str, jsonschema.protocols.Validator]:
    """kind -> a validator of the v1 openAPIV3Schema of its CRD, made strict. The schema is checked against
    its metaschema once, here (``jsonschema.validate`` would check it again at every call: seconds each)."""
    out = {}
    for path in glob.glob(os.path.join(ROOT, "tests", "schemas", "kuberay", "*.yaml.gz")):
        with gzip.open(path, "rt") as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's: ~10x faster
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = strict(version["schema"]["openAPIV3Schema"])
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        out[crd["spec"]["names"]["kind"]] = cls(schema)
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
    schemas[manifest["kind"]].validate(manifest)


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
    job = _load(os.path.join(ROOT, "jobs", "k8s", "base", "rayjob-train.yaml"))["spec"]["entrypoint"]
    realistic = makefile_variable("REALISTIC")
    assert f"--degradation {realistic}" in job and "--model unet" in job and "--gpu" in job
    assert "--init /home/ray/deblur/deblur/assets/default" in job


@pytest.mark.parametrize("field, value", [("schedule", "0 2 * * *"), ("entrypoint", 42)])
def test_a_wrong_field_fails(schemas, field, value):
    manifest = _load(os.path.join(ROOT, "jobs", "k8s", "base", "rayjob-train.yaml"))
    manifest["spec"][field] = value  # a RayJob has no schedule (that is a RayCronJob); entrypoint is a string
    with pytest.raises(jsonschema.ValidationError):
        schemas["RayJob"].validate(manifest)



def _groups(manifest: dict) -> tuple[dict, list[dict]]:
    job = manifest["spec"]["jobTemplate"] if manifest["kind"] == "RayCronJob" else manifest["spec"]
    return job, [job["rayClusterSpec"]["headGroupSpec"], *job["rayClusterSpec"]["workerGroupSpecs"]]


def _render(folder: str) -> list[dict]:
    """``kubectl kustomize FOLDER``: what ``kubectl apply -k`` would send."""
    import shutil
    import subprocess

    if not shutil.which("kubectl"):
        pytest.skip("kubectl (its kustomize) is not installed")
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, folder)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_every_overlay_is_there():
    assert {f"jobs/k8s/overlays/{c}" for c in OVERLAYS} | {"jobs/k8s", "jobs/k8s/base"} == set(KUSTOMIZATIONS)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_kustomization_renders_manifests_that_validate(schemas, folder):
    """Issue 24: GPU nodes are tainted on every managed Kubernetes; each cloud's overlay gives the GPU group
    (only it) that cloud's toleration and node selector, and what it renders still validates strictly."""
    docs = _render(folder)
    assert sorted(d["kind"] for d in docs) == ["RayCronJob", "RayJob"]
    for manifest in docs:
        schemas[manifest["kind"]].validate(manifest)
        for group in _groups(manifest)[1]:
            pod = group["template"]["spec"]
            gpu = any("nvidia.com/gpu" in c["resources"]["limits"] for c in pod["containers"])
            overlay = folder.startswith("jobs/k8s/overlays/")
            assert bool(pod.get("tolerations")) == bool(pod.get("nodeSelector")) == (gpu and overlay), (folder, group)


@pytest.mark.parametrize("path", MANIFESTS, ids=os.path.basename)
def test_runs_have_a_deadline_and_every_container_requests_what_it_is_limited_to(path):
    """Issue 24: a hung night held GPU nodes for ever; requests equal limits (the pods' memory is measured)."""
    manifest = _load(path)
    job, groups = _groups(manifest)
    assert 3600 <= job["activeDeadlineSeconds"] <= 24 * 3600
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            assert container["resources"]["requests"] == container["resources"]["limits"], group.get("groupName")


def test_the_readme_pins_the_kuberay_version_the_manifests_need():
    readme = open(os.path.join(ROOT, "README.md")).read()
    import re

    pinned = re.search(r"helm install kuberay-operator kuberay/kuberay-operator --version (\d+)\.(\d+)\.(\d+)", readme)
    assert pinned and (int(pinned.group(1)), int(pinned.group(2))) >= (1, 6)  # RayCronJob: KubeRay >= 1.6


def test_an_overrunning_night_is_refused_by_the_lease_and_writes_nothing(tmp_path, photo_folder):
    """The nightly's overrun policy (raycronjob-nightly-deblur.yaml): a run that finds the output's lease held
    by a live run exits at once, naming it, before Ray starts."""
    import subprocess
    import sys

    from deblur.pipeline import lease

    out = tmp_path / "out"
    with lease.Lease(str(out), "night-1"):
        night2 = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "deblur.py"), "--input", str(photo_folder),
                                 "--output", str(out)], capture_output=True, text=True, timeout=120,
                                env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
        held = sorted(p.name for p in out.rglob("*"))
    assert night2.returncode == 2 and "in use by run night-1" in night2.stderr, night2.stderr[-2000:]
    assert "ray: started" not in night2.stderr and held == ["_lease.json", "_manifest"]
