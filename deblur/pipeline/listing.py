"""Listing the pipeline's inputs as :class:`~deblur.pipeline.rows.InputRow` rows: a folder or bucket (the
top level here, every sub-folder by its own Ray task), one file, or a Parquet dataset of encoded images.

Each input's output key mirrors its path under the input root with the format's extension, made safe
(:func:`deblur.core.storage.safe_key`: never outside the output root); inputs the manifest records as done
are marked ``skip``; files that are not images get an ``error`` here, before any work.
"""

from __future__ import annotations

import hashlib
import posixpath

import ray.data

from deblur.core.storage import (IMAGE_EXTENSIONS, filesystem, is_process_local, read_bytes, relative_key,
                                 to_pyarrow, unstrip)
from deblur.pipeline.rows import InputRow


def input_rows(source: str, output: str, fmt: str, done: frozenset[str]) -> ray.data.Dataset:
    """An :class:`InputRow` (with ``bytes`` for memory://) for every file under ``source``.

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
            rows = [{**r, "bytes": read_bytes(r["path"])} for r in rows]
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


def _list_prefix(row: dict, root: str, output: str, fmt: str, done: frozenset[str]) -> list[InputRow]:
    fs, path = filesystem(row["prefix"])
    return describe(root, output, [unstrip(fs, p) for p in sorted(fs.find(path))], fmt, done)


def describe(root: str, output: str, urls: list[str], fmt: str, done: frozenset[str]) -> list[InputRow]:
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


def describe_named(names: list[str], output: str, fmt: str, done: frozenset[str]) -> list[InputRow]:
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
