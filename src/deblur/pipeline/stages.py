"""The pipeline's three stages, as Ray Data batch functions over the rows the listing makes
(:mod:`deblur.pipeline.rows` declares each stage's row):

  decode_batch (CPU)  ->  ModelStage (the model; a GPU with ``--gpu``)  ->  write_batch (CPU)

With GPUs they run as separate stages, so GPU actors only run the model while reading, decoding, encoding
and writing stay on CPUs. On CPUs one actor runs all three (:class:`FusedStage`), so each image crosses the
object store once. Every row ends as one :class:`~deblur.pipeline.rows.Record` (done / skipped / failed)
and, with its batch, in the manifest. This module needs no Ray itself: Ray Data calls it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from deblur.core.formats import FORMATS
from deblur.core.image import admit, decode_with_metadata
from deblur.core.metrics import sharpness
from deblur.core.storage import filesystem, read_input, write_atomic
from deblur.pipeline import sinks
from deblur.pipeline.rows import EMPTY, RECORD_KEYS, Batch, ParquetRow, manifest_row, pack, parquet_row, unpack
from deblur.runtime import local_model


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def content_version(data: bytes) -> str:
    """An input's version by content (``--detect-changes content``): a hash of its bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


def decode_batch(batch: Batch, root: str = "", max_megapixels: float = 0.0, max_pixels_per_byte: float = 0.0,
                 multi_frame: str = "refuse", measure: bool = True) -> Batch:
    """InputRow -> DecodedRow: read (as :func:`~deblur.core.storage.read_input` allows, under the input
    ``root``) and decode each row's image (EXIF-upright, as stored: grey/RGB/RGBA, 8/16-bit); a row that
    cannot be read or decoded gets its ``error``. Rows with a ``recorded`` version (``--detect-changes
    content``) are versioned by their content, and skipped when it is unchanged. ``measure``: the input's
    sharpness is measured (a table output keeps it; image files do not, and it stays 0.0)."""
    decoded = _decode(batch, root, max_megapixels, max_pixels_per_byte, multi_frame, measure)
    packed = [pack(img) if img is not None else EMPTY for img in decoded["pixels"]]
    return decoded | {key: [p[key] for p in packed] for key in EMPTY}


def listed_size(version: str) -> int | None:
    """The size a listing version (``SIZE:TAG``) records, or None (a content version, or none)."""
    head = version.split(":", 1)[0]
    return int(head) if head.isdigit() else None


def _decode(batch: Batch, root: str = "", max_megapixels: float = 0.0, max_pixels_per_byte: float = 0.0,
            multi_frame: str = "refuse", measure: bool = True) -> Batch:
    """:func:`decode_batch` with each image as a numpy array in ``pixels`` (None when there is none)."""
    n = len(batch["path"])
    blobs, recorded = batch.get("bytes", [None] * n), batch.get("recorded", [None] * n)
    names = batch.get("name", [b""] * n)
    skips, versions = [bool(s) for s in batch["skip"]], [str(v) for v in batch["version"]]
    cols: dict[str, list] = {"pixels": [], "sharpness_before": [], "exif": [], "icc": [], "error": []}
    admitted = functools.partial(admit, max_megapixels=max_megapixels, max_pixels_per_byte=max_pixels_per_byte)
    for i, (path, error, data, before) in enumerate(zip(batch["path"], batch["error"], blobs, recorded)):
        img, sharp, exif, icc = None, 0.0, b"", b""
        if not skips[i] and not error:
            try:
                if data is None:
                    url = os.fsdecode(bytes(names[i])) if names[i] is not None and len(names[i]) else str(path)
                    data = read_input(url, root, listed_size(versions[i]), admitted)
                if before is not None:
                    versions[i] = content_version(data)
                    skips[i] = versions[i] == before
                if not skips[i]:
                    img, exif, icc = decode_with_metadata(data, max_megapixels, multi_frame)
                    sharp = sharpness(img) if measure else 0.0
            except (OSError, ValueError) as e:  # one bad input never stops the run
                error = _error(e)
        for key, value in (("pixels", img), ("sharpness_before", sharp), ("exif", exif), ("icc", icc),
                           ("error", str(error))):
            cols[key].append(value)
    rest = {k: v for k, v in batch.items() if k not in ("bytes", "recorded", "name")}
    return rest | cols | {"skip": skips, "version": versions}


class ModelStage:
    """Ray Data actor: loads the checkpoint once, when it first has an image to restore (a run whose
    inputs are all skipped never loads it), restores each DecodedRow's pixels in place (images of one size
    share model calls) and names the precision and engine it ran in."""

    def __init__(self, checkpoint_uri: str, gpu: bool, options: dict[str, Any], model: str | None = None,
                 shipped: Any = None) -> None:
        """``model``, ``shipped``: a public model's name and its file in the object store, for a node whose cache
        lacks it (:func:`deblur.runtime.local_model`)."""
        self.checkpoint_uri, self.gpu, self.options = checkpoint_uri, gpu, options
        self.model, self.shipped = model, shipped

    @functools.cached_property
    def restorer(self) -> Any:
        """The :class:`~deblur.core.restore.Restorer`, loaded on first use, with as many CPU threads as Ray
        gave the actor CPUs (``OMP_NUM_THREADS``, which Ray sets), at most the cores it may run on."""
        import torch  # here, not above: the decode and write tasks need no torch

        from deblur.core import restore

        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) >= 1:  # torch reads it at import only: an import before Ray set it
            # (a setup hook's) left a thread per core in every actor; never more threads than the process's cores
            torch.set_num_threads(min(int(threads), _cores()))
        device = restore.default_device() if self.gpu else "cpu"
        uri = local_model(self.model, self.shipped) if self.shipped is not None else self.checkpoint_uri
        return restore.load(uri, device, **self.options)

    def __call__(self, batch: Batch) -> Batch:
        images = [unpack(p, str(s), str(d)) if p else None for p, s, d in
                  zip(batch["pixels"], batch["shape"], batch["dtype"])]
        restored = self.restore(batch | {"pixels": images})
        return restored | {"pixels": [img.tobytes() if img is not None else b"" for img in restored["pixels"]]}

    def restore(self, batch: Batch) -> Batch:
        """A batch with numpy images (or None) in ``pixels``, restored; a failure (e.g. out of memory)
        fails its images only."""
        pixels, errors = list(batch["pixels"]), list(batch["error"])
        todo = [i for i, img in enumerate(pixels) if img is not None]
        if not todo:
            return {**batch, "precision": [""] * len(pixels)}
        try:
            for i, img in zip(todo, self.restorer.restore_many([pixels[i] for i in todo])):
                pixels[i] = img
        except RuntimeError:
            for i in todo:  # one at a time, so that only the image that fails fails
                try:
                    pixels[i] = self.restorer.restore_array(pixels[i])
                except RuntimeError as e:
                    pixels[i], errors[i] = None, _error(e)
        o = self.restorer.options
        precision = [f"{o.precision} ({o.engine})"] * len(pixels)
        return {**batch, "pixels": pixels, "error": errors, "precision": precision}


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_batch(batch: Batch, fmt: str, output: str, run: str, model_id: str, nonce: str = "") -> Batch:
    """DecodedRow -> Record: encode and write each restored row (a file, or one Parquet part per batch),
    then the batch's manifest rows. ``pixels`` holds packed bytes, or (in one actor) numpy images. A file
    is written over only where the row may ``replace`` it; temporaries carry the output's ``nonce``.

    Image files are announced first: a manifest part records each output as ``writing`` for its source, so
    a file written by a run killed before its final record is still known as deblur's (and is replaced by
    the next run, not kept as a stranger's)."""
    n = len(batch["path"])
    replace = batch.get("replace", [False] * n)
    todo = [i for i in range(n) if _has_pixels(batch["pixels"][i]) and not str(batch["error"][i])]
    stamp = _now()
    if not FORMATS[fmt].table and todo:
        sinks.write_manifest_part(output, run, [
            manifest_row(str(batch["path"][i]), str(batch["output"][i]), "writing", "", batch["version"][i],
                         model_id, run, stamp, fmt) for i in todo], nonce)
    records, rows = [], []  # rows: ParquetRow, for a table format
    for i, path in enumerate(batch["path"]):
        record = {"path": str(path), "status": "skipped" if batch["skip"][i] else "failed", "output": "",
                  "error": str(batch["error"][i]), "megapixels": 0.0, "version": str(batch["version"][i]),
                  "precision": ""}
        if i in todo:
            try:
                img = _image(batch, i)
                row = _store(img, record["path"], str(batch["output"][i]), fmt, model_id, run,
                             float(batch["sharpness_before"][i]), bytes(batch["exif"][i]), bytes(batch["icc"][i]),
                             (output, bool(replace[i]), nonce))
                if row is not None:
                    rows.append(row)
                record.update(status="done", megapixels=img.shape[0] * img.shape[1] / 1e6,
                              output=str(batch["output"][i]), precision=str(batch.get("precision", [""] * n)[i]))
            except (OSError, ValueError) as e:
                record["error"] = _error(e)
        records.append(record)
    if rows:
        part = sinks.write_parquet_part(output, rows, nonce)
        for r in records:
            r["output"] = part if r["status"] == "done" else r["output"]
    now = max(_now(), stamp + timedelta(milliseconds=1))  # after the announcement, never at its time
    sinks.write_manifest_part(output, run, [
        manifest_row(r["path"], r["output"], r["status"], r["error"], r["version"], model_id, run, now, fmt)
        for r in records if r["status"] != "skipped"], nonce)
    for r in records:
        r["written"] = now.timestamp()
    return {k: [r[k] for r in records] for k in RECORD_KEYS}


def _has_pixels(pixels: Any) -> bool:
    return pixels is not None and len(pixels) > 0


def _image(batch: Batch, i: int) -> np.ndarray:
    """Row ``i``'s image: numpy already (in one actor), or packed bytes."""
    pixels = batch["pixels"][i]
    return pixels if isinstance(pixels, np.ndarray) else unpack(pixels, str(batch["shape"][i]), str(batch["dtype"][i]))


def _now() -> datetime:
    """Now, to the millisecond (the manifest keeps milliseconds)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _store(img: np.ndarray, path: str, output: str, fmt: str, model_id: str, run: str, sharpness_before: float,
           exif: bytes, icc: bytes, where: tuple[str, bool, str] = ("", True, "")) -> ParquetRow | None:
    """Encode one restored image (with the source's EXIF and ICC profile) and write it to ``output``
    inside ``where``'s output root (replacing a file there only where ``where`` says it is ours, through
    a temporary with its nonce: :func:`~deblur.core.storage.write_atomic`); for Parquet, return its row
    instead."""
    form = FORMATS[fmt]
    encoded = form.encode(img, exif, icc)
    if not form.table:
        fs, dst = filesystem(output)
        root, replace, nonce = where
        write_atomic(fs, dst, encoded, root=filesystem(root)[1] if root else "", replace=replace,
                     prefix=sinks.temporary_prefix(nonce))
        return None
    return parquet_row(path, encoded, form.codec, img.shape, model_id, sharpness_before, sharpness(img), run, icc)


class FusedStage(ModelStage):
    """All three stages in one actor (for CPU nodes), image by image: each image is decoded, restored and
    written before the next is read, except that small images are gathered up to ``budget`` pixels (0: a
    model call's, :func:`tiles.budget`) to share model calls. Images stay numpy arrays throughout (never packed), so an actor holds about one image's
    input and output at a time, whatever the batch size."""

    def __init__(self, checkpoint_uri: str, gpu: bool, options: dict[str, Any], sink: dict[str, str],
                 decode: dict[str, Any], budget: int = 0, model: str | None = None, shipped: Any = None) -> None:
        super().__init__(checkpoint_uri, gpu, options, model, shipped)
        self.sink, self.decode, self._budget = sink, decode, budget

    @functools.cached_property
    def budget(self) -> int:
        """Pixels gathered for one model call (the device's, :func:`tiles.budget`, unless given)."""
        from deblur.core import tiles  # in the actor only, as ModelStage's restore

        return self._budget or tiles.budget(self.restorer.device)

    def __call__(self, batch: Batch) -> Batch:
        records: list[Batch] = []
        pending: list[Batch] = []
        pixels = 0
        n = len(batch["path"])
        for i in range(n):
            row = _decode(take(batch, [i]), **self.decode)
            pending.append(row)
            img = row["pixels"][0]
            pixels += img.shape[0] * img.shape[1] if img is not None else 0
            if i == n - 1 or (pixels and pixels >= self.budget):
                records.append(write_batch(self.restore(concat(pending)), **self.sink))
                pending, pixels = [], 0
        return concat(records)


def take(batch: Batch, rows: list[int]) -> Batch:
    """The rows ``rows`` of ``batch``, as a batch."""
    return {k: [v[i] for i in rows] for k, v in batch.items()}


def concat(batches: list[Batch]) -> Batch:
    """Batches with the same columns, one after the other."""
    return {k: [x for b in batches for x in b[k]] for k in batches[0]}
