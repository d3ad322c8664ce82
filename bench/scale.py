"""What a nightly run costs as the bucket grows: `deblur run` on N tiny images in F folders, then the same run
again with nothing new, locally or on an S3 server on loopback (moto), each a fresh `deblur` process as a user
or a schedule starts it.

Prints per configuration: the first run and the no-op rerun (wall seconds, the driver's peak RSS), the no-op
cost per listed object, and the most Ray worker processes seen at once during the no-op rerun.

    .venv/bin/python bench/scale.py [--files 5000,20000] [--folders 1,100] [--s3 [--no-local]] [--json]
        [--deblur PATH]  (another checkout's command, to compare side by side)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_pngs(n: int, folders: int) -> list[tuple[str, bytes]]:
    """(relative key, PNG bytes) of ``n`` 8x8 colour images spread over ``folders`` folders (1: the top level)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        folder = f"f{i % folders:04d}/" if folders > 1 else ""
        out.append((f"{folder}img{i:06d}.png", cv2.imencode(".png", img)[1].tobytes()))
    return out


def workers() -> int:
    """Ray worker processes on this machine now."""
    found = subprocess.run(["pgrep", "-f", "default_worker.py"], capture_output=True, text=True).stdout
    return len(found.split())


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall seconds, the driver's peak RSS (MB, GNU time) and the most Ray workers seen."""
    most, done = [0], threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            most[0] = max(most[0], workers())

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss %M", *cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    done.set()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    rss = int(re.search(r"maxrss (\d+)", result.stderr).group(1)) / 1024
    summary = next((ln for ln in result.stdout.splitlines() if " done, " in ln), "")
    return {"seconds": round(seconds, 1), "driver_mb": round(rss), "workers": most[0], "summary": summary}


def one(deblur: str, n: int, folders: int, s3: str | None) -> dict:
    """The first run and the no-op rerun of ``n`` images in ``folders`` folders (on the S3 server ``s3``)."""
    env = {**os.environ}
    files = tiny_pngs(n, folders)
    tmp = tempfile.mkdtemp(prefix="deblur-scale-")
    try:
        if s3:
            import fsspec

            fs = fsspec.filesystem("s3", key="bench", secret="bench",  # moto's: any credentials
                                   client_kwargs={"endpoint_url": s3})
            bucket = f"scale-{n}-{folders}-{int(time.time())}"
            fs.mkdir(bucket)
            fs.pipe({f"{bucket}/in/{k}": v for k, v in files})
            src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
            env.update(AWS_ENDPOINT_URL=s3, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_DEFAULT_REGION="us-east-1")
        else:
            src, out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
            for k, v in files:
                os.makedirs(os.path.dirname(os.path.join(src, k)), exist_ok=True)
                with open(os.path.join(src, k), "wb") as f:
                    f.write(v)
        cmd = [deblur, "run", "--input", src, "--output", out]
        first, noop = timed(cmd, env), timed(cmd, env)
        return {"files": n, "folders": folders, "store": "s3" if s3 else "local", "first": first, "noop": noop,
                "noop_ms_per_object": round(1000 * noop["seconds"] / n, 3)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="5000,20000")
    p.add_argument("--folders", default="1,100")
    p.add_argument("--s3", action="store_true", help="also on a moto S3 server on loopback")
    p.add_argument("--no-local", dest="local", action="store_false", help="with --s3: only on the S3 server")
    p.add_argument("--deblur", default=os.path.join(HERE, ".venv", "bin", "deblur"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    server = None
    if args.s3:
        from moto.server import ThreadedMotoServer

        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        s3 = f"http://127.0.0.1:{server._server.server_port}"
    results = []
    for n in map(int, args.files.split(",")):
        for folders in map(int, args.folders.split(",")):
            for store in [*([None] if args.local or not args.s3 else []), *([s3] if args.s3 else [])]:
                r = one(args.deblur, n, folders, store)
                results.append(r)
                print(f"{r['files']:>7} files {r['folders']:>5} folders {r['store']:>5}: first {r['first']['seconds']:6.1f}s "
                      f"(driver {r['first']['driver_mb']} MB)  no-op {r['noop']['seconds']:6.1f}s "
                      f"({r['noop_ms_per_object']:.2f} ms/object, driver {r['noop']['driver_mb']} MB, "
                      f"{r['noop']['workers']} Ray workers at most)", flush=True)
                print(f"    {r['noop']['summary']}", flush=True)
    if server:
        server.stop()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
