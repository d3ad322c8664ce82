"""Every private Ray API deblur relies on, each once, here (tests/test_ray_internals.py fails on a Ray that
changes one of them; the version tested is constraints.txt's).

Ray offers no public way to do these; each says what breaks without it:

- :func:`refresh_config`: Ray reads ``RAY_AUTH_MODE`` once, when imported; a command that turns token
  authentication on afterwards must have Ray read its settings again (as Ray's own CLI does).
- :func:`bootstrap_address`: the address ``ray.init()`` would attach to (``RAY_ADDRESS``, else the head
  ``ray start`` recorded), decided before Ray starts, so that a run knows whether the cluster is its own.
- :func:`autoscaler_max_resources`: what the autoscaler could add, as Ray Train reads it, so ``--gpu`` on a
  cluster without GPUs fails at once instead of waiting for ever.
- :data:`TOKEN_SETUP_LOGGER`: the logger of Ray's note that a new local cluster uses token authentication.
- :func:`replace_log_printer`: the driver's printer of workers' lines, filtered of Ray's own chatter.
- :data:`SIGINT_HOOK`: the method of Ray Train's ``DataParallelTrainer`` that installs its Ctrl-C handler,
  which :class:`deblur.train.trainer._Trainer` overrides so that Ctrl-C ends the caller too.
"""

from __future__ import annotations

from typing import Any, Callable

TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"
SIGINT_HOOK = "_register_sigint_handler"


def refresh_config() -> None:
    """Make the imported Ray read its settings (``RAY_*`` variables) again."""
    from ray._raylet import Config

    Config.initialize("")


def bootstrap_address() -> str | None:
    """The address ``ray.init()`` would attach to, or None when it would start a local cluster."""
    from ray._private.services import canonicalize_bootstrap_address  # ray.init's own resolution

    return canonicalize_bootstrap_address(None)


def autoscaler_max_resources() -> dict[str, float]:
    """The most of each resource the autoscaler's node types could add ({} on a fixed cluster)."""
    from ray._private.state import state  # the autoscaler's cluster config, as Ray Train reads it

    try:
        return state.get_max_resources_from_cluster_config() or {}
    except Exception:  # no autoscaler config to read: a fixed cluster
        return {}


def replace_log_printer(make: Callable[[Callable[[dict[str, Any]], None]], Callable[[dict[str, Any]], None]]) -> None:
    """Replace the driver's printer of workers' lines by ``make(print_lines)``, where ``print_lines(data)``
    prints a batch of lines (``data["lines"]``, from ``data["actor_name"]``...) as Ray would."""
    from ray._private import worker

    def print_lines(data: dict[str, Any]) -> None:
        worker.print_to_stdstream(data, ignore_prefix=False)

    dispatcher = worker.global_worker_stdstream_dispatcher
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", make(print_lines))
