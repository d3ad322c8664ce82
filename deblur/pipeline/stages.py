"""The pipeline's three stages, as Ray Data batch functions over the rows the listing makes
(:mod:`deblur.pipeline.rows` declares each stage's row):

  decode_batch (CPU)  ->  ModelStage (the model; a GPU with ``--gpu``)  ->  write_batch (CPU)

With GPUs they run as separate stages, so GPU actors only run the model while reading, decoding, encoding
and writing stay on CPUs. On CPUs one actor runs all three (:class:`FusedStage`), so each image crosses the
object store once. Every row ends as one :class:`~deblur.pipeline.rows.Record` (done / skipped / failed)
and, with its batch, in the manifest. This module needs no Ray itself: Ray Data calls it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import numpy as np

from deblur.core import restore
from deblur.core.image import decode_with_metadata, encode
from deblur.core.metrics import sharpness
from deblur.core.storage import filesystem, read_bytes, write_atomic
from deblur.pipeline import sinks
from deblur.pipeline.rows import EMPTY, pack, unpack

Batch = dict[str, Any]  # a Ray Data batch: column name -> one value per row


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def content_version(data: bytes) -> str:
    """An input's version by content (``--detect-changes content``): a hash of its bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


def decode_batch(batch: Batch, max_megapixels: float = 0.0, multi_frame: str = "refuse") -> Batch:
    """InputRow -> DecodedRow: read and decode each row's image (EXIF-upright, as stored: grey/RGB/RGBA,
    8/16-bit); a row that cannot be read or decoded gets its ``error``. Rows with a ``recorded`` version
    (``--detect-changes content``) are versioned by their content, and skipped when it is unchanged."""
    n = len(batch["path"])
    blobs, recorded = batch.get("bytes", [None] * n), batch.get("recorded", [None] * n)
    skips, versions = [bool(s) for s in batch["skip"]], [str(v) for v in batch["version"]]
    cols: dict[str, list] = {"pixels": [], "shape": [], "dtype": [], "sharpness_before": [], "exif": [], "icc": [],
                             "error": []}
    for i, (path, error, data, before) in enumerate(zip(batch["path"], batch["error"], blobs, recorded)):
        packed, sharp, exif, icc = EMPTY, 0.0, b"", b""
        if not skips[i] and not error:
            try:
                data = read_bytes(str(path)) if data is None else data
                if before is not None:
                    versions[i] = content_version(data)
                    skips[i] = versions[i] == before
                if not skips[i]:
                    img, exif, icc = decode_with_metadata(data, max_megapixels, multi_frame)
                    packed, sharp = pack(img), sharpness(img)
            except (OSError, ValueError) as e:  # one bad input never stops the run
                error = _error(e)
        for key, value in (*packed.items(), ("sharpness_before", sharp), ("exif", exif), ("icc", icc),
                           ("error", str(error))):
            cols[key].append(value)
    rest = {k: v for k, v in batch.items() if k not in ("bytes", "recorded")}
    return rest | cols | {"skip": skips, "version": versions}


class ModelStage:
    """Ray Data actor: loads the checkpoint once, restores each DecodedRow's pixels in place."""

    def __init__(self, checkpoint_uri: str, gpu: bool, options: dict[str, Any]) -> None:
        device = restore.default_device() if gpu else "cpu"
        self.restorer = restore.load(checkpoint_uri, device, **options)

    def __call__(self, batch: Batch) -> Batch:
        pixels, errors = list(batch["pixels"]), list(batch["error"])
        for i, (data, shape, dtype) in enumerate(zip(batch["pixels"], batch["shape"], batch["dtype"])):
            if data:
                try:
                    pixels[i] = self.restorer(unpack(data, str(shape), str(dtype))).tobytes()
                except RuntimeError as e:  # e.g. out of memory on one huge image: that image fails
                    pixels[i], errors[i] = b"", _error(e)
        return {**batch, "pixels": pixels, "error": errors}


def write_batch(batch: Batch, fmt: str, output: str, run: str, model_id: str) -> Batch:
    """DecodedRow -> Record: encode and write each restored row (a file, or one Parquet part per batch),
    then the batch's manifest rows."""
    records, rows = [], []
    for i, path in enumerate(batch["path"]):
        record = {"path": str(path), "status": "skipped" if batch["skip"][i] else "failed", "output": "",
                  "error": str(batch["error"][i]), "megapixels": 0.0, "version": str(batch["version"][i])}
        if batch["pixels"][i] and not record["error"]:
            try:
                img = unpack(batch["pixels"][i], str(batch["shape"][i]), str(batch["dtype"][i]))
                row = _store(img, record["path"], str(batch["output"][i]), fmt, model_id, run,
                             bytes(batch["exif"][i]), bytes(batch["icc"][i]))
                if row is not None:
                    rows.append({**row, "sharpness_before": float(batch["sharpness_before"][i])})
                record.update(status="done", megapixels=img.shape[0] * img.shape[1] / 1e6,
                              output=str(batch["output"][i]))
            except (OSError, ValueError) as e:
                record["error"] = _error(e)
        records.append(record)
    if rows:
        part = sinks.write_parquet_part(output, rows)
        for r in records:
            r["output"] = part if r["status"] == "done" else r["output"]
    now = datetime.now(timezone.utc)
    sinks.write_manifest_part(output, run, [
        {"source": r["path"], "output": r["output"], "status": r["status"], "error": r["error"],
         "model": model_id, "run": run, "time": now, "version": r["version"]} for r in records
        if r["status"] != "skipped"])
    return {k: [r[k] for r in records] for k in ("path", "status", "error", "megapixels")}


def _store(img: np.ndarray, path: str, output: str, fmt: str, model_id: str, run: str, exif: bytes,
           icc: bytes) -> dict | None:
    """Encode one restored image (with the source's EXIF and ICC profile) and write it to ``output``; for
    Parquet, return its row instead."""
    codec = "png" if fmt == "parquet" else fmt
    img = img if codec == "png" or img.dtype == np.uint8 else (img // 257).astype(np.uint8)
    encoded = encode(img, codec, exif=exif, icc=icc)
    if fmt != "parquet":
        fs, dst = filesystem(output)
        write_atomic(fs, dst, encoded)
        return None
    return {"path": path, "image": encoded, "format": codec, "width": img.shape[1], "height": img.shape[0],
            "channels": 1 if img.ndim == 2 else img.shape[2], "model": model_id,
            "sharpness_after": sharpness(img), "run": run, "icc_profile": icc or None}


class FusedStage(ModelStage):
    """All three stages in one actor (for CPU nodes): decode, restore, write."""

    def __init__(self, checkpoint_uri: str, gpu: bool, options: dict[str, Any], sink: dict[str, str],
                 decode: dict[str, Any]) -> None:
        super().__init__(checkpoint_uri, gpu, options)
        self.sink, self.decode = sink, decode

    def __call__(self, batch: Batch) -> Batch:
        return write_batch(super().__call__(decode_batch(batch, **self.decode)), **self.sink)
