"""The pipeline's speed and memory, side by side in one run, against bare single-process loops.

    python bench/throughput.py [--images 20] [--width 1024] [--height 768] [--workers N] [--json] [--gpu]

Prints, on the same machine in one run:
  - a bare one-thread decode+encode loop, and the pipeline with an identity model (the pipeline's own cost);
  - the shipped model: alone on its engine (eager PyTorch, and ``--engine auto``: OpenVINO where installed),
    a bare loop (decode, restore, encode in one process), and the pipeline in fp32 and in ``--precision auto``
    (bf16 where the CPU has AMX or AVX512-BF16 or the GPU has bf16) with ``--engine auto``; the model alone
    on one whole photo (the window the pipeline runs) before and after the pipeline, its best call and its
    median, and the pipeline against the median (sustained against sustained: the goal's ratio);
  - the model stage's own overhead: an identity model restoring one image, ms per image and per Mpx;
  - the peak memory of the process tree (driver, Ray and its workers: the sum of proportional set sizes)
    while one 8000x6000 JPEG goes through, above the same tree idle;
  - 2,000 32x32 PNGs through the pipeline with its default settings (tasks by bytes) against a bare loop.
``--gpu`` runs the model on the GPU (the pipeline with ``--gpu``: one model actor per GPU, decoding and
encoding on all CPUs); without a GPU it refuses. Run it with the
package installed (``make install``: the venv's python).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import cv2
import numpy as np
import psutil
import torch
from figures import show

import deblur
from deblur.core import checkpoint, models, tiles
from deblur.core.config import PipelineConfig
from deblur.core.image import decode, encode
from deblur.core.models.base import Model, Settings
from deblur.core.restore import autocast, resolve_precision
from deblur.pipeline.run import run
from deblur.runtime import quiet_ray


class Identity(Model):
    """A model that returns its input: what is left is the pipeline's own cost."""

    Settings = Settings

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def register_identity() -> None:
    """Make ``identity`` a model name in this process (Ray runs it in each worker as a setup hook)."""
    models.REGISTRY._entries.setdefault("identity", Identity)


def make_images(folder: str, n: int, w: int, h: int, ext: str = "jpg") -> list[str]:
    """``n`` photo-like ``w`` x ``h`` images (smooth colour fields with noise) in ``folder``."""
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.random((max(1, h // 16), max(1, w // 16), 3)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.clip(np.roll(base, i * 7, axis=1) + rng.normal(0, 0.02, base.shape).astype(np.float32), 0, 1)
        path = os.path.join(folder, f"img{i:04d}.{ext}")
        cv2.imwrite(path, (img * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == "jpg" else [])
        paths.append(path)
    return paths


def loop(paths: list[str], out: str, fmt: str, restorer: deblur.Restorer | None = None) -> float:
    """Seconds for a bare one-process loop: read, decode, (restore), encode, write each file."""
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            img = decode(f.read())
        if restorer is not None:
            img = restorer(img)
        with open(os.path.join(out, os.path.basename(p) + "." + fmt), "wb") as f:
            f.write(encode(img, fmt))
    return time.perf_counter() - t0


def tree_memory() -> int:
    """Bytes of this process and all its descendants (proportional set size: shared pages counted once)."""
    total = 0
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakMemory:
    """The highest :func:`tree_memory` seen every ``every`` seconds while in the ``with`` block."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, tree_memory())

    def __enter__(self) -> "PeakMemory":
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pipeline(src: str, out: str, ck: str, args: argparse.Namespace, **options) -> tuple[float, object]:
    """(seconds of the steady part, summary) of ``deblur run`` over ``src``."""
    settings = {"format": args.format, "workers": args.workers, "gpu": args.gpu, "tile": args.tile,
                **({"batch_size": args.batch_size} if args.batch_size else {}), **options}
    s = run(PipelineConfig(input=src, output=out, model=ck, **settings))
    assert s.failed == 0, s.line()
    steady = s.steady_seconds if s.steady_images else s.seconds
    return steady, s


def identity_overhead(device: torch.device, reps: int = 30) -> float:
    """Milliseconds (best of ``reps``) to restore one 1024x768 RGB image with an identity model (one of
    deblur's: it takes channels-last input, as the shipped model does)."""
    restorer = deblur.Restorer(Identity(Settings()), 3, device, deblur.load(device=device, engine="eager").options)
    img = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        restorer(img)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def model_speed(device: torch.device, precision: str, engine: str = "auto", reps: int = 10,
                size: tuple[int, int] | None = None) -> tuple[float, float]:
    """(best, median) Mpx/s of the shipped model alone, on its engine, over ``reps`` back-to-back calls on one
    batch of windows as large as a model call takes on ``device`` (no conversion, no I/O): the best call is
    its ceiling, the median what it sustains (the pipeline's figure is a sustained one). ``size`` (h, w): one
    window of that size instead (a whole photo, as the pipeline runs it when it fits in a tile)."""
    restorer = deblur.load(device=device, precision=precision, engine=engine)
    side = 512 if device.type == "cuda" else 256
    x = (torch.rand(1, 3, *size, device=device) if size else
         torch.rand(max(1, tiles.budget(device) // side**2), 3, side, side, device=device))
    times = []
    with torch.inference_mode(), autocast(device, restorer.options.precision):
        for i in range(reps + 2):  # two warm-up calls
            t0 = time.perf_counter()
            restorer.forward(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    mpx = x.shape[0] * x.shape[2] * x.shape[3] / 1e6
    return mpx / min(times[2:]), mpx / float(np.median(times[2:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--workers", type=int, default=None, help="model actors (default: 2 CPU / one per GPU)")
    ap.add_argument("--format", default="jpg")
    ap.add_argument("--tile", type=int, default=PipelineConfig.tile, help="the largest window side (deblur's --tile)")
    ap.add_argument("--batch-size", type=int, default=None, help="the pipeline's --batch-size (default: its own)")
    ap.add_argument("--tiny", type=int, default=2000, help="32x32 PNGs for the small-file figure (0: skip)")
    ap.add_argument("--big", action=argparse.BooleanOptionalAction, default=True, help="the 8000x6000 memory figure")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--gpu", action="store_true", help="the model on a GPU (refused without one)")
    args = ap.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA GPU here; the GPU figures are only measured on one")
    import ray

    device = torch.device("cuda" if args.gpu else "cpu")
    args.workers = args.workers or (torch.cuda.device_count() if args.gpu else 2)
    cpus = os.cpu_count() if args.gpu else args.workers
    tmp = tempfile.mkdtemp(prefix="deblur-bench-")
    register_identity()
    identity = os.path.join(tmp, "identity")
    checkpoint.save(identity, models.build("identity", channels=3), "identity", {"step": 0, "metrics": {}})
    shipped = checkpoint.resolve(None)
    paths = make_images(os.path.join(tmp, "in"), args.images, args.width, args.height)
    mpx = args.images * args.width * args.height / 1e6
    f: dict[str, float | str] = {"machine": f"{cpus} CPUs" + (f", {torch.cuda.get_device_name()}" if args.gpu else ""),
                                 "images": args.images, "size": f"{args.width}x{args.height}",
                                 "auto_precision": resolve_precision("auto", device)}
    f["io_mpx_s"] = mpx / loop(paths, os.path.join(tmp, "io"), args.format)
    f["bare_fp32_mpx_s"] = mpx / loop(paths, os.path.join(tmp, "bare"), args.format,
                                      deblur.load(shipped, device, precision="fp32"))
    f["bare_auto_mpx_s"] = mpx / loop(paths, os.path.join(tmp, "bare-auto"), args.format,
                                      deblur.load(shipped, device, tile=args.tile))
    f["auto_engine"] = deblur.load(shipped, device).options.engine
    f["model_fp32_eager_mpx_s"] = model_speed(device, "fp32", "eager")[0]
    f["model_auto_eager_mpx_s"] = model_speed(device, "auto", "eager")[0]
    f["model_auto_mpx_s"] = model_speed(device, "auto")[0]
    photo = (args.height, args.width)  # one whole photo: the window the pipeline runs
    f["model_auto_photo_mpx_s"], f["model_auto_photo_median_mpx_s"] = model_speed(device, "auto", size=photo)
    if args.gpu:  # what cuDNN's autotuner would add (the pipeline does not turn it on)
        torch.backends.cudnn.benchmark = True
        f["model_auto_cudnn_benchmark_mpx_s"] = model_speed(device, "auto")[0]
        torch.backends.cudnn.benchmark = False
    f["identity_restore_ms"] = identity_overhead(device)
    f["identity_restore_ms_per_mpx"] = f["identity_restore_ms"] / (1024 * 768 / 1e6)

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": register_identity})
    quiet_ray()  # the figures, not Ray Data's progress logs
    src = os.path.join(tmp, "in")
    for key, ck, precision, engine in (("identity", identity, "fp32", "eager"), ("fp32", shipped, "fp32", "auto"),
                                       ("auto", shipped, "auto", "auto")):
        seconds, s = pipeline(src, os.path.join(tmp, f"out-{key}"), ck, args, precision=precision, engine=engine)
        f[f"pipeline_{key}_mpx_s"] = s.steady_megapixels / seconds if s.steady_images else mpx / seconds
        f[f"pipeline_{key}_line"] = s.line()
    f["pipeline_fp32_vs_bare"] = f["pipeline_fp32_mpx_s"] / f["bare_fp32_mpx_s"]
    f["pipeline_auto_vs_model_auto"] = f["pipeline_auto_mpx_s"] / f["model_auto_mpx_s"]
    f["pipeline_auto_vs_model_auto_photo"] = f["pipeline_auto_mpx_s"] / f["model_auto_photo_mpx_s"]
    # the same work in one process, decoding and encoding on the cores the model uses: what a pipeline can reach
    f["pipeline_auto_vs_bare_auto"] = f["pipeline_auto_mpx_s"] / f["bare_auto_mpx_s"]
    f["auto_vs_fp32"] = f["pipeline_auto_mpx_s"] / f["pipeline_fp32_mpx_s"]
    if args.tiny:
        tiny = make_images(os.path.join(tmp, "tiny"), args.tiny, 32, 32, "png")
        f["tiny_bare_images_s"] = args.tiny / loop(tiny, os.path.join(tmp, "tiny-bare"), "png",
                                                   deblur.load(shipped, device))
        seconds, s = pipeline(os.path.join(tmp, "tiny"), os.path.join(tmp, "tiny-out"), shipped, args)  # defaults
        f["tiny_pipeline_images_s"] = s.steady_images / seconds if s.steady_images else args.tiny / seconds
        f["tiny_vs_bare"] = f["tiny_pipeline_images_s"] / f["tiny_bare_images_s"]
    if args.big:
        big = make_images(os.path.join(tmp, "big"), 1, 8000, 6000)
        time.sleep(2)
        idle = tree_memory()
        with PeakMemory() as peak:
            pipeline(os.path.join(tmp, "big"), os.path.join(tmp, "big-out"), shipped, args, workers=1)
        f["big_idle_gb"], f["big_peak_above_idle_gb"] = idle / 1e9, (peak.peak - idle) / 1e9
        f["big_decoded_gb"] = 8000 * 6000 * 3 / 1e9
        del big
    ray.shutdown()  # the model alone on the photo again, on a quiet machine: its speed drifts within a run
    f["model_auto_photo_after_mpx_s"], f["model_auto_photo_median_after_mpx_s"] = model_speed(device, "auto", size=photo)
    # the goal (>= 0.85): sustained against sustained, the model's median before and after the pipelines
    sustained = (f["model_auto_photo_median_mpx_s"] + f["model_auto_photo_median_after_mpx_s"]) / 2
    f["pipeline_auto_vs_model_auto_photo_sustained"] = f["pipeline_auto_mpx_s"] / sustained
    show(f, args.json)


if __name__ == "__main__":
    main()
