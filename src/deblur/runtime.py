"""Connecting to Ray: the cluster that runs a job (``RAY_ADDRESS``, as ``ray job submit`` sets it), a head
already started on this machine (``ray start --head``), or else a fresh local one. Called only once the
arguments are known to be good, so bad input fails fast. Says on one line which it did.

Quiet unless the root logger is at DEBUG (``deblur -v``): Ray's own INFO logs, Ray Data's progress logs and
bars, Ray Train's per-report lines, Python warnings and C++ log lines from workers, and colour codes in
redirected output are all turned down; the commands print their own progress instead. The driver's own C++
note that says nothing to a user (one per Ray Data actor pool) is dropped from its standard error.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Callable

from deblur import ray_internals

log = logging.getLogger(__name__)

# Where storage is, never how to get in: passed to a cluster's workers (a command attaching to a cluster,
# jobs/submit.py) when set on this side. Credentials stay with each node's role or its own environment.
STORAGE_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                    "FSSPEC_S3_ENDPOINT_URL", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST")
JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a job's entrypoint: its runtime env is the job's


TOKEN_FILE = os.path.join("~", ".ray", "auth_token")  # where Ray keeps its token (`ray get-auth-token`)
_STARTED = {"address": None}  # the local cluster ensure_ray started in this process (nothing else shares it)


def use_token_if_present() -> bool:
    """Turn on Ray's token authentication for this client when a token is where Ray looks for one
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, :data:`TOKEN_FILE`) and ``RAY_AUTH_MODE`` was not chosen;
    returns whether token authentication is on. Every command that reaches a cluster (the CLI, the jobs,
    jobs/submit.py) calls this first, so a head started the README's way answers all of them alike."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                         or os.path.exists(os.path.expanduser(TOKEN_FILE))):
        os.environ["RAY_AUTH_MODE"] = mode = "token"
        if "ray" in sys.modules:  # Ray read its settings when imported: refresh them (as Ray's own CLI does)
            ray_internals.refresh_config()
    return mode == "token"


def storage_env() -> dict[str, str]:
    """The :data:`STORAGE_SETTINGS` set in this process."""
    return {k: os.environ[k] for k in STORAGE_SETTINGS if os.environ.get(k)}


def existing_cluster() -> str | None:
    """The address ``ray.init()`` would attach to (``RAY_ADDRESS``, else the head ``ray start`` recorded on
    this machine), or None when it would start a new local cluster."""
    return ray_internals.bootstrap_address()


def verbose() -> bool:
    """True when everything should be shown (``deblur -v`` sets the root logger to DEBUG)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def ensure_ray() -> None:
    """Initialise Ray once per process (no-op when already initialised, e.g. by a test or a job).

    A local cluster started here is watched by :mod:`deblur.reaper`, so nothing outlives a killed command.
    """
    import ray

    if ray.is_initialized():
        return
    address = existing_cluster()
    if address:
        use_token_if_present()
    loud = verbose()
    if not loud:
        _quiet_processes()
    # attaching from a shell (not as a submitted job, whose runtime env jobs/submit.py already made): the
    # cluster's workers get this side's storage settings
    env = storage_env() if address and JOB_CONFIG not in os.environ else {}
    t0 = time.monotonic()
    if address:
        log.info("ray: attaching to the cluster at %s ...", address)
    else:
        log.info("ray: starting a local cluster ...")
    if not address:  # watched from before it starts: a kill during start-up leaves nothing either
        from deblur import reaper

        reaper.start(os.getpid())
    ray.init(address=address or "local", logging_level=logging.INFO if loud else logging.WARNING,
             include_dashboard=False if not address else None,
             runtime_env={"env_vars": env} if env else None)
    _STARTED["address"] = None if address else ray.get_runtime_context().gcs_address
    if not loud:
        quiet_ray()
    resources = ray.cluster_resources()
    size = f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    if address:
        log.info("ray: attached to the cluster at %s (%s) in %.1fs", address, size, time.monotonic() - t0)
    else:
        log.info("ray: started a local cluster (%s) in %.1fs; it stops with this command", size,
                 time.monotonic() - t0)


def quiet_ray() -> None:
    """Ray's chatter in this driver turned down as the commands have it: no Ray Data progress logs or bars,
    no Ray lines repeated from workers, no C++ note from the driver. :func:`ensure_ray` calls it (unless
    ``-v``); a process that calls ``ray.init`` itself (the benchmarks) calls it after."""
    _quiet_data()
    _quiet_worker_logs()
    _quiet_driver_notes()


def cluster_is_ours() -> bool:
    """True when this process's Ray is the local cluster :func:`ensure_ray` started (gone with the command), so
    the command may take all of it; False on a cluster it attached to, which other jobs may share, and after
    that local cluster was shut down and Ray initialised again (a notebook attaching to a cluster later)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().gcs_address == _STARTED["address"]


def require_gpus() -> None:
    """Raise ValueError at once when the cluster has no GPU and its autoscaler cannot add one (``--gpu`` would
    otherwise wait for ever); when the autoscaler can, say that GPU nodes are being waited for."""
    import ray

    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1:
        return
    most = ray_internals.autoscaler_max_resources()
    if most.get("GPU", 0) >= 1:
        log.info("ray: no GPU node yet; the autoscaler can add up to %g GPUs, waiting for it", most["GPU"])
        return
    raise ValueError(f"--gpu, but the cluster has no GPU ({resources.get('CPU', 0):g} CPUs, 0 GPUs) and no node "
                     "type its autoscaler could add has one; run without --gpu, or add GPU nodes")


def _quiet_processes() -> None:
    """Settings the processes of a local cluster inherit (set before it starts; never overriding the user's)."""
    # Ray's note that a new local cluster uses token authentication (its default): said in the README
    logging.getLogger(ray_internals.TOKEN_SETUP_LOGGER).setLevel(logging.ERROR)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # deprecation notes from inside Ray's own workers
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


# Lines of Ray's own that workers print and the driver would repeat: C++ log lines, Ray Train's per-report
# line, Ray Data's execution notes. A worker's exception still ends the command with its cause.
_RAY_NOISE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \S+\.cc:\d+:|Reporting training result \d+:"
                        r"|Progress bars disabled|execution finished in [\d.]+ seconds|Starting execution of Dataset"
                        r"|Execution plan of Dataset|A new progress UI is available")
_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
# Ray Train's safety net for placement groups of a controller that died: on a cluster without Ray's dashboard
# (the commands' own local one) the state API it polls is not there, and it said so about once a second
# ("Failed to query Ray Train Controller actor state", 56 lines in a 300-step run); with -v it is heard
_QUIET_ACTORS = ("PlacementGroupCleaner",)


def _quiet_worker_logs() -> None:
    """Workers' lines reach this console without :data:`_RAY_NOISE` (Ray's own log printer, filtered)."""
    ray_internals.replace_log_printer(_filtered)


def _filtered(print_lines: Callable[[dict], None]) -> Callable[[dict], None]:
    """A printer of workers' lines that leaves out :data:`_RAY_NOISE`, Python warnings from inside Ray (with
    their source lines) and :data:`_QUIET_ACTORS`, then prints the rest with ``print_lines``."""

    def print_kept(data: dict) -> None:
        if data.get("actor_name") in _QUIET_ACTORS:
            return
        lines, skip_source = [], False
        for ln in data["lines"]:
            warned = bool(_WARNING.match(ln))  # a Python warning from inside Ray, and its source line
            if not (warned or _RAY_NOISE.search(ln) or (skip_source and ln.startswith("  "))):
                lines.append(ln)
            skip_source = warned
        if lines:
            print_lines({**data, "lines": lines})

    return print_kept


# The driver's own C++ lines that say nothing to a deblur user. Ray Data hands each actor pool its map function
# through the object store and restarts crashed actors, so Ray's core worker warns (at error level, once per
# pool) that a restart would fail were that object lost (ray-project/ray#53727); the driver holds it for as
# long as the pool lives.
_DRIVER_NOTES = (b"has constructor arguments in the object store and max_restarts > 0",)


def _quiet_driver_notes() -> None:
    """Drop :data:`_DRIVER_NOTES` from file descriptor 2, where Ray's C++ code writes them out of Python's reach.

    Descriptor 2 becomes a pipe that a thread copies line by line to the original stream, leaving those out;
    ``sys.stderr`` writes to the original stream directly (a terminal stays a terminal, for progress bars).
    Undone at exit. Skipped where ``sys.stderr`` is not the process's own (e.g. under pytest's capture).
    """
    import atexit
    import threading

    if sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    sys.stderr.flush()
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = open(os.dup(original), "w", buffering=1, encoding=sys.__stderr__.encoding,
                      errors=sys.__stderr__.errors)

    def copy() -> None:
        with open(read, "rb") as lines, open(original, "wb", closefd=False) as out:
            for line in lines:
                if not any(note in line for note in _DRIVER_NOTES):
                    out.write(line)
                    out.flush()

    thread = threading.Thread(target=copy, name="deblur-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer goes: the thread copies what is left, then ends
        thread.join(timeout=2)

    atexit.register(restore)


def _quiet_data() -> None:
    """Ray Data without its progress logs and bars (the pipeline prints its own)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"


def ship_model(model: str | None) -> object | None:
    """A public model's file (:mod:`deblur.core.catalog`) in the object store, for actors and training workers on
    nodes whose cache lacks it: the cluster downloads it once (here, in the driver), never once per actor. None
    for anything else (a path or bucket URL every node reads itself)."""
    from deblur.core import catalog

    if not (model and catalog.is_name(model)):
        return None
    import ray

    with open(catalog.fetch(model), "rb") as f:
        return ray.put(f.read())


def local_model(model: str, shipped: object | None) -> str:
    """What a worker loads for ``model``: a public model's file in this node's cache, written first from the
    object store (``shipped``, :func:`ship_model`) when it is missing there (atomically: actors of one node never
    read half a file; checked against its sha256 before use); else ``model`` as it is."""
    from deblur.core import catalog

    if shipped is None:
        return model
    path = catalog.cached_path(catalog.entry(model))
    if not os.path.isfile(path):
        import ray

        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.part"
        with open(tmp, "wb") as f:
            f.write(ray.get(shipped))
        os.replace(tmp, path)
    return catalog.fetch(model)  # the cached file, its hash checked: no download
