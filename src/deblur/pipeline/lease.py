"""The lease: one run per output, nested outputs included (``OUTPUT/_manifest/_lease.json``)."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time

import psutil

from deblur.core.storage import filesystem, unstrip
from deblur.pipeline.sinks import LEASE, MANIFEST_DIR, read_own, write_own

log = logging.getLogger(__name__)


class Lease:
    """A run's hold on its output: ``OUTPUT/_manifest/_lease.json`` names the run, its host and a heartbeat
    renewed every ``beat`` seconds. A second run on the same output refuses while the heartbeat is younger
    than ``stale`` seconds; an older one (a run that was killed) is taken over with a warning. Object stores
    have no compare-and-swap here, so two runs started in the same instant are caught by reading the lease
    back after writing it: whoever's run id is not there stops. A holder on this host whose process is gone
    (killed) is stale at once."""

    def __init__(self, output: str, run: str, beat: float = 20.0, stale: float = 90.0, inside: bool = True) -> None:
        """``inside``: look for runs inside the output when the lease is taken (one listing of it); a run that
        lists its output anyway passes False and calls :meth:`refuse_inside` with that listing."""
        self.uri, self.run, self.beat, self.stale = posixpath.join(output, MANIFEST_DIR, LEASE), run, beat, stale
        self.inside = inside
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict | None:
        fs, path = filesystem(self.uri)
        fs.invalidate_cache(posixpath.dirname(path))
        try:
            return json.loads(read_own(fs, path))
        except (OSError, ValueError):
            return None

    def _write(self) -> None:
        holder = {"run": self.run, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        write_own(self.uri, json.dumps(holder).encode(), replace=True)

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
        try:
            self._refuse_nested(self._above() + (self._below(None) if self.inside else []))
        except BaseException:
            self._remove()
            raise
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        _held.add(self.run)
        return self

    def refuse_inside(self, listed: frozenset[str] | None) -> None:
        """Raise ValueError (and give the lease up) when a live run holds an output inside this one, found in
        ``listed`` (the output's files as full URLs; None: list it here)."""
        try:
            self._refuse_nested(self._below(listed))
        except BaseException:
            self.__exit__()
            raise

    def _above(self) -> list[tuple[str, str]]:
        """(lease path, how) of every folder above the output."""
        fs, path = filesystem(self.uri)
        above, folder = [], posixpath.dirname(posixpath.dirname(path))
        while posixpath.dirname(folder) not in (folder, ""):
            folder = posixpath.dirname(folder)
            above.append((posixpath.join(folder, MANIFEST_DIR, LEASE), "contains"))
        return above

    def _below(self, listed: frozenset[str] | None) -> list[tuple[str, str]]:
        """(lease path, how) of the leases inside the output, from ``listed`` (None: listed here)."""
        fs, path = filesystem(self.uri)
        root = posixpath.dirname(posixpath.dirname(path))
        if listed is None:
            fs.invalidate_cache(root)
            listed = frozenset(fs.find(root) if fs.isdir(root) else [])
        paths = (filesystem(p)[1] for p in listed if p.endswith(f"/{MANIFEST_DIR}/{LEASE}"))
        return [(p, "lies inside") for p in paths if p != path]

    def _refuse_nested(self, others: list[tuple[str, str]]) -> None:
        """Raise ValueError when a live run holds one of the ``others`` leases: an output that contains this
        one or lies inside it (its lease is read after this one is written, so of two runs starting together
        at least one sees the other)."""
        fs, path = filesystem(self.uri)
        root = posixpath.dirname(posixpath.dirname(path))
        for other, how in others:
            where = unstrip(fs, posixpath.dirname(posixpath.dirname(other)))
            held = Lease(where, "")._read()
            if held and held.get("run") != self.run and time.time() - float(held.get("time", 0)) < self.stale \
                    and _alive(held):
                raise ValueError(f"output {where}, which {how} this run's output {unstrip(fs, root)}, is in use by "
                                 f"run {held.get('run')} on {held.get('host')}; wait for it, or choose an output "
                                 "that does not nest with it")

    def _remove(self) -> None:
        fs, path = filesystem(self.uri)
        try:
            if (self._read() or {}).get("run") == self.run:
                fs.rm(path)
        except Exception as e:  # never hide the run's own error; a later run on this host takes it over
            log.warning("could not remove the lease %s: %s", self.uri, e)

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
        self._remove()


_held: set[str] = set()  # the runs holding a lease in this process


def _alive(holder: dict) -> bool:
    """False when the lease holder ran on this host and its process no longer exists, or is this process
    and no longer runs (a run whose lease could not be removed, e.g. during a storage outage)."""
    if holder.get("host") != socket.gethostname() or not holder.get("pid"):
        return True
    if int(holder["pid"]) == os.getpid():
        return holder.get("run") in _held
    return psutil.pid_exists(int(holder["pid"]))
