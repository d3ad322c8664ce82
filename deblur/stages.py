"""The de-blur pipeline's three steps, as Ray Data batch functions over the rows ``infer`` lists
(``path``, ``output``, ``skip``, ``error`` and, for memory:// or Parquet input, ``bytes``):

  decode_batch (CPU)  ->  Restorer (the model; a GPU with ``--gpu``)  ->  write_batch (CPU)

With GPUs they run as separate stages, so GPU actors only run the model while reading, decoding, encoding
and writing stay on CPUs. On CPUs one actor runs all three (:class:`FusedDeblurrer`), so each image crosses
the object store once. Decoded pixels travel as raw bytes with their shape and dtype; every row ends as
one record (``status`` done / skipped / failed, ``error``) and, with its batch, in the manifest.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn as nn

from deblur import checkpoint, sinks
from deblur.imageops import to_numpy, to_tensor
from deblur.io import decode, encode, filesystem, from_float, to_float, write_atomic
from deblur.metrics import sharpness
from deblur.tiling import self_ensemble, tiled

Batch = dict[str, object]


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def _pack(img: np.ndarray) -> dict:
    return {"pixels": img.tobytes(), "shape": ",".join(map(str, img.shape)), "dtype": img.dtype.str}


def _unpack(pixels: bytes, shape: str, dtype: str) -> np.ndarray:
    return np.frombuffer(pixels, np.dtype(dtype)).reshape(tuple(int(s) for s in shape.split(",")))


def decode_batch(batch: Batch, max_megapixels: float = 0.0) -> Batch:
    """Read and decode each row's image (EXIF-upright, as stored: grey/RGB/RGBA, 8/16-bit)."""
    n = len(batch["path"])
    blobs = batch.get("bytes", [None] * n)
    cols: dict[str, list] = {"pixels": [], "shape": [], "dtype": [], "sharpness_before": [], "error": []}
    for path, skip, error, data in zip(batch["path"], batch["skip"], batch["error"], blobs):
        packed, sharp = {"pixels": b"", "shape": "", "dtype": ""}, 0.0
        if not skip and not error:
            try:
                if data is None:
                    fs, src = filesystem(str(path))
                    data = fs.cat_file(src)
                img = decode(data, max_megapixels)
                packed, sharp = _pack(img), sharpness(img)
            except (OSError, ValueError) as e:  # one bad input never stops the run
                error = _error(e)
        for key, value in (*packed.items(), ("sharpness_before", sharp), ("error", str(error))):
            cols[key].append(value)
    return {k: v for k, v in batch.items() if k != "bytes"} | cols


class Restorer:
    """Ray Data actor: loads the checkpoint once, de-blurs each decoded row's pixels in place."""

    def __init__(self, checkpoint_uri: str, gpu: bool = False, tile: int = 512, pad: int = 32,
                 ensemble: bool = False) -> None:
        self.device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        self.model, config = checkpoint.load(checkpoint_uri, self.device)
        self.channels = int(config["settings"].get("channels", 1))
        self.tile, self.pad, self.ensemble = tile, pad, ensemble

    def __call__(self, batch: Batch) -> Batch:
        pixels, errors = list(batch["pixels"]), list(batch["error"])
        for i, (data, shape, dtype) in enumerate(zip(batch["pixels"], batch["shape"], batch["dtype"])):
            if data:
                try:
                    img = _unpack(data, str(shape), str(dtype))
                    pixels[i] = restore_image(self.model, img, self.channels, self.device, self.tile, self.pad,
                                              self.ensemble).tobytes()
                except RuntimeError as e:  # e.g. out of memory on one huge image: that image fails
                    pixels[i], errors[i] = b"", _error(e)
        return {**batch, "pixels": pixels, "error": errors}


def write_batch(batch: Batch, fmt: str, output: str, run: str, model_id: str) -> Batch:
    """Encode and write each restored row (a file, or one Parquet part per batch), then the batch's
    manifest rows; returns the records ``path``, ``status``, ``error``, ``megapixels``."""
    records, rows = [], []
    for i, path in enumerate(batch["path"]):
        record = {"path": str(path), "status": "skipped" if batch["skip"][i] else "failed",
                  "error": str(batch["error"][i]), "megapixels": 0.0, "output": ""}
        if batch["pixels"][i] and not record["error"]:
            try:
                img = _unpack(batch["pixels"][i], str(batch["shape"][i]), str(batch["dtype"][i]))
                row = _store(img, record["path"], str(batch["output"][i]), fmt, model_id, run)
                row and rows.append({**row, "sharpness_before": float(batch["sharpness_before"][i])})
                record.update(status="done", megapixels=img.shape[0] * img.shape[1] / 1e6,
                              output=str(batch["output"][i]))
            except (OSError, ValueError) as e:
                record["error"] = _error(e)
        records.append(record)
    if rows:
        part = sinks.write_parquet_part(output, run, rows)
        for r in records:
            r["output"] = part if r["status"] == "done" else r["output"]
    now = datetime.now(timezone.utc)
    sinks.write_manifest_part(output, run, [
        {"source": r["path"], "output": r["output"], "status": r["status"], "error": r["error"],
         "model": model_id, "run": run, "time": now} for r in records if r["status"] != "skipped"])
    return {k: [r[k] for r in records] for k in ("path", "status", "error", "megapixels")}


def _store(img: np.ndarray, path: str, output: str, fmt: str, model_id: str, run: str) -> dict | None:
    """Encode one restored image and write it to ``output``; for Parquet, return its row instead."""
    codec = "png" if fmt == "parquet" else fmt
    encoded = encode(img if codec == "png" or img.dtype == np.uint8 else (img // 257).astype(np.uint8), codec)
    if fmt != "parquet":
        fs, dst = filesystem(output)
        write_atomic(fs, dst, encoded)
        return None
    return {"path": path, "image": encoded, "format": codec, "width": img.shape[1], "height": img.shape[0],
            "channels": 1 if img.ndim == 2 else img.shape[2], "model": model_id,
            "sharpness_after": sharpness(img), "run": run}


class FusedDeblurrer(Restorer):
    """All three steps in one actor (for CPU nodes): decode, de-blur, write."""

    def __init__(self, checkpoint_uri: str, fmt: str, output: str, run: str, model_id: str, gpu: bool = False,
                 tile: int = 512, pad: int = 32, max_megapixels: float = 0.0, ensemble: bool = False) -> None:
        super().__init__(checkpoint_uri, gpu, tile, pad, ensemble)
        self.sink = {"fmt": fmt, "output": output, "run": run, "model_id": model_id}
        self.max_megapixels = max_megapixels

    def __call__(self, batch: Batch) -> Batch:
        return write_batch(super().__call__(decode_batch(batch, self.max_megapixels)), **self.sink)


@torch.no_grad()
def restore_image(model: nn.Module, img: np.ndarray, channels: int, device: torch.device,
                  tile: int = 512, pad: int = 32, ensemble: bool = False) -> np.ndarray:
    """De-blur one decoded image (HW/HWC, RGB(A), uint8/uint16); returns the same shape and dtype.

    Alpha is kept aside and restored; colour images go through a 1-channel model plane by plane; large
    images go through in tiles (see :func:`deblur.tiling.tiled`); ``ensemble`` averages the 8
    flips/rotations (:func:`deblur.tiling.self_ensemble`).
    """
    fn = self_ensemble(model) if ensemble else model
    x = to_float(img)
    x = x[..., None] if x.ndim == 2 else x
    alpha = x[..., 3:] if x.shape[2] == 4 else None
    rgb = x[..., :3] if alpha is not None else x
    if channels == 1:
        planes = [rgb[..., c : c + 1] for c in range(rgb.shape[2])]
    else:
        planes = [np.repeat(rgb, channels, axis=2) if rgb.shape[2] == 1 else rgb]
    outs = [to_numpy(tiled(fn, to_tensor(p[None], device), tile, pad))[0] for p in planes]
    out = np.concatenate(outs, axis=2) if channels == 1 else outs[0]
    if rgb.shape[2] == 1 and channels != 1:
        out = out.mean(axis=2, keepdims=True)
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    return from_float(out.reshape(img.shape), img.dtype)
