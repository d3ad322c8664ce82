"""Listing the pipeline's inputs as :class:`~deblur.pipeline.rows.InputRow` rows: a folder or bucket (the
top level here, every sub-folder by its own Ray task), one file, or a Parquet dataset of encoded images.

Each input's output key mirrors its path under the input root with the format's extension, made safe
(:func:`deblur.core.storage.safe_key`: never outside the output root); inputs the manifest records as done
are marked ``skip``; files that are not images get an ``error`` here, before any work.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter

import ray.data

from deblur.core.storage import (IMAGE_EXTENSIONS, filesystem, is_process_local, read_bytes, relative_path,
                                 safe_key, to_pyarrow, unstrip)
from deblur.pipeline.rows import InputRow
from deblur.pipeline.sinks import Known


def version_of(info: dict) -> str:
    """A file's version from its listing entry: size and ETag (buckets) or modification time (files)."""
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size', '')}:{str(tag).strip(chr(34))}"


def input_rows(source: str, output: str, fmt: str, known: Known) -> ray.data.Dataset:
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
        found = {root: fs.info(root)} if single else fs.find(root, detail=True)
        rows = describe(base, output, _files(fs, found), fmt, known)
        if is_process_local(fs):
            rows = [{**r, "bytes": read_bytes(r["path"])} for r in rows]
        return ray.data.from_items(rows)
    entries = fs.ls(root, detail=True)
    rows = describe(base, output, _files(fs, {e["name"]: e for e in entries if e["type"] == "file"}), fmt, known)
    prefixes = [{"prefix": unstrip(fs, e["name"])} for e in entries if e["type"] == "directory"]
    parts = [ray.data.from_items(rows)] if rows else []
    if prefixes:
        kwargs = {"root": base, "output": output, "fmt": fmt, "known": known}
        parts.append(ray.data.from_items(prefixes).flat_map(_list_prefix, fn_kwargs=kwargs))
    if not parts:
        raise FileNotFoundError(f"no files under {source}")
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _files(fs, found: dict[str, dict]) -> dict[str, str]:
    """URL -> version of the files in a ``find``/``ls`` listing (sorted by URL)."""
    return {unstrip(fs, p): version_of(info) for p, info in sorted(found.items()) if info.get("type") != "directory"}


def _list_prefix(row: dict, root: str, output: str, fmt: str, known: Known) -> list[InputRow]:
    fs, path = filesystem(row["prefix"])
    return describe(root, output, _files(fs, fs.find(path, detail=True)), fmt, known)


def describe(root: str, output: str, files: dict[str, str], fmt: str, known: Known) -> list[InputRow]:
    """Rows for the files (URL -> version) found under ``root``: where each one's result goes, whether to
    skip it (:meth:`Known.skip`). Hidden files, temporaries and anything inside ``output`` are left out."""
    out_prefix = filesystem(output)[1].rstrip("/") + "/"
    urls = [u for u in files if not posixpath.basename(u).startswith(".")
            and not (filesystem(u)[1] + "/").startswith(out_prefix)]
    rels = [relative_path(root, u) for u in urls]
    keys = output_keys(rels, urls, fmt, output, known) if fmt != "parquet" else [""] * len(urls)
    return [{"path": u, "output": posixpath.join(output, k) if k else "", "version": files[u],
             "skip": known.skip(u, files[u]),
             "error": "" if u.lower().endswith(IMAGE_EXTENSIONS) else
             f"unsupported file type {posixpath.splitext(u)[1] or '(none)'!r}"} for u, k in zip(urls, keys)]


def parquet_rows(source: str, column: str, output: str, fmt: str, known: Known) -> ray.data.Dataset:
    """Rows for a Parquet dataset whose ``column`` holds encoded images. A ``path`` column, when present,
    names each image (and its output); otherwise the image's content hash does."""
    fs, root = filesystem(source)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {source}")
    ds = ray.data.read_parquet(root, filesystem=to_pyarrow(fs))
    if column not in ds.columns():
        raise ValueError(f"no column {column!r} in {source}; columns: {', '.join(ds.columns())}")
    return ds.map_batches(_parquet_batch, batch_format="pyarrow",
                          fn_kwargs={"column": column, "output": output, "fmt": fmt, "known": known})


def _parquet_batch(table, column: str, output: str, fmt: str, known: Known) -> dict[str, list]:
    blobs = table[column].to_pylist()
    hashes = ["sha256-" + hashlib.sha256(b or b"").hexdigest()[:32] for b in blobs]
    names = table["path"].to_pylist() if "path" in table.column_names else [h + ".png" for h in hashes]
    rows = describe_named(names, hashes, output, fmt, known)
    return {**{k: [r[k] for r in rows] for k in rows[0]}, "bytes": blobs} if rows else {}


def describe_named(names: list[str], versions: list[str], output: str, fmt: str, known: Known) -> list[InputRow]:
    """Rows for images known by name only (no file to list; ``versions``: their content hashes); outputs
    are named after them, made safe."""
    rels = [n.split("://", 1)[-1] for n in names]
    keys = output_keys(rels, names, fmt, output, known) if fmt != "parquet" else [""] * len(names)
    return [{"path": n, "output": posixpath.join(output, k) if k else "", "version": v,
             "skip": known.skip(n, v), "error": ""} for n, k, v in zip(names, keys, versions)]


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def output_keys(rels: list[str], sources: list[str], fmt: str, output: str, known: Known) -> list[str]:
    """Output keys for inputs at relative paths ``rels`` (of ``sources``): the path with ``fmt``'s
    extension, made safe, and never the same for two inputs, deterministically:

    - inputs of one folder that share a stem (``a.jpg``, ``a.png``) keep their extension: ``a.jpg.png``;
    - a name that making it safe changed (``photo#1.png``, a backslash) gets a hash of the original
      (``photo_1-<hash>.png``), so it cannot meet a name that was safe already;
    - a key the manifest records as another source's output gets a hash of this source.
    """
    stems = Counter((posixpath.dirname(r), posixpath.splitext(posixpath.basename(r))[0].lower()) for r in rels
                    if r.lower().endswith(IMAGE_EXTENSIONS))
    keys = []
    for rel, source in zip(rels, sources):
        safe = safe_key(rel)
        stem = (posixpath.dirname(rel), posixpath.splitext(posixpath.basename(rel))[0].lower())
        base = safe if stems[stem] > 1 else posixpath.splitext(safe)[0]
        if safe != rel:
            base += "-" + _tag(rel)
        owner = known.owners.get(posixpath.join(output, base + "." + fmt))
        if owner is not None and owner != source:
            base += "-" + _tag(source)
        keys.append(base + "." + fmt)
    return keys
