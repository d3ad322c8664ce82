import io
import os
import re

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from deblur.core.config import PIPELINE_FORMATS, PipelineConfig
from deblur.core.image import decode, encode
from deblur.pipeline import sinks
from deblur.pipeline.run import run
from tests.conftest import textured, write_image
from tests.core.test_image import bomb_png


def _run(src, out, ck, fmt="png", **kw):
    """One run in fp32 on eager PyTorch with one model actor (each actor is a process importing torch: tests
    that need two ask for them)."""
    kw = {"precision": "fp32", "engine": "eager", "workers": 1, "batch_size": 2, **kw}
    return run(PipelineConfig(input=str(src), output=str(out), model=ck, format=fmt, **kw))


def _manifest(out) -> dict[str, dict]:
    return {r["source"]: r for r in sinks.read_manifest(str(out)).to_pylist()}


def _read(fs, path):
    return decode(fs.cat_file(path))


# every format with the stages fused (the default); split stages once, into the format with a sink of its own
@pytest.mark.parametrize("fmt, arrangement", [(f, "fused") for f in PIPELINE_FORMATS] + [("parquet", "split")])
def test_local_folder_every_input_accounted_for_and_incremental(ray_cluster, photo_folder, tmp_path,
                                                                 seed_checkpoint, fmt, arrangement):
    write_image(photo_folder / "rgba.png", textured(30, 26, 4))
    write_image(photo_folder / "deep.png", textured(22, 34, 3, dtype=np.uint16))
    out = tmp_path / "out"
    writers = 2 if fmt in ("png", "parquet") else 1  # two writing at once into each kind of sink (jpg and webp: png's)
    first = _run(photo_folder, out, seed_checkpoint, fmt, stages=arrangement, workers=writers)
    assert (first.done, first.skipped, first.failed) == (8, 0, 0)
    assert 0 < first.startup < first.seconds and 0 < first.steady_images < 8  # throughput after the first result
    assert re.search(r"in [\d.]+s \(start-up [\d.]+s, then [\d.]+ images/s, [\d.]+ Mpx/s; model in fp32 \(eager\)\)",
                     first.line())  # _run pins fp32: the seed checkpoint's outputs are compared exactly below
    inputs = sorted(str(p) for p in photo_folder.rglob("*.png"))
    manifest = _manifest(out)
    assert sorted(manifest) == inputs and {r["status"] for r in manifest.values()} == {"done"}
    fs = fsspec.filesystem("file")
    if fmt == "parquet":
        table = pq.read_table(str(out), columns=["path", "image", "width", "height", "channels", "model",
                                                 "sharpness_before", "sharpness_after"]).to_pylist()
        assert sorted(r["path"] for r in table) == inputs
        for r in table:
            img = decode(r["image"])
            src = _read(fs, r["path"])
            assert img.shape == src.shape and (r["height"], r["width"]) == src.shape[:2]
            assert r["sharpness_before"] > 0 and r["model"].startswith("seed-")
    else:
        for src in inputs:
            rel = os.path.splitext(os.path.relpath(src, photo_folder))[0] + "." + fmt
            a, b = _read(fs, src), _read(fs, str(out / rel))
            assert b.shape[:2] == a.shape[:2]
            if fmt == "png":  # webp has no grey and jpg no alpha; png keeps everything, 16-bit too
                assert b.shape == a.shape and b.dtype == a.dtype

    again = _run(photo_folder, out, seed_checkpoint, fmt, stages=arrangement)
    assert (again.done, again.skipped, again.failed) == (0, 8, 0)
    for i in range(3):
        write_image(photo_folder / "new" / f"n{i}.png", textured(20, 20, 3, seed=10 + i))
    third = _run(photo_folder, out, seed_checkpoint, fmt, stages=arrangement)
    assert (third.done, third.skipped) == (3, 8)
    assert len(_manifest(out)) == 11
    if fmt == "parquet":  # never duplicates
        paths = pq.read_table(str(out), columns=["path"])["path"].to_pylist()
        assert len(paths) == len(set(paths)) == 11


def test_s3_input_and_output(ray_cluster, bucket, seed_checkpoint):
    fs = fsspec.filesystem("s3")
    root = bucket.removeprefix("s3://")
    for i, (h, w, c) in enumerate([(30, 40, 3), (32, 32, 1), (25, 45, 4)]):
        fs.pipe(f"{root}/in/d{i % 2}/img{i}.png", encode(textured(h, w, c, seed=i), "png"))
    for fmt in ("png", "parquet"):
        out = f"{bucket}/out-{fmt}"
        s = _run(f"{bucket}/in", out, seed_checkpoint, fmt)
        assert (s.done, s.failed) == (3, 0)
        fs.invalidate_cache()
        assert len(_manifest(out)) == 3 and all(k.startswith(f"{bucket}/in/") for k in _manifest(out))
        if fmt == "png":
            assert sorted(fs.find(f"{root}/out-png/d0")) == [f"{root}/out-png/d0/img0.png", f"{root}/out-png/d0/img2.png"]
            assert _read(fs, f"{root}/out-png/d0/img2.png").shape == (25, 45, 4)
        assert _run(f"{bucket}/in", out, seed_checkpoint, fmt).skipped == 3


def test_bad_inputs_get_error_rows_and_the_run_goes_on(ray_cluster, tmp_path, seed_checkpoint):
    src = tmp_path / "mixed"
    write_image(src / "good.png", textured(40, 50, 3))
    write_image(src / "grey.png", textured(30, 30, 1))
    write_image(src / "rgba.png", textured(30, 34, 4))
    write_image(src / "deep.png", textured(20, 24, 3, dtype=np.uint16))
    (src / "empty.png").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    (src / "truncated.png").write_bytes((src / "good.png").read_bytes()[:200])
    write_image(src / "huge.png", np.zeros((1100, 1000), np.uint8))
    (src / "bomb.png").write_bytes(bomb_png(20_000, 20_000))
    s = _run(src, tmp_path / "out", seed_checkpoint, max_megapixels=1.0)
    assert (s.done, s.failed) == (4, 6)
    split = _run(src, tmp_path / "out-split", seed_checkpoint, stages="split")  # the default limit
    assert (split.done, split.failed) == (5, 5)
    assert _manifest(tmp_path / "out-split").keys() == _manifest(tmp_path / "out").keys()
    manifest = _manifest(tmp_path / "out")
    errors = {os.path.basename(k): r["error"] for k, r in manifest.items() if r["status"] == "failed"}
    assert sorted(errors) == ["bomb.png", "corrupt.jpg", "empty.png", "huge.png", "notes.txt", "truncated.png"]
    assert "empty file" in errors["empty.png"] and "too large" in errors["huge.png"]
    assert "too large" in errors["bomb.png"]
    assert "unsupported file type '.txt'" in errors["notes.txt"]
    assert all(errors.values())


@pytest.mark.parametrize("fmt", PIPELINE_FORMATS)
def test_exif_and_colour_profile_pass_through_and_orientation_is_applied(ray_cluster, tmp_path, seed_checkpoint, fmt):
    from PIL import Image, ImageCms

    img = Image.fromarray(textured(30, 50, 3))
    exif = img.getexif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "DeblurCam", "Model 1", "2026:11:30 08:00:00"  # make, model, date
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any profile that is not sRGB
    (tmp_path / "in").mkdir()
    img.save(tmp_path / "in" / "rotated.jpg", exif=exif, icc_profile=icc, quality=95)
    _run(tmp_path / "in", tmp_path / "out", seed_checkpoint, fmt)
    if fmt == "parquet":
        (row,) = pq.read_table(str(tmp_path / "out")).to_pylist()
        assert row["icc_profile"] == icc
        encoded = row["image"]
    else:
        encoded = (tmp_path / "out" / f"rotated.{fmt}").read_bytes()
    assert decode(encoded).shape == (50, 30, 3)  # upright
    with Image.open(io.BytesIO(encoded)) as out:
        written = out.getexif()
        assert out.info.get("icc_profile") == icc
        assert (written[0x010F], written[0x0110], written[0x0132]) == ("DeblurCam", "Model 1", "2026:11:30 08:00:00")
        assert written.get(0x0112, 1) == 1  # applied to the pixels, so no longer asked of the viewer


def test_memory_output_is_refused(seed_checkpoint, photo_folder):
    with pytest.raises(ValueError, match="memory://"):
        run(PipelineConfig(input=str(photo_folder), output="memory://out", model=seed_checkpoint))


def test_parquet_dataset_with_an_image_column(ray_cluster, tmp_path, seed_checkpoint):
    import pyarrow as pa

    images = [textured(20, 30, 3, seed=i) for i in range(3)]
    table = pa.table({"path": ["s3://cam/a.jpg", "s3://cam/sub/b.png", "../../evil.png"],
                      "image": [encode(im, "png") for im in images]})
    (tmp_path / "src").mkdir()
    pq.write_table(table, tmp_path / "src" / "data.parquet")
    s = run(PipelineConfig(input=str(tmp_path / "src"), output=str(tmp_path / "out"), model=seed_checkpoint,
                           input_column="image"))
    assert (s.done, s.failed) == (3, 0)
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert written[:2] == ["cam/a.png", "cam/sub/b.png"] and re.fullmatch(r"evil-[0-9a-f]{10}\.png", written[2])
    with pytest.raises(ValueError, match="no column 'pixels'"):
        run(PipelineConfig(input=str(tmp_path / "src"), output=str(tmp_path / "o2"), model=seed_checkpoint,
                           input_column="pixels"))


def test_a_run_killed_half_way_finishes_on_restart_and_loses_nothing(ray_cluster, tmp_path, seed_checkpoint):
    import signal
    import subprocess
    import sys
    import time

    src, out = tmp_path / "many", tmp_path / "out"
    for i in range(24):
        write_image(src / f"img{i:02d}.png", textured(160, 160, 3, seed=i))
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input", str(src),
                             "--output", str(out), "--batch-size", "1", "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = out / "_manifest"
    deadline = time.time() + 120
    while time.time() < deadline and (not parts.exists() or len(list(parts.glob("part-*.parquet"))) < 6):
        time.sleep(0.05)  # each batch: its outputs announced, then its records
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = sum(r["status"] == "done" for r in _manifest(out).values())
    assert 3 <= finished_before < 24
    s = _run(src, out, seed_checkpoint)
    assert s.skipped >= finished_before and s.done + s.skipped == 24 and s.failed == 0
    manifest = _manifest(out)
    assert len(manifest) == 24 and all(r["status"] == "done" for r in manifest.values())
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in src.glob("*.png"))
    for p in out.glob("*.png"):  # a kill can leave a hidden temporary, never a half-written image
        with open(p, "rb") as f:
            assert decode(f.read()).shape == (160, 160, 3)


def test_inputs_whose_names_collide_all_get_their_own_output(ray_cluster, tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    names = ["a/img1.png", "a/img1.bmp", "photo#1.png", "photo_1.png", "back\\slash.png", "back/slash.png"]
    for i, name in enumerate(names):
        write_image(src / name, textured(20, 24, 3, seed=i))
    s = _run(src, out, seed_checkpoint)
    assert (s.done, s.failed) == (6, 0)
    outputs = [r["output"] for r in _manifest(out).values()]
    assert len(set(outputs)) == 6 and all(os.path.exists(o) and o.startswith(str(out) + "/") for o in outputs)
    assert sorted(p.name for p in out.rglob("*.png")) == sorted(os.path.basename(o) for o in outputs)


def test_reruns_redo_changed_inputs_and_lost_outputs(ray_cluster, tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        write_image(src / f"p{i}.png", textured(24, 24, 3, seed=i))
    assert _run(src, out, seed_checkpoint).done == 4
    write_image(src / "p0.png", textured(24, 30, 3, seed=9))  # new content (and size)
    os.utime(src / "p0.png", (2_000_000_000, 2_000_000_000))
    (out / "p1.png").unlink()  # an output lost after its run
    again = _run(src, out, seed_checkpoint)
    assert (again.done, again.skipped) == (2, 2)
    assert decode((out / "p0.png").read_bytes()).shape == (24, 30, 3) and (out / "p1.png").exists()
    (out / "p2.png").unlink()
    trusting = _run(src, out, seed_checkpoint, verify_outputs=False)  # the manifest alone decides
    assert (trusting.done, trusting.skipped) == (0, 4)


def _own_map_workers() -> list[int]:
    """Pids of this test session's Ray Data actors (``ray::MapWorker...``): descendants of this process, whose
    local cluster they belong to; never another test's or a user's process on the same machine."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.cmdline() and p.cmdline()[0].startswith("ray::MapWorker"):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def test_killing_a_model_actor_mid_run_leaves_each_input_once_in_parquet(ray_cluster, tmp_path, seed_checkpoint):
    import signal
    import threading
    import time

    src, out = tmp_path / "many", tmp_path / "out"
    for i in range(40):
        write_image(src / f"img{i:02d}.png", textured(128, 128, 3, seed=i))
    summary = {}
    runner = threading.Thread(target=lambda: summary.update(s=_run(src, out, seed_checkpoint, "parquet", workers=2)))
    runner.start()
    deadline, killed = time.time() + 120, None
    while time.time() < deadline and killed is None and runner.is_alive():
        if len(list(out.glob("deblur-part-*.parquet"))) >= 3:
            actors = _own_map_workers()
            if actors:
                killed = actors[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    runner.join(timeout=300)
    assert killed is not None, "the run ended before an actor could be killed"
    s = summary["s"]
    assert s.done + s.skipped == 40 and s.failed == 0
    paths = pq.read_table(str(out), columns=["path"])["path"].to_pylist()
    assert sorted(paths) == sorted(str(p) for p in src.glob("*.png"))  # each input exactly once


def test_results_stream_and_the_summary_rate_is_the_manifests(ray_cluster, tmp_path, seed_checkpoint):
    """20 images, half in a sub-folder, two model actors: results land batch by batch, and the printed rate
    is the one the manifest's times give (images written after the first batch, over the time from it to
    the last)."""
    src = tmp_path / "in"
    for i in range(20):
        write_image(src / ("sub" if i % 2 else "") / f"im{i:02d}.png", textured(96, 128, 3, seed=i))
    s = _run(src, tmp_path / "out", seed_checkpoint, workers=2)
    assert (s.done, s.failed) == (20, 0) and 0 < s.steady_images < 20
    times = sorted(r["time"].timestamp() for r in sinks.read_manifest(str(tmp_path / "out")).to_pylist())
    later = [t for t in times if t > times[0]]
    rate = len(later) / (later[-1] - times[0])
    printed = float(re.search(r"then ([\d.]+) images/s", s.line()).group(1))
    assert abs(printed - rate) <= 0.2 * rate, (printed, rate)


def test_a_summary_without_a_second_batch_gives_the_overall_rate():
    from deblur.pipeline.run import Summary

    line = Summary(3, 0, 0, 2.0, 1.0, "out", "m", startup=2.0).line()
    assert "(1.50 images/s, 0.50 Mpx/s with start-up)" in line and "then" not in line


@pytest.mark.parametrize("fmt", ["png", "parquet"])
def test_a_foreign_checkpoint_runs_over_a_folder_and_another_model_redoes_it(ray_cluster, tmp_path, fmt):
    """NAFNet (spandrel, random weights) through the pipeline: outputs are spandrel's own whole-image call,
    rounded to 8 bits; the manifest and Parquet name the architecture and its weights; a rerun with other
    weights redoes every output, one with the same weights skips them."""
    from tests.core.test_foreign import nafnet, random_weights, save, spandrel_output

    src, out = tmp_path / "in", tmp_path / "out"
    images = {f"p{i}.png": textured(30 + i, 41, 3, seed=i) for i in range(3)}
    for name, img in images.items():
        write_image(src / name, img)
    state = random_weights(nafnet)
    first, other = save(state, tmp_path / "a", "pth"), save({k: v * 0.9 for k, v in state.items()}, tmp_path / "b",
                                                            "safetensors")
    s = run(PipelineConfig(input=str(src), output=str(out), model=first, format=fmt, workers=1, batch_size=2))
    assert s.done == 3
    if fmt == "png":
        results = {p.name: decode(p.read_bytes()) for p in out.glob("*.png")}
    else:
        table = pq.read_table(str(out), columns=["path", "image", "model"])
        results = {os.path.basename(p): decode(b) for p, b in zip(table["path"].to_pylist(), table["image"].to_pylist())}
        assert all(m.startswith("NAFNet-") for m in table["model"].to_pylist())
    for name, img in images.items():
        expected = np.rint(np.clip(spandrel_output(state, img.astype(np.float32) / 255), 0, 1) * 255)
        assert np.abs(results[name].astype(int) - expected.astype(int)).max() <= 1, name
    models = {r["model"] for r in _manifest(out).values()}
    assert len(models) == 1 and models.pop().startswith("NAFNet-")
    if fmt == "parquet":
        return  # reruns: the same for both formats
    again = run(PipelineConfig(input=str(src), output=str(out), model=first, format=fmt, workers=1))
    assert (again.done, again.skipped) == (0, 3)
    changed = run(PipelineConfig(input=str(src), output=str(out), model=other, format=fmt, workers=1))
    assert changed.done == 3


def test_model_actors_share_a_cluster_of_their_own_and_take_one_cpu_on_a_shared_one():
    from deblur.pipeline.run import actor_cpus

    assert actor_cpus(0, 1, 2.0) == 2  # one actor on a 2-core machine: both cores, not one
    assert actor_cpus(0, 2, 2.0) == 1 and actor_cpus(0, 3, 2.0) == 1
    assert actor_cpus(0, 4, 16.0) == 4
    assert actor_cpus(0, 1, 0.0) == actor_cpus(0, 4, 0.0) == 1  # attached, or split stages: Ray's default
    assert actor_cpus(3, 1, 16.0) == actor_cpus(3, 1, 0.0) == 3  # asked for: as asked


def test_a_rerun_with_nothing_new_lists_in_the_driver_and_starts_no_ray(ray_cluster, tmp_path, seed_checkpoint):
    """Issue 38: the nightly run that finds nothing new cost more than the run that did the work (a Ray
    cluster, ~80 listing workers). Now the driver lists and diffs before Ray: nothing new, no Ray at all."""
    import subprocess
    import sys

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(12):
        write_image(src / f"f{i % 3}" / f"img{i:02d}.png", textured(24, 24, 3, seed=i))
    cmd = [sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input", str(src), "--output",
           str(out)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.run(cmd, env={**env, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address},
                           capture_output=True, text=True, timeout=300)  # the work, on the session's cluster
    assert first.returncode == 0 and "12 done" in first.stdout, first.stderr[-2000:]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 done, 12 skipped, 0 failed" in again.stdout, again.stderr[-2000:]
    assert "12 inputs listed and diffed" in again.stdout
    assert "attached to the cluster" in first.stderr and "ray:" not in again.stderr


def test_an_input_with_no_files_is_refused_and_the_lease_given_back(tmp_path, seed_checkpoint):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no files under"):
        _run(tmp_path / "empty", out, seed_checkpoint)
    assert not (out / "_manifest" / "_lease.json").exists()
