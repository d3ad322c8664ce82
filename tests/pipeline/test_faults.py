"""Fault injection: the driver of `deblur run` killed at seeded random points, then a rerun; nothing may be
lost, duplicated or corrupt. (A model actor killed mid-run: tests/pipeline/test_run.py.)"""

import os
import signal
import subprocess
import sys
import threading
import time

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from deblur.core.config import PipelineConfig
from deblur.cli import one_line
from deblur.core.image import decode, encode
from deblur.pipeline import sinks
from deblur.pipeline.run import run
from tests.conftest import textured, write_image

IMAGES, SEED = 30, 2026


def _kill_after(ray_cluster, src, out, ck, fmt, parts: int) -> None:
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "deblur.cli", "run", "--model", ck, "--input", str(src),
                             "--output", str(out), "--format", fmt, "--batch-size", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "_manifest").glob("part-*.parquet"))) >= parts:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("fmt", ["png", "parquet"])
def test_seeded_driver_kills_lose_nothing_double_nothing_corrupt_nothing(ray_cluster, tmp_path, seed_checkpoint, fmt):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(IMAGES):
        write_image(src / f"img{i:02d}.png", textured(96, 96, 3, seed=i))
    kills = sorted(int(k) for k in np.random.default_rng(SEED).integers(1, IMAGES - 5, size=2))
    for parts in kills:  # each kill after a few more manifest parts than the last one left
        _kill_after(ray_cluster, src, out, seed_checkpoint, fmt, parts)
    s = run(PipelineConfig(input=str(src), output=str(out), model=seed_checkpoint, format=fmt, workers=2))
    assert s.failed == 0
    manifest = {r["source"]: r for r in sinks.read_manifest(str(out)).to_pylist()}
    assert len(manifest) == IMAGES and all(r["status"] == "done" for r in manifest.values())  # 0 lost
    if fmt == "png":
        files = sorted(out.glob("*.png"))
        assert [p.name for p in files] == sorted(p.name for p in src.glob("*.png"))  # 0 lost, 0 doubled
        images = [decode(p.read_bytes()) for p in files]
    else:
        table = pq.read_table(str(out), columns=["path", "image"])
        assert sorted(table["path"].to_pylist()) == sorted(str(p) for p in src.glob("*.png"))  # 0 doubled
        images = [decode(b) for b in table["image"].to_pylist()]
    assert all(im.shape == (96, 96, 3) for im in images)  # 0 corrupt


def test_an_s3_outage_mid_run_loses_nothing_and_a_rerun_completes(ray_cluster, s3_server, bucket, seed_checkpoint):
    """The endpoint dies once some outputs exist and stays down until the run has ended (with failed rows
    or an error naming the cause); back up, a rerun finishes: 0 lost, 0 duplicated, 0 corrupt."""
    fs = fsspec.filesystem("s3")
    root = bucket.removeprefix("s3://")
    for i in range(20):
        fs.pipe(f"{root}/in/img{i:02d}.png", encode(textured(64, 64, 3, seed=i), "png"))
    cfg = PipelineConfig(input=f"{bucket}/in", output=f"{bucket}/out", model=seed_checkpoint, workers=2, batch_size=1)

    def outage():
        while len(fs.find(f"{root}/out", maxdepth=1)) < 4:
            fs.invalidate_cache()
            time.sleep(0.05)
        s3_server.stop()

    killer = threading.Thread(target=outage)
    killer.start()
    t0 = time.time()
    try:
        first = run(cfg)
        assert first.failed > 0 and first.done < 20  # the outage shows as failed rows...
    except Exception as e:  # ...or as a whole-run error that names its cause
        assert "connect" in one_line(e).lower(), one_line(e)
    finally:
        killer.join()
        s3_server.start()
    print(f"run ended {time.time() - t0:.0f} s after it started, outage included")
    # its actors are gone, CPUs and all, at once: before, the failed run's frames (kept by its exception until
    # the garbage collector came) held them, and a rerun whose actors need every CPU waited forever
    deadline = time.time() + 20
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]
    fs.invalidate_cache()
    again = run(cfg)
    assert again.failed == 0 and again.done + again.skipped == 20
    manifest = {r["source"]: r for r in sinks.read_manifest(cfg.output).to_pylist()}
    assert len(manifest) == 20 and all(r["status"] == "done" for r in manifest.values())  # 0 lost
    outputs = sorted(p for p in fs.find(f"{root}/out") if p.endswith(".png"))
    assert [p.rsplit("/", 1)[1] for p in outputs] == [f"img{i:02d}.png" for i in range(20)]  # 0 doubled
    assert all(decode(fs.cat(p)).shape == (64, 64, 3) for p in outputs)  # 0 corrupt
    fs.invalidate_cache()
    assert not [p for p in fs.find(f"{root}/out") if p.endswith(".tmp")]  # temporaries removed or swept
