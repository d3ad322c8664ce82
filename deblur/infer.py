"""Batch de-blurring with Ray Data: list (in parallel, per top-level prefix) -> stages -> records.

``run`` is the only function that takes a :class:`DeblurConfig` apart. The stages (:mod:`deblur.stages`)
read and decode (EXIF-upright, grey/RGB/RGBA, 8/16-bit), de-blur in tiles with the checkpoint loaded once
per actor, encode, write, and append each batch's manifest rows. Every input yields one record: a bad
file is an error row, never fatal; inputs already done (per the manifest) are skipped unless
``overwrite``.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import ray.data
from ray.data import ActorPoolStrategy

from deblur import checkpoint, sinks
from deblur.config import DeblurConfig
from deblur.io import (IMAGE_EXTENSIONS, OUTPUT_FORMATS, filesystem, is_process_local, relative_key,
                       to_pyarrow, unstrip)
from deblur.runtime import ensure_ray
from deblur.stages import FusedDeblurrer, Restorer, decode_batch, write_batch

log = logging.getLogger(__name__)
FORMATS = (*OUTPUT_FORMATS, "parquet")


@dataclass(frozen=True)
class Summary:
    """What a run did: counts by status, wall time, megapixels processed, the manifest written."""

    done: int
    skipped: int
    failed: int
    seconds: float
    megapixels: float
    output: str
    manifest: str

    def line(self) -> str:
        s = max(self.seconds, 1e-9)
        return (f"{self.done} done, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f}s "
                f"({self.done / s:.2f} images/s, {self.megapixels / s:.2f} Mpx/s) -> {self.output} "
                f"(manifest {self.manifest})")


def run(cfg: DeblurConfig) -> Summary:
    """De-blur every image under ``cfg.input`` into ``cfg.output``; returns the summary."""
    if cfg.format not in FORMATS:
        raise ValueError(f"unknown format {cfg.format!r}; choose one of: {', '.join(FORMATS)}")
    if is_process_local(filesystem(cfg.output)[0]):
        raise ValueError("memory:// cannot be an output: Ray workers run in other processes")
    source, output = absolute(cfg.input), absolute(cfg.output)  # workers may run elsewhere
    ckpt = checkpoint.resolve(cfg.model)
    checkpoint.load(ckpt)  # fail fast, in the driver, on an unreadable checkpoint
    model = checkpoint.model_id(ckpt)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    done = frozenset() if cfg.overwrite else sinks.done_sources(output)
    ensure_ray()
    t0 = time.perf_counter()
    if cfg.input_column:
        ds = parquet_rows(source, cfg.input_column, output, cfg.format, done)
    else:
        ds = input_rows(source, output, cfg.format, done)
    ds = add_stages(ds, cfg, ckpt, {"fmt": cfg.format, "output": output, "run": run_id, "model_id": model})
    status, mpx = Counter(), 0.0
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        status.update(batch["status"].tolist())
        mpx += float(batch["megapixels"].sum())
        for path, st, err in zip(batch["path"], batch["status"], batch["error"]):
            if st == "failed":
                log.warning("failed: %s: %s", path, err)
    manifest = sinks.compact_manifest(output, run_id)
    if cfg.overwrite and cfg.format == "parquet":
        sinks.drop_parquet_parts(output, run_id)
    return Summary(status["done"], status["skipped"], status["failed"], time.perf_counter() - t0, mpx,
                   cfg.output, manifest)


def add_stages(ds: ray.data.Dataset, cfg: DeblurConfig, ckpt: str, sink: dict) -> ray.data.Dataset:
    """decode -> model -> write: separate stages when the model runs on GPUs (``--stages split``, the
    default with ``--gpu``), one fused CPU actor otherwise; see :mod:`deblur.stages`."""
    model = {"checkpoint_uri": ckpt, "gpu": cfg.gpu, "tile": cfg.tile, "pad": cfg.tile_pad,
             "ensemble": cfg.self_ensemble}
    actors = {"compute": ActorPoolStrategy(size=cfg.workers), "num_gpus": 1 if cfg.gpu else 0,
              "batch_size": cfg.batch_size, "batch_format": "numpy",
              **({"resources": cfg.actor_resources} if cfg.actor_resources else {})}
    if cfg.stages == "fused" or (cfg.stages == "auto" and not cfg.gpu):
        return ds.map_batches(FusedDeblurrer, fn_constructor_kwargs={
            **model, **sink, "max_megapixels": cfg.max_megapixels}, **actors)
    ds = ds.map_batches(decode_batch, fn_kwargs={"max_megapixels": cfg.max_megapixels},
                        batch_size=cfg.batch_size, batch_format="numpy")
    ds = ds.map_batches(Restorer, fn_constructor_kwargs=model, **actors)
    return ds.map_batches(write_batch, fn_kwargs=sink, batch_size=cfg.batch_size, batch_format="numpy")


def absolute(uri: str) -> str:
    """``uri`` with a local path made absolute (other URLs unchanged)."""
    fs, path = filesystem(uri)
    return unstrip(fs, path)


def input_rows(source: str, output: str, fmt: str, done: frozenset[str]) -> ray.data.Dataset:
    """Rows ``path``, ``output``, ``skip`` (and ``bytes`` for memory://) for every file under ``source``.

    The top level is listed here; each sub-folder is listed by its own Ray task, so a bucket with
    millions of objects starts producing results as soon as its first prefix is listed.
    """
    fs, root = filesystem(source)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {source}")
    single = fs.isfile(root)
    base = unstrip(fs, posixpath.dirname(root) if single else root)
    if single or is_process_local(fs):  # memory:// is invisible to workers: list and read it here
        rows = describe(base, output, [unstrip(fs, p) for p in ([root] if single else fs.find(root))], fmt, done)
        if is_process_local(fs):
            rows = [{**r, "bytes": fs.cat_file(filesystem(r["path"])[1])} for r in rows]
        return ray.data.from_items(rows)
    entries = fs.ls(root, detail=True)
    rows = describe(base, output, [unstrip(fs, e["name"]) for e in entries if e["type"] == "file"], fmt, done)
    prefixes = [{"prefix": unstrip(fs, e["name"])} for e in entries if e["type"] == "directory"]
    parts = [ray.data.from_items(rows)] if rows else []
    if prefixes:
        kwargs = {"root": base, "output": output, "fmt": fmt, "done": done}
        parts.append(ray.data.from_items(prefixes).flat_map(_list_prefix, fn_kwargs=kwargs))
    if not parts:
        raise FileNotFoundError(f"no files under {source}")
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _list_prefix(row: dict, root: str, output: str, fmt: str, done: frozenset[str]) -> list[dict]:
    fs, path = filesystem(row["prefix"])
    return describe(root, output, [unstrip(fs, p) for p in sorted(fs.find(path))], fmt, done)


def describe(root: str, output: str, urls: list[str], fmt: str, done: frozenset[str]) -> list[dict]:
    """Rows for the files ``urls`` found under ``root``: where each one's result goes, whether to skip it.

    Hidden files, temporaries and anything inside ``output`` are left out.
    """
    out_prefix = filesystem(output)[1].rstrip("/") + "/"
    urls = [u for u in urls if not posixpath.basename(u).startswith(".")
            and not (filesystem(u)[1] + "/").startswith(out_prefix)]
    keys = output_keys(root, urls, fmt) if fmt != "parquet" else [""] * len(urls)
    return [{"path": u, "output": posixpath.join(output, k) if k else "", "skip": u in done,
             "error": "" if u.lower().endswith(IMAGE_EXTENSIONS) else
             f"unsupported file type {posixpath.splitext(u)[1] or '(none)'!r}"} for u, k in zip(urls, keys)]


def parquet_rows(source: str, column: str, output: str, fmt: str, done: frozenset[str]) -> ray.data.Dataset:
    """Rows for a Parquet dataset whose ``column`` holds encoded images. A ``path`` column, when present,
    names each image (and its output); otherwise the image's content hash does."""
    fs, root = filesystem(source)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {source}")
    ds = ray.data.read_parquet(root, filesystem=to_pyarrow(fs))
    if column not in ds.columns():
        raise ValueError(f"no column {column!r} in {source}; columns: {', '.join(ds.columns())}")
    return ds.map_batches(_parquet_batch, batch_format="pyarrow",
                          fn_kwargs={"column": column, "output": output, "fmt": fmt, "done": done})


def _parquet_batch(table, column: str, output: str, fmt: str, done: frozenset[str]) -> dict[str, list]:
    blobs = table[column].to_pylist()
    names = table["path"].to_pylist() if "path" in table.column_names else [
        "sha256-" + hashlib.sha256(b or b"").hexdigest()[:32] + ".png" for b in blobs]
    rows = describe_named(names, output, fmt, done)
    return {**{k: [r[k] for r in rows] for k in rows[0]}, "bytes": blobs} if rows else {}


def describe_named(names: list[str], output: str, fmt: str, done: frozenset[str]) -> list[dict]:
    """Rows for images known by name only (no file to list); outputs are named after them, made safe."""
    keys = output_keys("", names, fmt) if fmt != "parquet" else [""] * len(names)
    return [{"path": n, "output": posixpath.join(output, k) if k else "", "skip": n in done, "error": ""}
            for n, k in zip(names, keys)]


def output_keys(root: str, urls: list[str], fmt: str) -> list[str]:
    """Output keys mirroring each input's path under ``root`` with ``fmt``'s extension; unique, safe."""
    keys, seen = [], set()
    for url in urls:
        rel = relative_key(root, url)
        key = posixpath.splitext(rel)[0] + "." + fmt
        if key in seen:  # a.jpg and a.png in one folder: keep both
            key = rel + "." + fmt
        seen.add(key)
        keys.append(key)
    return keys
