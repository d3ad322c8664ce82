"""deblur.pipeline.stages without Ray: the fused stage goes image by image (small images share model
calls), every record says when it was written and in what precision the model ran."""

import os

import numpy as np

from deblur.core.image import encode
from deblur.pipeline import sinks
from deblur.pipeline.rows import RECORD_KEYS
from deblur.pipeline.stages import FusedStage, decode_batch
from tests.conftest import textured


def _inputs(tmp_path, sizes):
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"in{i}.png"
        path.write_bytes(encode(textured(h, w, 3, seed=i), "png"))
        paths.append(str(path))
    n = len(paths)
    return {"path": np.array(paths), "output": np.array([str(tmp_path / "out" / f"o{i}.png") for i in range(n)]),
            "version": np.array([f"{os.path.getsize(p)}:1" for p in paths]), "skip": np.array([False] * n), "error": np.array([""] * n)}


def test_the_fused_stage_restores_small_images_together_and_writes_chunk_by_chunk(tmp_path, seed_checkpoint):
    out = str(tmp_path / "out")
    sink = {"fmt": "png", "output": out, "run": "r1", "model_id": "seed-x"}
    stage = FusedStage(seed_checkpoint, False, {"precision": "fp32", "engine": "eager"}, sink, {}, budget=3 * 32 * 32)
    calls = []
    stage.restorer.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    records = stage(_inputs(tmp_path, [(32, 32)] * 3 + [(64, 48)] + [(32, 32)] * 2))
    assert tuple(records) == RECORD_KEYS and records["status"] == ["done"] * 6
    assert set(records["precision"]) == {"fp32 (eager)"}  # eager: its calls are counted with a forward hook
    # chunks of the budget's pixels: three small images, the large one alone, the last two; each chunk is one
    # model call (the seed model is grey: each image gives 3 planes)
    assert calls == [9, 3, 6]
    written = sorted(set(records["written"]))
    assert len(written) == 3 and written[0] < written[1] < written[2]
    manifest = sinks.read_manifest(out).to_pylist()
    assert sorted(r["time"].timestamp() for r in manifest) == sorted(records["written"])
    # each chunk: its outputs announced ("writing"), then its records
    assert len(list((tmp_path / "out" / "_manifest").glob("part-*.parquet"))) == 6


def test_a_batch_with_nothing_to_restore_never_loads_the_model(tmp_path, seed_checkpoint):
    """A nightly run over a bucket with nothing new: the actor loads no model (no torch, no GPU memory)."""
    sink = {"fmt": "png", "output": str(tmp_path / "out"), "run": "r1", "model_id": "seed-x"}
    stage = FusedStage(str(tmp_path / "no-checkpoint-here"), False, {}, sink, {})  # loading it would fail
    batch = _inputs(tmp_path, [(32, 32)] * 3)
    batch["skip"] = np.array([True, True, False])
    batch["error"] = np.array(["", "", "listing: unreadable"])
    records = stage(batch)
    assert records["status"] == ["skipped", "skipped", "failed"] and records["precision"] == [""] * 3
    assert "restorer" not in vars(stage)  # never loaded
    stage = FusedStage(seed_checkpoint, False, {"precision": "fp32"}, sink, {})
    assert stage(_inputs(tmp_path, [(32, 32)]))["status"] == ["done"] and "restorer" in vars(stage)


def test_the_model_stage_runs_as_many_threads_as_ray_gave_it_cpus(tmp_path, seed_checkpoint, monkeypatch):
    """Ray tells an actor its CPUs in OMP_NUM_THREADS, which torch reads only at import: in an actor whose
    torch was imported earlier (by a setup hook, as bench/throughput.py's), two actors on two cores ran two
    threads each and the pipeline fell to 0.6-0.8x the bare loop."""
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    monkeypatch.setenv("OMP_NUM_THREADS", str(wanted))
    try:
        stage = FusedStage(seed_checkpoint, False, {"precision": "fp32"}, {}, {})
        assert stage.restorer is not None and torch.get_num_threads() == wanted
        monkeypatch.setenv("OMP_NUM_THREADS", "512")  # a cluster that claims more CPUs than the machine has
        stage = FusedStage(seed_checkpoint, False, {"precision": "fp32"}, {}, {})
        assert stage.restorer is not None and torch.get_num_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_the_input_is_measured_only_for_a_table_output(tmp_path):
    """Sharpness goes in a Parquet row only: for image files it is not measured (a Laplacian per image)."""
    batch = _inputs(tmp_path, [(32, 32), (48, 40)])
    measured = decode_batch(batch, measure=True)["sharpness_before"]
    assert all(s > 0 for s in measured)
    assert decode_batch(batch, measure=False)["sharpness_before"] == [0.0, 0.0]
