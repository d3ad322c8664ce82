"""Where results go: image files, Parquet rows, and the manifest (the ledger of every input seen).

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
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from deblur.core.storage import filesystem, sweep_temporaries, unstrip, write_atomic

log = logging.getLogger(__name__)
MANIFEST_DIR = "_manifest"
LEASE = "_lease.json"
PART_PREFIX = "deblur-part-"
OUR_PART = re.compile(r"^deblur-part-[0-9a-f]{20}\.parquet$")
MANIFEST_SCHEMA = pa.schema([
    ("source", pa.string()), ("output", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("model", pa.string()), ("run", pa.string()), ("time", pa.timestamp("ms", tz="UTC")),
    ("version", pa.string()),  # the source's size and ETag or modification time when it was processed
])
PARQUET_SCHEMA = pa.schema([
    ("path", pa.string()), ("image", pa.binary()), ("format", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("channels", pa.int32()), ("model", pa.string()),
    ("sharpness_before", pa.float64()), ("sharpness_after", pa.float64()), ("run", pa.string()),
    ("icc_profile", pa.binary()),  # the source's ICC colour profile (also inside ``image``); null: none
])


def _write_table(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    fs, path = filesystem(uri)
    write_atomic(fs, path, buf.getvalue())


def write_parquet_part(output: str, rows: list[dict[str, Any]]) -> str:
    """Write result rows (see ``PARQUET_SCHEMA``) as one part file under ``output``; returns its URL.

    The part is named by its sources, so a batch that Ray retries (an actor died) replaces its part
    instead of adding a second copy; :func:`commit_parquet` removes what no manifest row points to. The
    ``deblur-part-`` prefix marks it as deblur's: nothing else in the output is ever touched."""
    digest = hashlib.sha256("\n".join(sorted(r["path"] for r in rows)).encode()).hexdigest()[:20]
    uri = posixpath.join(output, f"{PART_PREFIX}{digest}.parquet")
    _write_table(uri, pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA))
    return uri


def write_manifest_part(output: str, run: str, records: list[dict[str, Any]]) -> None:
    """Append manifest rows (see ``MANIFEST_SCHEMA``) as a new part file under ``output/_manifest``."""
    if records:
        uri = posixpath.join(output, MANIFEST_DIR, f"part-{run}-{uuid.uuid4().hex[:12]}.parquet")
        _write_table(uri, pa.Table.from_pylist(records, schema=MANIFEST_SCHEMA))


def _manifest_files(output: str) -> tuple[object, list[str]]:
    fs, root = filesystem(output)
    folder = posixpath.join(root, MANIFEST_DIR)
    fs.invalidate_cache(folder)
    if not fs.exists(folder):
        return fs, []
    return fs, sorted(p for p in fs.find(folder) if p.endswith(".parquet") and not posixpath.basename(p).startswith("."))


def read_manifest(output: str) -> pa.Table:
    """Every manifest row under ``output``, latest record per source (an empty table when none)."""
    return _read_parts(*_manifest_files(output))


def _read_part(fs, path: str) -> pa.Table:
    """One manifest part, in today's schema (manifests of older versions lack some columns)."""
    with fs.open(path, "rb") as f:
        table = pq.read_table(f)
    for name in MANIFEST_SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), MANIFEST_SCHEMA.field(name).type))
    return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)


def _latest(table: pa.Table) -> pa.Table:
    """The latest record per source of manifest rows."""
    rows = table.sort_by([("source", "ascending"), ("time", "ascending")]).to_pylist()
    latest = {r["source"]: r for r in rows}
    return pa.Table.from_pylist(list(latest.values()), schema=MANIFEST_SCHEMA)


def _read_parts(fs, files: list[str]) -> pa.Table:
    """The manifest parts ``files`` on ``fs`` as one table, latest record per source."""
    return _latest(pa.concat_tables([MANIFEST_SCHEMA.empty_table(), *(_read_part(fs, p) for p in files)]))


@dataclass(frozen=True)
class Known:
    """What the manifest says, as the listing needs it: each done source's (version, output); the outputs
    that exist (None when not checked); which source each recorded output belongs to; and whether inputs
    are versioned by content (``--detect-changes content``: decided after reading, see ``recorded``)."""

    done: dict[str, tuple[str, str]] = field(default_factory=dict)
    existing: frozenset[str] | None = None
    owners: dict[str, str] = field(default_factory=dict)
    by_content: bool = False
    models: dict[str, str] = field(default_factory=dict)  # source -> the model that made its output
    model: str = ""  # this run's model id: an output another model made is redone

    def skip(self, source: str, version: str) -> bool:
        """True when ``source`` is done at this ``version`` (or one recorded without a version) by this
        run's model, and its output is still there (when checked). Never, by content: the stage decides
        once it has read it."""
        if source not in self.done or self.by_content or not self._same_model(source):
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
        kept = (self.existing is None or output in self.existing) and self._same_model(source)
        return version if kept else ""

    def _same_model(self, source: str) -> bool:
        return not self.model or self.models.get(source) in (None, "", self.model)

    def taken(self, output: str) -> dict[str, str]:
        """The output keys (relative to ``output``, lower-cased) the manifest gives to each source."""
        prefix = output.rstrip("/") + "/"
        return {o[len(prefix):].lower(): s for o, s in self.owners.items() if o.startswith(prefix)}


def known(output: str, verify_outputs: bool, by_content: bool = False, model: str = "") -> Known:
    """The manifest under ``output`` as a :class:`Known`; with ``verify_outputs``, the output folder is
    listed once so that outputs deleted since their run are redone. Temporaries an earlier run left behind
    (killed, or its storage lost) are swept from what is listed (call it while holding the lease)."""
    rows = read_manifest(output).to_pylist()
    fs, root = filesystem(output)
    fs.invalidate_cache(root)
    where = root if verify_outputs else posixpath.join(root, MANIFEST_DIR)
    listed = fs.find(where) if fs.exists(where) else []
    swept = sweep_temporaries(fs, listed)
    if swept:
        log.info("removed %d temporary file(s) an earlier run left under %s", swept, output)
    existing = frozenset(unstrip(fs, p) for p in listed) if verify_outputs else None
    done = [r for r in rows if r["status"] == "done"]
    return Known({r["source"]: (r["version"] or "", r["output"]) for r in done}, existing,
                 {r["output"]: r["source"] for r in rows if r["output"]}, by_content,
                 {r["source"]: r["model"] or "" for r in done}, model)


def compact_manifest(output: str, run: str) -> str:
    """Fold all manifest parts into one file (latest record per source); returns its URL."""
    fs, files = _manifest_files(output)
    table = _read_parts(fs, files)
    fs_root = filesystem(output)[1]
    target = posixpath.join(fs_root, MANIFEST_DIR, f"manifest-{run}.parquet")
    _write_table(unstrip(fs, target), table)
    for p in files:
        if p != target:
            fs.rm(p)
    return unstrip(fs, target)


def commit_parquet(output: str) -> int:
    """Make the Parquet output hold each source once: rows whose source's latest manifest record points to
    another part (an earlier version, a batch written twice) are dropped, parts left empty are deleted.

    Only deblur's own parts are touched: files named by its scheme (``deblur-part-<hash>.parquet``) or that
    the manifest records as written by it (older versions' ``part-<hash>.parquet``). Any other file in the
    output, Parquet or not, is left as it is. Only the ``path`` column is read, and a part is rewritten
    only when it holds such rows. Returns the number of rows dropped."""
    fs, files = _manifest_files(output)
    every = pa.concat_tables([MANIFEST_SCHEMA.empty_table(), *(_read_part(fs, p) for p in files)])
    ours = set(every["output"].to_pylist())
    table = _latest(every)
    latest = {s: o for s, o, st in zip(table["source"].to_pylist(), table["output"].to_pylist(),
                                       table["status"].to_pylist()) if st == "done"}
    fs, root = filesystem(output)
    fs.invalidate_cache(root)
    dropped = 0
    for p in sorted(fs.ls(root, detail=False)):
        url = unstrip(fs, p)
        if not (OUR_PART.match(posixpath.basename(p)) or url in ours):
            continue
        with fs.open(p, "rb") as f:
            keep = [latest.get(x) == url for x in pq.read_table(f, columns=["path"])["path"].to_pylist()]
        dropped += keep.count(False)
        if not any(keep):
            fs.rm(p)
        elif not all(keep):
            with fs.open(p, "rb") as f:
                _write_table(url, pq.read_table(f).filter(pa.array(keep)))
    return dropped


class Lease:
    """A run's hold on its output: ``OUTPUT/_manifest/_lease.json`` names the run, its host and a heartbeat
    renewed every ``beat`` seconds. A second run on the same output refuses while the heartbeat is younger
    than ``stale`` seconds; an older one (a run that was killed) is taken over with a warning. Object stores
    have no compare-and-swap here, so two runs started in the same instant are caught by reading the lease
    back after writing it: whoever's run id is not there stops. A holder on this host whose process is gone
    (killed) is stale at once."""

    def __init__(self, output: str, run: str, beat: float = 20.0, stale: float = 90.0) -> None:
        self.uri, self.run, self.beat, self.stale = posixpath.join(output, MANIFEST_DIR, LEASE), run, beat, stale
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict | None:
        fs, path = filesystem(self.uri)
        fs.invalidate_cache(posixpath.dirname(path))
        try:
            return json.loads(fs.cat_file(path))
        except (OSError, ValueError):
            return None

    def _write(self) -> None:
        fs, path = filesystem(self.uri)
        holder = {"run": self.run, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        write_atomic(fs, path, json.dumps(holder).encode())

    def __enter__(self) -> "Lease":
        held = self._read()
        if held and held.get("run") != self.run:
            age = time.time() - float(held.get("time", 0))
            if age < self.stale and _alive(held):
                raise ValueError(f"output {self.uri.rsplit('/', 2)[0]} is in use by run {held.get('run')} on "
                                 f"{held.get('host')} (heartbeat {age:.0f}s ago); wait for it, or remove {self.uri} "
                                 "if that run is gone")
            log.warning("taking over the lease of run %s (heartbeat %.0fs ago)", held.get("run"), age)
        self._write()
        time.sleep(0.2)
        if (self._read() or {}).get("run") != self.run:
            raise ValueError(f"another run took the lease on {self.uri} at the same time; try again")
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        _held.add(self.run)
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.beat):
            try:
                self._write()
            except Exception as e:  # storage down: the run itself fails or goes on; beat again later
                log.warning("could not renew the lease %s: %s", self.uri, e)

    def __exit__(self, *exc: object) -> None:
        _held.discard(self.run)
        self._stop.set()
        if self._thread:
            self._thread.join()
        fs, path = filesystem(self.uri)
        try:
            if (self._read() or {}).get("run") == self.run:
                fs.rm(path)
        except Exception as e:  # never hide the run's own error; a later run on this host takes it over
            log.warning("could not remove the lease %s: %s", self.uri, e)


_held: set[str] = set()  # the runs holding a lease in this process


def _alive(holder: dict) -> bool:
    """False when the lease holder ran on this host and its process no longer exists, or is this process
    and no longer runs (a run whose lease could not be removed, e.g. during a storage outage)."""
    if holder.get("host") != socket.gethostname() or not holder.get("pid"):
        return True
    if int(holder["pid"]) == os.getpid():
        return holder.get("run") in _held
    return psutil.pid_exists(int(holder["pid"]))
