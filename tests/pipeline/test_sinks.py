"""deblur.pipeline.sinks: Parquet parts and the manifest hold each input once, whatever is retried."""

from datetime import datetime, timezone

import numpy as np
import pyarrow.parquet as pq

from deblur.pipeline import lease, rows, sinks
from deblur.pipeline.rows import pack
from deblur.pipeline.stages import write_batch
from tests.conftest import textured


def _batch(paths):
    images = [textured(12, 16, 3, seed=i) for i in range(len(paths))]
    packed = [pack(im) for im in images]
    return {"path": np.array(paths), "output": np.array([""] * len(paths)), "version": np.array(["1:1"] * len(paths)),
            "skip": np.array([False] * len(paths)), "error": np.array([""] * len(paths)),
            "pixels": [p["pixels"] for p in packed], "shape": [p["shape"] for p in packed],
            "dtype": [p["dtype"] for p in packed], "sharpness_before": np.zeros(len(paths)),
            "exif": [b""] * len(paths), "icc": [b""] * len(paths)}


def test_a_retried_batch_replaces_its_part_instead_of_adding_one(tmp_path):
    out = str(tmp_path / "out")
    batch = _batch(["/in/a.png", "/in/b.png"])
    for _ in range(2):  # Ray retries a batch whose actor died after writing
        write_batch(batch, "parquet", out, "run1", "seed-x", "n0")
    sinks.compact_manifest(out, "run1")
    assert sinks.commit_parquet(out, "n0") == 0
    assert sorted(pq.read_table(out, columns=["path"])["path"].to_pylist()) == ["/in/a.png", "/in/b.png"]


def test_commit_drops_rows_the_manifest_does_not_point_to(tmp_path):
    out = str(tmp_path / "out")
    first = sinks.write_parquet_part(out, [_row("/in/x.png"), _row("/in/y.png")], "n0")
    second = sinks.write_parquet_part(out, [_row("/in/y.png")], "n0")  # y redone (changed since)
    orphan = sinks.write_parquet_part(out, [_row("/in/z.png")], "n0")  # written, never recorded
    now = datetime.now(timezone.utc)
    sinks.write_manifest_part(out, "r", [
        {"source": s, "output": o, "status": "done", "error": "", "model": "m", "run": "r", "time": now, "version": "1",
         "format": "parquet"} for s, o in (("/in/x.png", first), ("/in/y.png", second))])
    assert sinks.commit_parquet(out, "n0") == 2
    assert sorted(pq.read_table(out, columns=["path"])["path"].to_pylist()) == ["/in/x.png", "/in/y.png"]
    assert not (tmp_path / "out" / orphan.rsplit("/", 1)[1]).exists()


def _row(path):
    return {"path": path, "image": b"png", "format": "png", "width": 1, "height": 1, "channels": 3, "model": "m",
            "sharpness_before": 0.0, "sharpness_after": 0.0, "run": "r"}


def _lease_file(out, **holder):
    import json
    import time

    path = out / "_manifest" / "_lease.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": "other", "host": "elsewhere", "pid": 1, "time": time.time(), **holder}))
    return path


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    import pytest

    out = tmp_path / "out"
    _lease_file(out)
    with pytest.raises(ValueError, match="is in use by run other on elsewhere"):
        with lease.Lease(str(out), "mine"):
            pass


def test_a_stale_or_dead_holders_lease_is_taken_over_and_released(tmp_path):
    import time

    out = tmp_path / "out"
    for holder in ({"time": time.time() - 3600}, {"host": __import__("socket").gethostname(), "pid": 2**22 + 7}):
        held = _lease_file(out, **holder)
        with lease.Lease(str(out), "mine"):
            assert '"run": "mine"' in held.read_text()
        assert not held.exists()


def test_every_parquet_column_is_documented_in_the_readme():
    import os
    import re

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")) as f:
        readme = f.read()
    table = readme[readme.index("`--format parquet` writes one row per input"):]
    table = table[:table.index("\n- ")]
    documented = {name for cell in re.findall(r"^\s*\| (`[^|]+) \|", table, re.M) for name in re.findall(r"`(\w+)`", cell)}
    assert documented == set(rows.PARQUET_SCHEMA.names)
