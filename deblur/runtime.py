"""Connecting to Ray: the cluster that runs a job (``RAY_ADDRESS``, as ``ray job submit`` sets it), or a
fresh local one. Called only once the arguments are known to be good, so bad input fails fast."""

from __future__ import annotations

import logging


def ensure_ray() -> None:
    """Initialise Ray once per process (no-op when already initialised, e.g. by a test or a job)."""
    import ray

    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)
