"""Listing the pipeline's inputs as :class:`~deblur.pipeline.rows.InputRow` rows: a folder or bucket (listed in
the driver, before Ray starts: :func:`list_inputs`), one file, or a Parquet dataset of encoded images.

Every listed entry yields exactly one row. Output keys come from :func:`deblur.pipeline.naming.output_keys`
(never the same for two inputs, never outside the output root); inputs the manifest records as done are
marked ``skip``; entries that cannot be processed get an ``error`` here, before any work: files that are
not images, symbolic links that lead nowhere, out of the input or to a folder, special files.
"""

from __future__ import annotations

import hashlib
import os
import posixpath

import pyarrow.parquet as pq
import ray.data

from deblur.core.formats import FORMATS
from deblur.core.image import admit
from deblur.core.places import lies_under, place
from deblur.core.storage import (IMAGE_EXTENSIONS, filesystem, is_local, is_process_local, printable, read_bytes,
                                 read_input, relative_path, unstrip)
from deblur.pipeline.naming import output_keys
from deblur.pipeline.rows import InputRow
from deblur.pipeline.sinks import Known


def version_of(info: dict) -> str:
    """A file's version from its listing entry: size and ETag (buckets) or modification time (files)."""
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size', '')}:{str(tag).strip(chr(34))}"


LISTING = {"num_cpus": 0}  # row-group tasks wait on storage: they never take a CPU the model actors hold


TASKS_PER_ACTOR = 8  # at least this many tasks an actor, where the inputs allow: see rows_per_task


BATCH_BYTES = 1 << 20  # --batch-size 0 (the default): a task takes about this much input, ...
MAX_BATCH = 256  # ... but no more inputs than this
UNSIZED_BATCH = 4  # ... and this many where sizes are unknown


def by_bytes(listed: int, input_bytes: int) -> int:
    """Inputs in a task when ``listed`` inputs hold ``input_bytes`` in all (:data:`BATCH_BYTES` of them)."""
    if not input_bytes:
        return UNSIZED_BATCH
    return max(1, min(MAX_BATCH, BATCH_BYTES * listed // input_bytes))


def rows_per_task(listed: int, batch_size: int, actors: int) -> int:
    """Inputs in one actor task when ``listed`` inputs go to ``actors`` model actors: ``batch_size``, or
    fewer where that would give an actor under :data:`TASKS_PER_ACTOR` tasks. A run ends with its last
    tasks, each keeping one actor busy while the others wait, so a small run is cut finer: 20 photos on two
    CPU actors ran at 0.54 Mpx/s in tasks of 4, 0.59 in tasks of 2 and 0.64 in tasks of 1 (one image a
    task costs Ray Data ~50 ms, a 1024x768 photo on one CPU thread ~2.5 s)."""
    return max(1, min(batch_size, listed // (actors * TASKS_PER_ACTOR)))


def list_inputs(source: str, output: str, fmt: str, known: Known) -> list[InputRow]:
    """An :class:`InputRow` for every entry under ``source`` (with ``bytes`` for memory://, whose files Ray's
    workers cannot see), listed here in the driver before Ray is needed: one recursive listing (an object
    store's pages one after another, one request at a time), diffed against the manifest (``known``) in one
    place. A run then starts Ray only for what is new."""
    fs, root = filesystem(source)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {source}")
    single = fs.isfile(root)
    base = unstrip(fs, posixpath.dirname(root) if single else root)
    found = {root: fs.info(root)} if single else fs.find(root, detail=True)
    rows = describe(base, output, _entries(fs, found), fmt, known)
    if not rows:
        raise FileNotFoundError(f"no files under {source}")
    if is_process_local(fs):
        rows = [{**r, "bytes": read_bytes(r["path"]) if not r["error"] and not r["skip"] else None} for r in rows]
    return rows


def task_size(rows: list[InputRow], batch_size: int, actors: int) -> int:
    """The rows each actor task should take: :func:`rows_per_task` of their count, ``batch_size`` a task
    (0: :func:`by_bytes`, from the sizes the listing gave)."""
    sizes = [int(s) for s in (str(r["version"]).split(":", 1)[0] for r in rows) if s.isdigit()]
    batch = batch_size or by_bytes(len(sizes), sum(sizes))
    return rows_per_task(len(rows), batch, actors)


def input_rows(rows: list[InputRow], per_task: int) -> ray.data.Dataset:
    """``rows`` as a dataset of blocks of ``per_task`` rows (each becomes one actor task)."""
    return ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_task)))


def _entries(fs, found: dict[str, dict]) -> dict[str, tuple[str, str, bytes]]:
    """URL -> (version, error, name) of the entries in a ``find``/``ls`` listing (sorted by URL), folders left
    out. URLs are valid UTF-8 (:func:`~deblur.core.storage.printable`); ``name`` is the local path as the OS
    gives it where it is not (b"" otherwise), to read it by. On local disks a symbolic link is followed only
    to a file inside the listed root (checked later, in :func:`describe`); its error says why not otherwise."""
    out = {}
    for p, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        version, error = version_of(info), ""
        if is_local(fs) and (info.get("islink") or info.get("type") != "file"):
            version, error = _local_entry(p)
        url = unstrip(fs, p)
        shown = printable(url)
        out[shown] = (version, error, os.fsencode(url) if shown != url else b"")
    return out


def _local_entry(path: str) -> tuple[str, str]:
    """(version, error) of a local entry that is not a plain file: a symbolic link or a special file."""
    try:
        st = os.stat(path)  # follows links
    except OSError as e:
        if os.path.islink(path):
            what = "a loop of symbolic links" if e.errno == 40 else "a dangling symbolic link"
            return "", f"{what} (to {printable(os.readlink(path))!r}): not followed"
        return "", f"cannot read: {e.strerror}"
    if os.path.isdir(path):
        return "", f"a symbolic link to a folder ({printable(os.readlink(path))!r}): not followed"
    if not os.path.isfile(path):
        return "", "not a regular file (a device, pipe or socket)"
    return f"{st.st_size}:{st.st_mtime}", ""


def describe(root: str, output: str, files: dict[str, tuple[str, str, bytes]], fmt: str, known: Known) -> list[InputRow]:
    """Rows for the entries (URL -> (version, error, name)) found under ``root``: where each one's result goes,
    whether to skip it (:meth:`Known.skip`), or why it cannot be processed. Hidden files are inputs like
    any other. Two entries whose keys are one key spelled two ways (``a/./c.png``, ``a//c.png``) are one
    file: the second is a failed row."""
    urls = list(files)
    errors = {u: files[u][1] or _error(root, u) for u in urls}
    seen: dict[str, str] = {}
    prefix = root.rstrip("/") + "/"
    rels = {u: u[len(prefix):] if u.startswith(prefix) else relative_path(root, u) for u in urls}  # as listed
    for u in sorted(urls, key=lambda u: (canonical_key(rels[u]) != rels[u], u)):  # the plain spelling first
        canon = canonical_key(rels[u])
        if canon in seen and not errors[u]:
            errors[u] = f"the same key as {seen[canon]}, spelled another way: not processed twice"
        seen.setdefault(canon, u)
    images = [u for u in urls if not errors[u]]
    keys = dict(zip(images, _keys(root, images, fmt, output, known)))
    rows, tabular = [], FORMATS[fmt].table
    for u in urls:
        key, error = keys.get(u), errors[u]
        if not error and key is None and not tabular:
            error = "no output name left that no other input or file has (a hash collision): rename it"
        version = files[u][0]
        target = posixpath.join(output, key) if key and not tabular else ""
        row = {"path": u, "output": target, "version": version, "skip": not error and known.skip(u, version),
               "error": error, "replace": bool(target) and known.owns(u, target), "name": files[u][2]}
        rows.append(row if not known.by_content else {**row, "recorded": known.recorded(u)})
    return rows


def canonical_key(rel: str) -> str:
    """A relative key with empty and ``.`` segments dropped (an object store keeps them; a disk does not)."""
    return "/".join(p for p in rel.split("/") if p not in ("", "."))


def _error(root: str, url: str) -> str:
    if not url.lower().endswith(IMAGE_EXTENSIONS):
        return f"unsupported file type {posixpath.splitext(url)[1] or '(none)'!r}"
    fs, path = filesystem(url)
    if is_local(fs) and os.path.islink(path) and not lies_under(path, filesystem(root)[1]):
        # checked again, without following anything, when it is read (places.open_local)
        return f"a symbolic link to a file outside the input ({printable(os.path.realpath(path))}): not followed"
    return ""


def _keys(root: str, urls: list[str], fmt: str, output: str, known: Known) -> list[str | None]:
    form = FORMATS[fmt]
    if form.table:
        return [""] * len(urls)
    return output_keys([relative_path(root, u) for u in urls], form.extension, known.taken(output), urls)


def parquet_rows(source: str, column: str, output: str, fmt: str, known: Known,
                 read_roots: tuple[str, ...] = (), limits: tuple[float, float] = (0.0, 0.0)) -> ray.data.Dataset:
    """Rows for a Parquet dataset whose ``column`` holds encoded images; one Ray task per row group.

    A ``path`` column, when present, names each image (and its output), and is read here, in the driver,
    so that names are given over the whole dataset at once: a path that is null, empty or repeated (every
    copy after the first) gives a failed row, whose source is ``DATASET#row=N``. Without a ``path`` column,
    an image's content hash names it. A row whose image is null is read from its path only when that lies
    under the dataset's own folder or one of ``read_roots``; otherwise it is a failed row."""
    fs, root = filesystem(source)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {source}")
    files = [root] if fs.isfile(root) else sorted(
        p for p in fs.find(root) if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_")))
    base = unstrip(fs, posixpath.dirname(root) if fs.isfile(root) else root)
    groups, names, named_rows = [], [], []
    for p in files:
        with fs.open(p, "rb") as f:
            pf = pq.ParquetFile(f)
            if column not in pf.schema_arrow.names:
                raise ValueError(f"no column {column!r} in {unstrip(fs, p)}; columns: {', '.join(pf.schema_arrow.names)}")
            named = "path" in pf.schema_arrow.names
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                groups.append({"file": unstrip(fs, p), "group": g, "first": len(names), "rows": n, "named": named})
                names.extend(pf.read_row_group(g, columns=["path"])["path"].to_pylist() if named else [None] * n)
                named_rows.extend([named] * n)
    if not groups:
        raise FileNotFoundError(f"no Parquet files under {source}")
    sources, keys, errors = name_rows(names, named_rows, f"{base}#row=", fmt, output, known)
    items = [{**g, **{k: v[g["first"]: g["first"] + g["rows"]] for k, v in
                      (("sources", sources), ("keys", keys), ("errors", errors))}} for g in groups]
    roots = (base, *read_roots)
    kwargs = {"column": column, "output": output, "fmt": fmt, "known": known, "roots": roots, "limits": limits}
    return ray.data.from_items(items).flat_map(_row_group, fn_kwargs=kwargs, **LISTING)


def name_rows(names: list[str | None], named: list[bool], anonymous: str, fmt: str, output: str,
              known: Known) -> tuple[list[str], list[str], list[str]]:
    """(source, output key, error) of each Parquet row, named ``names`` where ``named`` (its file has a
    ``path`` column; otherwise the key comes later, from the content hash). ``anonymous + N`` is the source
    of row N when its own name cannot be: null, empty, or repeated."""
    seen: set[str] = set()
    sources, errors = [], []
    for i, (n, has) in enumerate(zip(names, named)):
        error = "" if not has else "no path (null or empty)" if not isinstance(n, str) or not n.strip() else \
            "the same path as an earlier row: not processed twice" if n in seen else ""
        if has and isinstance(n, str):
            seen.add(n)
        sources.append(n if has and not error else f"{anonymous}{i}")
        errors.append(error)
    good = [i for i in range(len(names)) if named[i] and not errors[i]]
    keys = [""] * len(names)
    form = FORMATS[fmt]
    if not form.table and good:
        found = output_keys([names[i].split("://", 1)[-1] for i in good], form.extension, known.taken(output),
                            [sources[i] for i in good])
        for i, k in zip(good, found):
            keys[i], errors[i] = (k, "") if k else ("", "no output name left that no other input or file has")
    return sources, keys, errors


def _row_group(item: dict, column: str, output: str, fmt: str, known: Known,
               roots: tuple[str, ...], limits: tuple[float, float] = (0.0, 0.0)) -> list[InputRow]:
    """The rows of one row group: its images (or the files their paths name, where allowed)."""
    fs, path = filesystem(item["file"])
    with fs.open(path, "rb") as f:
        table = pq.ParquetFile(f).read_row_group(item["group"], columns=[column] + (["path"] if item["named"] else []))
    blobs = table[column].to_pylist()
    form = FORMATS[fmt]
    tabular = form.table  # results are rows of a table: no output file names
    taken = known.taken(output) if not item["named"] and not tabular else {}
    rows = []
    for i, blob in enumerate(blobs):
        source, key, error = item["sources"][i], item["keys"][i], item["errors"][i]
        name = table["path"][i].as_py() if item["named"] else None
        if not error and blob is not None and not isinstance(blob, bytes):
            blob, error = None, f"its {column!r} holds {type(blob).__name__}, not an encoded image's bytes"
        if not error and blob is None:
            blob, error = _read_named(name, roots, *limits)
        digest = "sha256-" + hashlib.sha256(blob or b"").hexdigest()[:32]
        if not item["named"]:  # no path column: the content names the image
            source = digest + ".png"
            key = "" if tabular else output_keys([source], form.extension, taken)[0] or ""
            if not tabular and not key and not error:
                error = "no output name left that no other input or file has"
        target = posixpath.join(output, key) if key else ""
        rows.append({"path": source, "output": target, "version": digest,
                     "skip": not error and known.skip(source, digest), "error": error,
                     "replace": bool(target) and known.owns(source, target), "name": b"",
                     "bytes": None if error else blob})
    return rows


def _read_named(name: str | None, roots: tuple[str, ...], max_megapixels: float,
                max_pixels_per_byte: float) -> tuple[bytes | None, str]:
    """(bytes, error) of the file a row's path names, read only when it lies under one of ``roots`` (by
    identity), and as any listed input is read (:func:`~deblur.core.storage.read_input`: no link out, no
    FIFO, nothing blocks, the header judged before the rest is read)."""
    if not name:
        return None, "no image and no path"
    url = name if "://" in name or name.startswith("/") else posixpath.join(roots[0], name)
    target = place(url)
    root = next((r for r in roots if place(r).contains(target)), None)
    if root is None:
        return None, (f"no image, and its path {name!r} lies outside the dataset's folder and every --read-root: "
                      "not read")
    try:
        return read_input(target.url, place(root).url, None, _admit(max_megapixels, max_pixels_per_byte)), ""
    except (OSError, ValueError) as e:
        return None, f"no image, and its path cannot be read: {type(e).__name__}: {e}"


def _admit(max_megapixels: float, max_pixels_per_byte: float):
    """:func:`~deblur.core.image.admit` with these limits."""
    return lambda data, size: admit(data, size, max_megapixels, max_pixels_per_byte)
