"""Where results go: image files, Parquet rows, and the manifest (the ledger of every input seen). The
output's lease (one run at a time) is :mod:`deblur.pipeline.lease`.

Writers run inside the model actors, one batch at a time, so whatever a batch finished is on storage
before its manifest rows say so: a run killed half way loses nothing, and the next run skips what the
manifest records as done. Every file is written to a temporary name and moved into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from deblur.core.formats import PARQUET
from deblur.core.places import open_local
from deblur.core.storage import filesystem, is_local, read_bytes, sweep_temporaries, unstrip, write_atomic
from deblur.pipeline.naming import fold
from deblur.pipeline.rows import MANIFEST_SCHEMA, PARQUET_SCHEMA, ManifestRow, ParquetRow

log = logging.getLogger(__name__)
MANIFEST_DIR = "_manifest"
LEASE = "_lease.json"
IDENTITY = "_output.json"  # the output's own nonce, which names its parts and temporaries
PART_PREFIX = "deblur-part-"
RUN = r"[0-9A-Za-z][0-9A-Za-z_.-]*"
MANIFEST_FILE = re.compile(rf"^(part-{RUN}-[0-9a-f]{{12}}|manifest-{RUN})\.parquet$")  # at _manifest/'s top only


def _write_table(uri: str, table: pa.Table, replace: bool = False, nonce: str = "") -> None:
    """Write ``table`` as a Parquet file at ``uri`` under its output root (see :func:`_write`)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_own(uri, buf.getvalue(), replace, nonce)


def write_own(uri: str, data: bytes, replace: bool, nonce: str = "") -> None:
    """Write ``data`` at ``uri`` inside the output whose ``_manifest`` or parts it is (its root: the folder
    above ``_manifest``, else its own folder), through a temporary carrying the output's ``nonce``."""
    fs, path = filesystem(uri)
    write_atomic(fs, path, data, root=_root_of(path), replace=replace, prefix=temporary_prefix(nonce))


def _root_of(path: str) -> str:
    """The output root of one of its own files: the folder above ``_manifest``, else the file's folder."""
    folder = posixpath.dirname(path)
    return posixpath.dirname(folder) if posixpath.basename(folder) == MANIFEST_DIR else folder


def read_own(fs, path: str) -> bytes:
    """The content of one of the output's own files (the lease, the nonce, a part): on local disks opened as
    :func:`~deblur.core.places.open_local` allows (no link followed, no FIFO: a stranger's file at that name
    never blocks nor leads out); elsewhere within the storage deadline."""
    if is_local(fs):
        fd, _ = open_local(_root_of(path), path, follow=False)
        with os.fdopen(fd, "rb") as f:
            return f.read()
    return read_bytes(unstrip(fs, path))


def temporary_prefix(nonce: str) -> str:
    """The start of the temporaries' names under an output with this ``nonce`` (sweep_temporaries)."""
    return f".deblur-{nonce}-" if nonce else ".deblur-"


def output_nonce(output: str) -> str:
    """The output's own nonce (``_manifest/_output.json``), made on its first run: it names the output's
    parts and temporaries, so that only they are ever replaced or swept, never a look-alike of another's.
    Call it while holding the lease."""
    uri = posixpath.join(output, MANIFEST_DIR, IDENTITY)
    fs, path = filesystem(uri)
    try:
        return str(json.loads(read_own(fs, path))["nonce"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{uri} is not deblur's ({e}); move it away") from None
    nonce = uuid.uuid4().hex[:16]
    write_own(uri, json.dumps({"nonce": nonce}).encode(), replace=False)
    return nonce


def part_name(nonce: str, sources: list[str]) -> str:
    """A Parquet part's name: the output's nonce and a hash of its sources (a retried batch replaces it)."""
    digest = hashlib.sha256("\n".join(sorted(sources)).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{PART_PREFIX}{nonce}-{digest}.parquet"


def write_parquet_part(output: str, rows: list[ParquetRow], nonce: str) -> str:
    """Write result rows (see ``PARQUET_SCHEMA``) as one part file under ``output``; returns its URL.

    The part is named by the output's nonce and its sources (:func:`part_name`), so a batch that Ray
    retries (an actor died) replaces its own part instead of adding a second copy; :func:`commit_parquet`
    removes what no manifest row points to. Nothing else in the output is ever touched."""
    uri = posixpath.join(output, part_name(nonce, [r["path"] for r in rows]))
    _write_table(uri, pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA), replace=True, nonce=nonce)
    return uri


def write_manifest_part(output: str, run: str, records: list[ManifestRow], nonce: str = "") -> None:
    """Append manifest rows (see ``MANIFEST_SCHEMA``) as a new part file under ``output/_manifest``."""
    if records:
        uri = posixpath.join(output, MANIFEST_DIR, f"part-{run}-{uuid.uuid4().hex[:12]}.parquet")
        _write_table(uri, pa.Table.from_pylist(records, schema=MANIFEST_SCHEMA), nonce=nonce)


def _manifest_files(output: str) -> tuple[object, list[str]]:
    """The manifest's own files: at the top of ``_manifest``, named as deblur names them (sub-folders and
    other names are never read nor deleted)."""
    fs, root = filesystem(output)
    folder = posixpath.join(root, MANIFEST_DIR)
    fs.invalidate_cache(folder)
    if not fs.isdir(folder):
        return fs, []
    return fs, sorted(p for p in fs.ls(folder, detail=False) if MANIFEST_FILE.match(posixpath.basename(p)))


def read_manifest(output: str) -> pa.Table:
    """Every manifest row under ``output``, latest record per source (an empty table when none)."""
    return _read_parts(*_manifest_files(output))[0]


def _read_part(fs, path: str) -> pa.Table | None:
    """One manifest part, in today's schema (manifests of older versions lack some columns); None for a
    file named like one that is not (no ``source`` and ``status`` columns, or not Parquet): not ours."""
    try:
        table = pq.read_table(io.BytesIO(read_own(fs, path)))
    except (pa.ArrowException, OSError) as e:
        log.warning("%s is not a manifest part deblur wrote (%s): left alone", unstrip(fs, path), e)
        return None
    if not {"source", "status"} <= set(table.column_names):
        log.warning("%s is not a manifest part deblur wrote: left alone", unstrip(fs, path))
        return None
    for name in MANIFEST_SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), MANIFEST_SCHEMA.field(name).type))
    return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)


def _latest(table: pa.Table) -> pa.Table:
    """The latest record per source of manifest rows."""
    rows = table.sort_by([("source", "ascending"), ("time", "ascending")]).to_pylist()
    latest = {r["source"]: r for r in rows}
    return pa.Table.from_pylist(list(latest.values()), schema=MANIFEST_SCHEMA)


def _read_parts(fs, files: list[str]) -> tuple[pa.Table, list[str], pa.Table]:
    """The manifest parts ``files`` on ``fs``: (latest record per source, the files that were ours, every row)."""
    tables = {p: _read_part(fs, p) for p in files}
    ours = [p for p, t in tables.items() if t is not None]
    every = pa.concat_tables([MANIFEST_SCHEMA.empty_table(), *(tables[p] for p in ours)])
    return _latest(every), ours, every


def _format(output: str, fmt: str | None) -> str:
    """A record's output format: as recorded, else (older manifests) from its output's name."""
    if fmt:
        return fmt
    name = posixpath.basename(output or "")
    return PARQUET.name if name.startswith(PART_PREFIX) else posixpath.splitext(name)[1].lstrip(".").lower()


FOREIGN = "\0foreign"  # the owner of an output name held by a file deblur did not write (never a source)


@dataclass(frozen=True)
class Known:
    """What the manifest says, as the listing needs it: each done source's (version, output); the files in
    the output (None when not listed); which source each recorded output belongs to; whether inputs are
    versioned by content (``--detect-changes content``: decided after reading, see ``recorded``); the model
    and format each source was done with; and this run's model, format and ``redo`` (``--overwrite``: nothing
    is skipped, but another source's outputs and foreign files stay untouched)."""

    done: dict[str, tuple[str, str]] = field(default_factory=dict)
    existing: frozenset[str] | None = None
    owners: dict[str, str] = field(default_factory=dict)
    by_content: bool = False
    models: dict[str, str] = field(default_factory=dict)  # source -> the model that made its output
    model: str = ""  # this run's model id: an output another model made is redone
    formats: dict[str, str] = field(default_factory=dict)  # source -> the format its output was done in
    format: str = ""  # this run's output format: an output in another format is redone
    redo: bool = False

    def skip(self, source: str, version: str) -> bool:
        """True when ``source`` is done at this ``version`` (or one recorded without a version) by this
        run's model and in its format, and its output is still there (when checked). Never with ``redo``,
        nor by content: the stage decides once it has read it."""
        if self.redo or source not in self.done or self.by_content or not self._same(source):
            return False
        recorded, output = self.done[source]
        same = not recorded or recorded == version
        return same and (self.existing is None or output in self.existing)

    def recorded(self, source: str) -> str | None:
        """By content: the version the manifest records for ``source`` when its output is still there ("":
        none); by metadata: None."""
        if not self.by_content:
            return None
        version, output = self.done.get(source, ("", ""))
        kept = (self.existing is None or output in self.existing) and self._same(source) and not self.redo
        return version if kept else ""

    def _same(self, source: str) -> bool:
        same_model = not self.model or self.models.get(source) in (None, "", self.model)
        return same_model and (not self.format or self.formats.get(source) in (None, "", self.format))

    def owns(self, source: str, output: str) -> bool:
        """True when the manifest records ``output`` as written for ``source``: it may be replaced."""
        return self.owners.get(output) == source

    def taken(self, output: str) -> dict[str, str]:
        """The output keys under ``output`` (folded: :func:`~deblur.pipeline.naming.fold`) that are held: by the
        source the manifest gives each to, or by a file deblur did not write (:data:`FOREIGN`)."""
        prefix = output.rstrip("/") + "/"
        held = {fold(f[len(prefix):]): FOREIGN for f in self.existing or () if f.startswith(prefix)
                and not f[len(prefix):].startswith(MANIFEST_DIR + "/")}
        return held | {fold(o[len(prefix):]): s for o, s in self.owners.items() if o.startswith(prefix)}


def known(output: str, verify_outputs: bool, by_content: bool = False, model: str = "", fmt: str = "",
          redo: bool = False, nonce: str = "") -> Known:
    """The manifest under ``output`` as a :class:`Known`; with ``verify_outputs``, the output folder is
    listed once, so that outputs deleted since their run are redone and files deblur did not write keep
    their names. The output's own temporaries (its ``nonce``) that an earlier run left behind (killed, or
    its storage lost) are swept from what is listed (call it while holding the lease)."""
    rows = read_manifest(output).to_pylist()
    fs, root = filesystem(output)
    fs.invalidate_cache(root)
    where = root if verify_outputs else posixpath.join(root, MANIFEST_DIR)
    listed = fs.find(where) if fs.exists(where) else []
    swept = sweep_temporaries(fs, listed, temporary_prefix(nonce)) if nonce else 0
    if swept:
        log.info("removed %d temporary file(s) an earlier run left under %s", swept, output)
    existing = frozenset(unstrip(fs, p) for p in listed) if verify_outputs else None
    done = [r for r in rows if r["status"] == "done"]
    return Known({r["source"]: (r["version"] or "", r["output"]) for r in done}, existing,
                 {r["output"]: r["source"] for r in rows if r["output"]}, by_content,
                 {r["source"]: r["model"] or "" for r in done}, model,
                 {r["source"]: _format(r["output"], r["format"]) for r in done}, fmt, redo)


def compact_manifest(output: str, run: str, nonce: str = "") -> str:
    """Fold the manifest's own parts into one file (latest record per source); returns its URL. Files in
    ``_manifest`` that are not its parts are left alone."""
    fs, files = _manifest_files(output)
    table, ours, _ = _read_parts(fs, files)
    target = posixpath.join(filesystem(output)[1], MANIFEST_DIR, f"manifest-{run}.parquet")
    _write_table(unstrip(fs, target), table, replace=True, nonce=nonce)
    for p in ours:
        if p != target:
            fs.rm(p)
    return unstrip(fs, target)


def commit_parquet(output: str, nonce: str) -> int:
    """Make the Parquet output hold each source once: rows whose source's latest manifest record points to
    another part (an earlier version, a batch written twice) are dropped, parts left empty are deleted.

    Only deblur's own parts are touched: those the manifest records as Parquet output, and those named with
    this output's ``nonce`` (a batch written, then its run killed before its record). Any other file in the
    output, Parquet or not, however it is named, is left as it is. Only the ``path`` column is read, and a
    part is rewritten only when it holds such rows. Returns the number of rows dropped."""
    fs, files = _manifest_files(output)
    table, _, every = _read_parts(fs, files)
    ours = {o for o, f in zip(every["output"].to_pylist(), every["format"].to_pylist()) if _format(o, f) == PARQUET.name}
    mine = re.compile(rf"^{re.escape(PART_PREFIX + nonce)}-[0-9a-f]{{20}}\.parquet$")
    latest = {s: o for s, o, st in zip(table["source"].to_pylist(), table["output"].to_pylist(),
                                       table["status"].to_pylist()) if st == "done"}
    fs, root = filesystem(output)
    fs.invalidate_cache(root)
    dropped = 0
    for p in sorted(fs.ls(root, detail=False)):
        url = unstrip(fs, p)
        if not (url in ours or (nonce and mine.match(posixpath.basename(p)))):
            continue
        data = read_own(fs, p)
        keep = [latest.get(x) == url for x in pq.read_table(io.BytesIO(data), columns=["path"])["path"].to_pylist()]
        dropped += keep.count(False)
        if not any(keep):
            fs.rm(p)
        elif not all(keep):
            _write_table(url, pq.read_table(io.BytesIO(data)).filter(pa.array(keep)), replace=True, nonce=nonce)
    return dropped
