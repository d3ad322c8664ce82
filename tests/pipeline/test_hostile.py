"""The hostile-input campaign (issue 19), each finding reproduced as a hostile or careless user would: nothing
deleted that deblur did not write, nothing lost to a name, nothing read that was not listed, every input a
record. (Killed drivers and storage outages: tests/pipeline/test_faults.py; a killed command's processes:
tests/test_runtime.py; relative training paths: tests/train/test_trainer.py.)"""

import io
import os
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from deblur.cli import main
from deblur.core.config import PipelineConfig
from deblur.core.image import decode, encode
from deblur.pipeline import sinks
from deblur.pipeline.naming import tag
from deblur.pipeline.run import run
from tests.conftest import _free_port, textured, write_image


def _run(src, out, ck, fmt="png", **kw):
    """One run with one model actor (a process importing torch; none of these findings needs two)."""
    return run(PipelineConfig(input=str(src), output=str(out), model=ck, format=fmt, **{"workers": 1, "batch_size": 3, **kw}))


def _manifest(out) -> dict[str, dict]:
    return {r["source"]: r for r in sinks.read_manifest(str(out)).to_pylist()}


def _frames(fmt: str) -> bytes:
    a, b = (Image.fromarray(textured(16, 20, 3, seed=s)) for s in (1, 2))
    buf = io.BytesIO()
    a.save(buf, fmt, save_all=True, append_images=[b], **({"duration": 100} if fmt == "WEBP" else {}))
    return buf.getvalue()


def test_parquet_output_never_touches_files_deblur_did_not_write(ray_cluster, tmp_path, seed_checkpoint):
    """Finding 1: the commit deleted every part-*.parquet the manifest did not name."""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_image(src / f"p{i}.png", textured(20, 24, 3, seed=i))
    out.mkdir()
    pq.write_table(pa.table({"path": ["theirs.png"], "n": [1]}), out / "part-00000.parquet")
    pq.write_table(pa.table({"x": [2]}), out / "notes.parquet")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for _ in range(2):  # the second run's commit sees the first run's parts and the foreign ones
        _run(src, out, seed_checkpoint, "parquet", overwrite=True)
    assert {n: (out / n).read_bytes() for n in before} == before
    ours = pq.read_table([str(p) for p in out.glob("deblur-part-*.parquet")], columns=["path"])["path"].to_pylist()
    assert sorted(ours) == sorted(str(p) for p in src.glob("*.png"))  # each input exactly once


@pytest.mark.parametrize("layout", ["same", "output inside input", "input inside output"])
def test_an_output_overlapping_the_input_is_refused_before_any_work(tmp_path, seed_checkpoint, capsys, layout):
    """Findings 1 and 8: --input X --output X deleted (Parquet) or silently ignored (PNG) every input."""
    root = tmp_path / "photos"
    write_image(root / "sub" / "a.png", textured(20, 24, 3))
    src, out = {"same": (root, root), "output inside input": (root, root / "out"),
                "input inside output": (root / "sub", root)}[layout]
    for fmt in ("png", "parquet"):
        assert main(["run", "--model", seed_checkpoint, "--input", str(src), "--output", str(out),
                     "--format", fmt]) == 2
        assert "overlap" in capsys.readouterr().err
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["sub", "sub/a.png"]  # untouched


def test_a_hostile_folder_gives_every_entry_one_record_and_no_name_twice(ray_cluster, tmp_path, seed_checkpoint):
    """Findings 2, 4, 7 and 8: colliding names, top-level symbolic links, HDR/float/multi-frame files, a
    folder named like an output, a 240-character name."""
    src, out, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    good = ["a.jpg", "a.jpg.png", "a.png", "x#1.png", "x_1" + tag("x#1.png") + ".png", "y.jpg", "y.png/z.png",
            "n" * 240 + ".png", "sub/a.png"]
    for i, name in enumerate(good):
        write_image(src / name, textured(20, 24, 3, seed=i))
    write_image(outside / "o.png", textured(30, 30, 3, seed=99))
    for where in (src, src / "sub"):  # the same links at the top level and one folder down
        os.symlink("a.png", where / "inner.png")
        os.symlink(outside / "o.png", where / "out-of-input.png")
        os.symlink("loop.png", where / "loop.png")
        os.symlink("nowhere.png", where / "dangling.png")
        os.symlink(outside, where / "folder-link")
    (src / "hdr.png").write_bytes(cv2.imencode(".hdr", np.ones((2000, 3000, 3), np.float32))[1].tobytes())
    (src / "float.tif").write_bytes(cv2.imencode(".tiff", np.full((20, 20), 0.5, np.float32))[1].tobytes())
    (src / "pages.tif").write_bytes(_frames("TIFF"))
    (src / "animated.webp").write_bytes(_frames("WEBP"))
    s = _run(src, out, seed_checkpoint, max_megapixels=1)
    records = _manifest(out)
    entries = [p for p in src.rglob("*") if not p.is_dir() or p.is_symlink()]
    assert sorted(records) == sorted(str(p) for p in entries)  # every entry exactly one record
    failed = {os.path.relpath(k, src): r["error"] for k, r in records.items() if r["status"] == "failed"}
    links = ["out-of-input.png", "loop.png", "dangling.png", "folder-link"]
    assert sorted(failed) == sorted(links + [f"sub/{n}" for n in links] + ["hdr.png", "float.tif", "pages.tif",
                                                                         "animated.webp"])
    assert "outside the input" in failed["out-of-input.png"] and "loop" in failed["loop.png"]
    assert "dangling" in failed["sub/dangling.png"] and "folder" in failed["folder-link"]
    assert "not a supported image" in failed["hdr.png"] and "floating-point" in failed["float.tif"]
    assert "2 frames" in failed["pages.tif"] and "2 frames" in failed["animated.webp"]
    done = [r["output"] for r in records.values() if r["status"] == "done"]
    assert s.done == len(done) == len(good) + 2 and len(set(done)) == len(done)  # inner.png twice: followed
    files = [str(p) for p in out.rglob("*.png") if p.is_file()]
    assert sorted(files) == sorted(done) and all(f.startswith(str(out) + "/") for f in files)


def test_a_hostile_parquet_dataset_gives_every_row_one_record_and_reads_nothing_outside(
        ray_cluster, tmp_path, seed_checkpoint):
    """Findings 3, 5 and 6: a repeated path, a null image whose path names a file outside the dataset,
    paths that are null or '..'."""
    ds, out, secret = tmp_path / "ds", tmp_path / "out", tmp_path / "secret.png"
    write_image(secret, textured(50, 70, 3, seed=7))
    write_image(ds / "files" / "in.png", textured(22, 26, 3, seed=8))
    png = [encode(textured(20, 24, 3, seed=i), "png") for i in range(5)]
    rows = [("a.png", png[0]), ("b.png", png[1]), ("..", png[2]), (None, png[3]),  # first file
            ("a.png", png[4]), (str(secret), None), ("files/in.png", None), ("files/../../secret.png", None)]
    for k, part in enumerate((rows[:4], rows[4:])):
        pq.write_table(pa.table({"path": [r[0] for r in part], "image": [r[1] for r in part]}),
                       ds / f"data-{k}.parquet")
    s = run(PipelineConfig(input=str(ds), output=str(out), model=seed_checkpoint, input_column="image", workers=2))
    records = _manifest(out)
    assert len(records) == 8 and s.done + s.failed == 8  # every row one record
    status = {k: (r["status"], r["error"]) for k, r in records.items()}
    assert status["a.png"][0] == status["b.png"][0] == status[".."][0] == status["files/in.png"][0] == "done"
    anonymous = {int(k.rsplit("=", 1)[1]): v for k, v in status.items() if "#row=" in k}  # no name of their own
    assert sorted(anonymous) == [3, 4] and "null" in anonymous[3][1] and "earlier row" in anonymous[4][1]
    for outside in (str(secret), "files/../../secret.png"):
        assert status[outside][0] == "failed" and "outside the dataset" in status[outside][1]
    shapes = sorted(decode(p.read_bytes()).shape for p in out.rglob("*.png"))
    assert len(shapes) == 4 and (50, 70, 3) not in shapes  # the file outside was never read


def test_temporaries_left_behind_are_swept_by_the_next_run_and_look_alikes_are_not(ray_cluster, tmp_path,
                                                                                     seed_checkpoint):
    """Finding 11 of issue 19: temporaries stayed in the output after an outage. Issue 36, case 6: foreign
    hidden files shaped like an older version's temporaries (``.<name>.<32 hex>.tmp``) were swept too; only
    temporaries carrying this output's own nonce are deblur's."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", textured(20, 24, 3))
    _run(src, out, seed_checkpoint)
    nonce = sinks.output_nonce(str(out))
    ours = [out / f".deblur-{nonce}-{'0' * 32}.tmp", out / "sub" / f".deblur-{nonce}-{'1' * 32}.tmp",
            out / "_manifest" / f".deblur-{nonce}-{'2' * 32}.tmp"]
    theirs = [out / f".deblur-{'0' * 32}.tmp", out / f".a.png.{'1' * 32}.tmp", out / ".keep",
              out / "_manifest" / f".part-x.parquet.{'2' * 32}.tmp"]
    for p in ours + theirs:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    assert _run(src, out, seed_checkpoint).skipped == 1
    assert not any(p.exists() for p in ours) and all(p.read_bytes() == b"half" for p in theirs)


def _deblur(*args: str, env: dict) -> tuple[int, str, float]:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "deblur.cli", *args], capture_output=True, text=True, env=env, timeout=180)
    return r.returncode, r.stderr, time.time() - t0


def test_an_unreachable_or_silent_endpoint_fails_fast_with_exit_2_naming_it(tmp_path, seed_checkpoint):
    """Finding 11: a refused endpoint took 18-31 s and exited 1; a silent one took 426 s (then ~45 s with
    bounded timeouts; ~17 s with the checks' two attempts a call)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel does), never answers
    try:
        for name, port, bound in (("refused", _free_port(), 15), ("silent", silent.getsockname()[1], 30)):
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
            code, err, seconds = _deblur("run", "--model", seed_checkpoint, "--input", "s3://bucket/in", "--output",
                                         str(tmp_path / name), env=env)
            print(f"{name} endpoint: exit {code} after {seconds:.1f} s")
            assert code == 2 and url in err and seconds < bound, (name, code, seconds, err[-500:])
    finally:
        silent.close()


def test_content_change_detection_sees_a_rewrite_that_keeps_size_and_time(ray_cluster, tmp_path, seed_checkpoint):
    """Finding 12: a file rewritten at the same size with its modification time restored (rsync -t) was
    skipped; by content it is redone (by metadata it still cannot be seen: the README says so)."""
    src, by_time, by_hash = tmp_path / "in", tmp_path / "by-time", tmp_path / "by-hash"
    path = write_image(src / "p.bmp", textured(24, 24, 3, seed=1))  # BMP: the same size whatever the pixels
    content = {"detect_changes": "content"}
    assert _run(src, by_time, seed_checkpoint).done == 1
    assert _run(src, by_hash, seed_checkpoint, **content).done == 1
    assert _run(src, by_hash, seed_checkpoint, **content).skipped == 1  # unchanged content: skipped
    st = os.stat(path)
    first = (by_hash / "p.png").read_bytes()
    write_image(path, textured(24, 24, 3, seed=2))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert _run(src, by_time, seed_checkpoint).skipped == 1  # by metadata: indistinguishable (documented)
    assert _run(src, by_hash, seed_checkpoint, **content).done == 1
    assert (by_hash / "p.png").read_bytes() != first


def test_the_trigger_retries_rays_try_again_later_with_backoff_and_gives_up_on_other_errors():
    """Finding 14: jobs/submit.py gave up at once on a fresh head's "No available agent" (HTTP 500)."""
    from deblur.jobs import retrying

    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("Request failed with status code 500: No available agent to submit job, please try "
                               "again later.")
        return "submitted"

    assert retrying(flaky, sleep=waits.append) == "submitted" and waits == [1.0, 2.0]

    def fails(error: Exception):
        def call():
            calls.append(1)
            raise error
        return call

    calls.clear()
    with pytest.raises(RuntimeError, match="try again later"):  # bounded
        retrying(fails(RuntimeError("500: try again later")), tries=3, sleep=waits.append)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ValueError):  # anything else: at once
        retrying(fails(ValueError("bad entrypoint")), sleep=waits.append)
    assert len(calls) == 1
