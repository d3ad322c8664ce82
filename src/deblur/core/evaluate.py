"""Evaluation (``deblur eval``): PSNR and SSIM of a model, of the degraded input and of Wiener
deconvolution given the true kernel, per image and averaged, written as Parquet plus a report.

Sharp images come from ``data``; their degraded copies are made here from a degradation spec, reproducibly per
image (:mod:`deblur.core.synth`), or read from a ``paired`` folder holding files of the same names (then the
kernel is unknown and the Wiener row is left out), or found in a public layout of real pairs under ``data``
(GoPro, RealBlur, BasicSR: :mod:`deblur.core.pairs`). Degraded inputs are 8-bit, as stored photos are;
every output is rounded to 8 bits before scoring, and metrics follow BasicSR (uint8 range, optional
border crop, optional Y channel).
"""

from __future__ import annotations

import io
import json
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deblur.core import checkpoint, metrics
from deblur.core.config import EvalConfig
from deblur.core.choices import DEFAULT_DEGRADATION
from deblur.core.degrade import Degradation, parse_degradation
from deblur.core.image import decode, from_float, to_float, to_hwc
from deblur.core.pairs import Pairing, find_pairs
from deblur.core.progress import bar
from deblur.core.report import write_report
from deblur.core.restore import load
from deblur.core.places import refuse_overlap
from deblur.core.storage import filesystem, list_images, read_bytes, relative_key, write_atomic
from deblur.core.synth import Pair, make_pair
from deblur.core.wiener import noise_sigma_of, wiener

METHODS = ("blurred", "wiener", "model")


@dataclass(frozen=True)
class Scored:
    """One image's outputs (uint8 HWC, by method) and metrics (by method: psnr, ssim)."""

    key: str
    images: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]


def evaluate(cfg: EvalConfig) -> str:
    """Run the evaluation ``cfg`` describes; writes ``metrics.parquet``, ``summary.json``, ``report.png``
    and ``report.html`` under ``cfg.output`` and returns a one-line summary. An output that overlaps the
    data (the same folder, or one inside the other) is refused: a next evaluation would score its report."""
    refuse_overlap([cfg.data] + ([cfg.paired] if cfg.paired else []), cfg.output)
    restorer = load(cfg.model, "cpu", **cfg.restore().to_dict())
    spec = cfg.degradation or trained_on(restorer.checkpoint)
    deg = parse_degradation(spec)
    noise = noise_sigma_of(deg.corruptions)
    scored, failed = [], []
    layout = None if cfg.paired else find_pairs(cfg.data)  # GoPro, RealBlur, BasicSR trees
    if layout is not None and not layout.files:
        raise ValueError(f"deblur eval reads pairs from image files; {cfg.data} holds {layout.layout} pairs")
    listed = layout_pairs(layout, cfg.limit) if layout else pairs(cfg.data, cfg.paired, deg, cfg.seed, cfg.downscale,
                                                                  cfg.limit)
    for key, pair in bar(list(listed),
                         desc="evaluating", unit="img"):
        try:
            if isinstance(pair, str):
                raise ValueError(pair)
            restored = restorer(from_float(pair.degraded))
            classical = None if pair.kernel is None else from_float(wiener(pair.degraded, pair.kernel, noise))
            scored.append(score(key, pair, restored, classical, cfg.crop_border, cfg.y_channel))
        except (ValueError, RuntimeError) as e:  # one bad image is recorded; the rest are still scored
            failed.append({"image": key, "error": str(e)})
    if not scored:
        detail = f": {failed[0]['image']}: {failed[0]['error']}" if failed else ""
        raise FileNotFoundError(f"no images could be evaluated under {cfg.data}{detail}")
    model_id = checkpoint.model_id(restorer.checkpoint, restorer.config or None)
    label = "paired" if cfg.paired or layout else spec
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("output",)} | {"degradation": label}
    summary = {**summarise(scored, label, model_id), "failed": failed, "settings": settings}
    _write_outputs(cfg.output, scored, summary, label, model_id, cfg.report_images)
    means = "  ".join(f"{m} {v['psnr']:.2f} dB / {v['ssim']:.4f}" for m, v in summary["mean"].items())
    return f"{len(scored)} images, {label}: {means}, {len(failed)} failed -> {cfg.output}"


def trained_on(checkpoint_uri: str) -> str:
    """The degradation a checkpoint was trained on (its ``config.json``: ``degradation``, or ``blur`` in
    checkpoints written before the word was settled), else the default model's."""
    config = checkpoint.read_config(checkpoint_uri)
    return config.get("degradation") or config.get("blur") or DEFAULT_DEGRADATION


def layout_pairs(layout: Pairing, limit: int):
    """(the sharp image's key, :class:`Pair`) of each pair ``layout`` found (the first ``limit``; 0: all); an
    unreadable pair comes as (key, error message)."""
    for p in layout.files[: limit or None]:
        try:
            yield p.name, Pair(*(to_hwc(to_float(decode(read_bytes(u)))) for u in (p.sharp, p.degraded)), None)
        except (OSError, ValueError) as e:
            yield p.name, f"{type(e).__name__}: {e}"


def pairs(data: str, paired: str | None, deg: Degradation, seed: int, factor: float, limit: int):
    """(relative key, :class:`Pair`) for each sharp image under ``data`` (the first ``limit``; 0: all),
    degraded by ``deg`` unless read from ``paired``; an unreadable image, or one without its paired
    degraded copy, comes as (key, error message)."""
    urls = list_images(data)[: limit or None]
    degraded_by_stem = {}
    if paired:
        degraded_by_stem = {posixpath.splitext(relative_key(paired, u))[0]: u for u in list_images(paired)}
    for url in urls:
        key = relative_key(data, url) if url != data else posixpath.basename(url)
        try:
            yield key, _pair(url, key, deg, degraded_by_stem, paired, seed, factor)
        except (OSError, ValueError) as e:
            yield key, f"{type(e).__name__}: {e}"


def _pair(url: str, key: str, deg: Degradation, degraded_by_stem: dict[str, str], paired: str | None, seed: int,
          factor: float) -> Pair:
    sharp = decode(read_bytes(url))
    if not paired:
        return make_pair(sharp, deg, key, seed, factor)
    match = degraded_by_stem.get(posixpath.splitext(key)[0])
    if match is None:
        raise FileNotFoundError(f"no degraded image for {key} under {paired}")
    return Pair(to_hwc(to_float(sharp)), to_hwc(to_float(decode(read_bytes(match)))), None)


def score(key: str, pair: Pair, restored: np.ndarray, classical: np.ndarray | None, crop_border: int,
          y_channel: bool) -> Scored:
    """Round every output to 8 bits and score it against the sharp image (BasicSR PSNR and SSIM)."""
    sharp = from_float(pair.sharp)
    if pair.sharp.shape != pair.degraded.shape:
        raise ValueError(f"{key}: sharp {pair.sharp.shape} and degraded {pair.degraded.shape} differ in size")
    images = {"sharp": sharp, "blurred": from_float(pair.degraded), "model": to_hwc(restored)}
    if classical is not None:
        images["wiener"] = classical
    scores = {m: {"psnr": metrics.psnr(images[m], sharp, crop_border, y_channel),
                  "ssim": metrics.ssim(images[m], sharp, crop_border, y_channel)}
              for m in METHODS if m in images}
    return Scored(key, images, scores)


def summarise(scored: list[Scored], label: str, model_id: str) -> dict:
    """Mean PSNR/SSIM per method over all images, and how often the model beat the blurred input."""
    methods = [m for m in METHODS if all(m in s.scores for s in scored)]
    mean = {m: {k: float(np.mean([s.scores[m][k] for s in scored])) for k in ("psnr", "ssim")} for m in methods}
    worse = sum(s.scores["model"]["psnr"] < s.scores["blurred"]["psnr"] for s in scored)
    return {"degradation": label, "model": model_id, "images": len(scored), "mean": mean,
            "model_below_blurred": int(worse)}


def table(scored: list[Scored], label: str, model_id: str) -> pa.Table:
    """One row per (image, method): image, method, psnr, ssim, degradation, model, height, width, channels."""
    rows = [{"image": s.key, "method": m, "psnr": v["psnr"], "ssim": v["ssim"], "degradation": label, "model": model_id,
             "height": s.images["sharp"].shape[0], "width": s.images["sharp"].shape[1],
             "channels": s.images["sharp"].shape[2]} for s in scored for m, v in s.scores.items()]
    return pa.Table.from_pylist(rows)


def _write_outputs(output: str, scored: list[Scored], summary: dict, label: str, model_id: str,
                   report_images: int) -> None:
    fs, root = filesystem(output)
    buf = io.BytesIO()
    pq.write_table(table(scored, label, model_id), buf)
    write_atomic(fs, posixpath.join(root, "metrics.parquet"), buf.getvalue(), root=root)
    write_atomic(fs, posixpath.join(root, "summary.json"), json.dumps(summary, indent=2).encode(), root=root)
    step = max(1, len(scored) // max(report_images, 1))  # spread over the set (e.g. every sprite class)
    for name, data in write_report(scored, summary, scored[::step][:report_images]).items():
        write_atomic(fs, posixpath.join(root, name), data, root=root)
