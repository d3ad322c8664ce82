"""Connecting to Ray: the cluster that runs a job (``RAY_ADDRESS``, as ``ray job submit`` sets it), a head
already started on this machine (``ray start --head``), or else a fresh local one. Called only once the
arguments are known to be good, so bad input fails fast. Says on one line which it did."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def existing_cluster() -> str | None:
    """The address ``ray.init()`` would attach to (``RAY_ADDRESS``, else the head ``ray start`` recorded on
    this machine), or None when it would start a new local cluster."""
    from ray._private.services import canonicalize_bootstrap_address  # ray.init's own resolution

    return canonicalize_bootstrap_address(None)


def ensure_ray() -> None:
    """Initialise Ray once per process (no-op when already initialised, e.g. by a test or a job).

    A local cluster started here is watched by :mod:`deblur.reaper`, so nothing outlives a killed command.
    """
    import ray

    if ray.is_initialized():
        return
    address = existing_cluster()
    ray.init(address=address or "local", logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    size = f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    if address:
        log.info("ray: attached to the cluster at %s (%s)", address, size)
    else:
        from deblur import reaper

        reaper.start(os.getpid())
        log.info("ray: started a local cluster (%s); it stops with this command", size)
