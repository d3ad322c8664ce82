"""Cleans up after a driver that started its own local Ray and was killed (``kill -9``, OOM killer).

Ray tears its local cluster down when the driver dies, but its per-node agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) notice the dead raylet, log that they exit, and stay running. ``deblur`` therefore
starts this small watcher next to every local cluster it starts (never for a cluster it attaches to): it
remembers the driver's descendants, and once the driver is gone (its end of a pipe closes) it gives Ray a
few seconds to stop them itself and then kills what is left. Process identity is checked by psutil (pid and
start time), so a reused pid is never killed. A process the driver's Ray started after the watcher's last
look, and whose parent died before it (a raylet killed while it starts its agents), is no one's descendant
any more: it is found by the tag every process of that Ray inherits in its environment (:data:`TAG`).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

import psutil

GRACE_S = 5.0  # Ray's own teardown first
POLL_S = 0.2  # often enough to see Ray's processes as they start
TAG = "DEBLUR_REAPER_TAG"  # set in the driver's environment before Ray starts; Ray's processes inherit it


def start(driver_pid: int, ready_timeout: float = 30.0) -> None:
    """Start the watcher for ``driver_pid`` (the calling process) in its own session; returns once it has
    taken its first look at the driver's processes (at most ``ready_timeout`` seconds), so a driver killed
    right after this call is still cleaned up.

    The driver keeps the write end of a pipe open (non-inheritable, so Ray's processes do not hold it);
    the watcher sees end-of-file when the driver exits, however it exits.
    """
    read_end, write_end = os.pipe()
    ready_read, ready_write = os.pipe()
    tag = f"{driver_pid}-{os.urandom(8).hex()}"
    subprocess.Popen([sys.executable, "-m", "deblur.reaper", str(driver_pid), tag], stdin=read_end,
                     stdout=ready_write, stderr=subprocess.DEVNULL, start_new_session=True)
    os.environ[TAG] = tag  # after the watcher started: it must not find itself
    os.close(read_end)
    os.close(ready_write)
    select.select([ready_read], [], [], ready_timeout)
    os.close(ready_read)
    _keep.append(write_end)


_keep: list[int] = []  # the driver's write end lives as long as the driver


def watch(driver_pid: int, tag: str = "", pipe_fd: int = 0, ready_fd: int = 1) -> list[int]:
    """Remember ``driver_pid``'s descendants until ``pipe_fd`` closes (after one look, said on ``ready_fd``);
    then kill the survivors, and every process whose environment carries ``tag`` as :data:`TAG`.

    Returns the pids killed.
    """
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return []
    seen: dict[int, psutil.Process] = {}
    first = True
    while first or not _closed(pipe_fd, POLL_S):
        try:
            for p in driver.children(recursive=True):
                if p.pid != os.getpid():  # the watcher is the driver's child too
                    seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            break
        if first:  # tell start() it is watching
            first = False
            try:
                os.write(ready_fd, b"1")
                os.close(ready_fd)
            except OSError:
                pass
    alive = _with_children([p for p in seen.values() if p.is_running()])
    _, alive = psutil.wait_procs(alive, timeout=GRACE_S)
    alive = _with_children(alive)  # what the survivors started meanwhile (agents of a raylet starting up)
    alive = list({p.pid: p for p in alive + _tagged(tag)}.values())  # and what an exited parent left
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in alive]


def _with_children(procs: list[psutil.Process]) -> list[psutil.Process]:
    """``procs`` and every descendant they have now (a driver killed during start-up leaves a raylet that
    goes on starting its agents)."""
    out = {p.pid: p for p in procs}
    for p in procs:
        try:
            out.update((c.pid, c) for c in p.children(recursive=True) if c.pid != os.getpid())
        except psutil.NoSuchProcess:
            pass
    return list(out.values())


def _tagged(tag: str) -> list[psutil.Process]:
    """The processes (other than this one) whose environment has :data:`TAG` set to ``tag``."""
    found = []
    for p in psutil.process_iter() if tag else ():
        try:
            if p.pid != os.getpid() and p.environ().get(TAG) == tag:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _closed(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable) and os.read(fd, 1) == b""


if __name__ == "__main__":
    watch(int(sys.argv[1]), *sys.argv[2:3])
