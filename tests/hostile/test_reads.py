"""Issue 36, cases 11-15: reads never escape the input, never block, are bounded before they are made, and
bad values fail early and short."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deblur.cli import main
from deblur.core.image import admit, encode
from deblur.core.storage import read_input
from deblur.pipeline.listing import _entries, _row_group, describe
from deblur.pipeline.sinks import Known
from deblur.pipeline.stages import decode_batch
from tests.conftest import textured, write_image


def _within(seconds: float, fn, *args):
    """``fn(*args)``, which must return within ``seconds`` (a blocked read fails the test, not the suite)."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(value=fn(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{fn.__name__} blocked for over {seconds} s"
    return result["value"]


def _listed(src, out="/nowhere/out") -> dict:
    fs = fsspec.filesystem("file")
    rows = describe(str(src), out, _entries(fs, fs.find(str(src), detail=True)), "png", Known())
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_11_an_input_swapped_after_listing_for_a_link_or_a_fifo_is_refused_without_blocking(tmp_path):
    src, secret = tmp_path / "in", tmp_path / "secret.png"
    write_image(secret, textured(50, 70, 3, seed=9))
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        write_image(src / name, textured(20, 24, 3))
    batch = _listed(src)
    os.replace(src / "a.png", tmp_path / "a-moved.png")
    os.symlink(secret, src / "a.png")  # to a file outside the input
    os.unlink(src / "b.png")
    os.mkfifo(src / "b.png")  # a FIFO nobody writes: an open for reading would wait for ever
    os.rename(src / "sub", tmp_path / "sub-moved")
    os.symlink(tmp_path, src / "sub")  # a folder on the way, now a link out
    decoded = _within(20, decode_batch, batch, str(src))
    errors = dict(zip([os.path.basename(p) for p in decoded["path"]], decoded["error"]))
    assert "outside the input" in errors["a.png"] and "not a regular file" in errors["b.png"]
    assert "symbolic link" in errors["d.png"] and errors["c.png"] == ""
    assert all(shape in ("", "20,24,3") for shape in decoded["shape"])  # the secret was never read


def test_12_a_parquet_row_naming_a_fifo_fails_alone_without_blocking(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    os.mkfifo(ds / "fifo.png")
    good = encode(textured(20, 24, 3), "png")
    pq.write_table(pa.table({"path": ["good.png", "fifo.png"], "image": [good, None]}), ds / "data.parquet")
    item = {"file": str(ds / "data.parquet"), "group": 0, "first": 0, "rows": 2, "named": True,
            "sources": ["good.png", "fifo.png"], "keys": ["good.png", "fifo.png"], "errors": ["", ""]}
    rows = _within(20, _row_group, item, "image", str(tmp_path / "out"), "png", Known(), (str(ds),))
    assert rows[0]["bytes"] == good and rows[0]["error"] == ""
    assert rows[1]["bytes"] is None and "not a regular file" in rows[1]["error"]


def _drip_server() -> socket.socket:
    """An HTTP endpoint that answers every request (HEAD too) with a status line, then a byte every 2 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve(conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nX-Drip: ")
            while True:
                conn.sendall(b"a")
                time.sleep(2)
        except OSError:
            pass

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def test_13_an_endpoint_that_drips_bytes_is_given_up_within_the_deadline(tmp_path, seed_checkpoint):
    server = _drip_server()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "DEBLUR_STORAGE_DEADLINE": "4"}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "deblur.cli", "run", "--model", seed_checkpoint, "--input",
                        "s3://bucket/in", "--output", str(tmp_path / "out")], capture_output=True, text=True,
                       env=env, timeout=120)
    seconds = time.time() - t0
    server.close()
    assert r.returncode == 2 and "within 4s" in r.stderr and seconds < 40, (seconds, r.stderr[-400:])


def test_14_sizes_are_judged_from_the_header_before_the_bytes_are_read(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(encode(textured(20, 24, 3), "png"))
    os.truncate(huge, 1_500_000_000)  # sparse: 1.5 GB that cost nothing to make
    with pytest.raises(ValueError, match="more than its pixels could need"):
        read_input(str(huge), str(tmp_path), None, lambda f, n: admit(f, n, 200, 2000))
    small = bytearray(encode(textured(16, 16, 3), "jpg"))
    sof = small.index(b"\xff\xc0")
    small[sof + 5: sof + 9] = (9000).to_bytes(2, "big") * 2  # the header now declares 9000x9000 (81 Mpx)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(small))
    assert len(small) < 2000
    with pytest.raises(ValueError, match="decompression bomb"):
        read_input(str(bomb), str(tmp_path), None, lambda f, n: admit(f, n, 200, 2000))
    assert read_input(str(bomb), str(tmp_path), None, lambda f, n: admit(f, n, 200, 0)) == bytes(small)  # lifted


def _checkpoint_with(tmp_path, seed_checkpoint, settings: dict) -> str:
    import shutil

    path = tmp_path / f"ck-{len(os.listdir(tmp_path))}"
    shutil.copytree(seed_checkpoint, path)
    config = json.loads((path / "config.json").read_text())
    config.update(model="unet", settings=settings)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_15_bad_model_settings_and_weights_fail_early_short_and_with_exit_2(tmp_path, seed_checkpoint, capsys):
    ckpts = [_checkpoint_with(tmp_path, seed_checkpoint, {"channels": 3, "depths": d})
             for d in ([1] * 1000, [1000, 1000, 1000], [64] * 8)]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    for args in [["inspect", c] for c in ckpts] + [["inspect", str(bad)]]:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err and all(len(line) <= 300 for line in err.splitlines()), err[:400]


def test_13_every_s3_request_has_a_total_deadline_not_only_the_checks(monkeypatch):
    from deblur.core.storage import filesystem

    server = _drip_server()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("DEBLUR_STORAGE_DEADLINE", "2")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "x")
    fs, _ = filesystem("s3://bucket/in", check=True)  # a fresh client (the cached ones know another endpoint)
    t0 = time.time()
    with pytest.raises(Exception) as failed:
        fs.ls("bucket/in", refresh=True)  # a listing: no check and no read deadline around it
    server.close()
    assert 2 <= time.time() - t0 < 40 and "timeout" in repr(failed.value).lower(), repr(failed.value)
