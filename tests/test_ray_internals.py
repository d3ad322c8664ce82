"""deblur.ray_internals: each private Ray API deblur uses still exists and behaves as deblur relies on, in the
installed Ray. A Ray release that renames or changes one fails here, not in a user's run."""

import inspect
import logging

from deblur import ray_internals


def test_the_bootstrap_address_is_ray_inits_own(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert ray_internals.bootstrap_address() == "10.1.2.3:6379"


def test_ray_reads_its_settings_again_when_asked():
    ray_internals.refresh_config()  # raises where ray._raylet.Config.initialize is gone


def test_the_autoscalers_resources_are_read_where_ray_train_reads_them():
    from ray._private.state import state

    assert callable(state.get_max_resources_from_cluster_config)
    assert isinstance(ray_internals.autoscaler_max_resources(), dict)  # {} here: no autoscaler config


def test_the_token_note_comes_from_the_named_logger():
    import ray._private.authentication.authentication_token_setup as setup

    assert setup.logger is logging.getLogger(ray_internals.TOKEN_SETUP_LOGGER)


def test_the_workers_log_printer_is_replaced_and_sees_each_batch_of_lines():
    from ray._private import worker

    dispatcher = worker.global_worker_stdstream_dispatcher
    before = list(dispatcher.handlers)
    seen = []
    try:
        ray_internals.replace_log_printer(lambda print_lines: seen.append)
        dispatcher.emit({"lines": ["hello"], "actor_name": "A", "pid": 1, "ip": "127.0.0.1", "is_err": False})
        assert seen and seen[0]["lines"] == ["hello"]
        assert [name for name, _ in dispatcher.handlers].count("ray_print_logs") == 1
        assert list(inspect.signature(worker.print_to_stdstream).parameters) == ["data", "ignore_prefix"]
    finally:
        dispatcher.handlers = before


def test_ray_trains_ctrl_c_hook_is_the_one_deblurs_trainer_overrides():
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from deblur.train.trainer import _Trainer

    hook = getattr(DataParallelTrainer, ray_internals.SIGINT_HOOK)
    assert list(inspect.signature(hook).parameters) == ["self", "controller"]
    assert f"self.{ray_internals.SIGINT_HOOK}(" in inspect.getsource(DataParallelTrainer)  # fit installs it
    assert ray_internals.SIGINT_HOOK in vars(_Trainer)
