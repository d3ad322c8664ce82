"""deblur.core.config: one source for every default, and each config checks itself when built."""

import argparse
import dataclasses

import pytest

from deblur.cli import COMMANDS, parser
from deblur.core.config import DegradeConfig, EvalConfig, PipelineConfig, RestoreConfig, TrainConfig
from deblur.core.registry import Registry


REQUIRED = {"train": ["--data", "d", "--output", "o"], "run": ["--input", "i", "--output", "o"],
            "degrade": ["--input", "i", "--output", "o", "--degradation", "seed"], "eval": ["--data", "d", "--output", "o"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_line_with_only_the_required_flags_is_the_configs_defaults(command):
    """What argparse makes of each default (a type that converts it, a store_false flag, an appended list)
    comes back as the config's own default: the command line and the Python API run the same settings."""
    from deblur.cli import _config

    cls = COMMANDS[command]
    args = parser().parse_args([command, *REQUIRED[command]])
    given = dict(zip([a.lstrip("-").replace("-", "_") for a in REQUIRED[command][::2]], REQUIRED[command][1::2]))
    assert _config(cls, args) == cls(**given)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_setting_is_one_flag_whose_help_and_choices_are_the_configs(command):
    """Issue 23: flags, defaults, choices and help were written in cli.py beside config.py (the help drifted)."""
    sub = parser().get_default("commands")[command]
    visible = [a for a in sub._actions if a.help != argparse.SUPPRESS and a.dest != "help"]
    fields = {f.name: f for f in dataclasses.fields(COMMANDS[command])}
    assert sorted(a.dest for a in visible) == sorted(fields)  # every setting a flag, no flag without a setting
    for action in visible:
        meta = fields[action.dest].metadata
        assert action.help == meta["help"] and action.help, action.dest
        assert tuple(action.choices or ()) == tuple(meta["choices"] or ()), action.dest


@pytest.mark.parametrize("spec, message", [
    ("gaussain", "unknown blur 'gaussain'"), ("motion+nosie", "unknown corruption 'nosie'"),
    ("motion:length", "expected KEY=VALUE"), ("motion:length=9..x", "bad value"),
])
def test_a_degradation_spec_is_checked_without_the_registries(spec, message):
    from deblur.core.choices import split_degradation

    with pytest.raises(ValueError, match=message):
        split_degradation(spec)
    with pytest.raises(ValueError, match=message):
        EvalConfig("d", "o", degradation=spec)


def test_pipeline_and_eval_restore_defaults_are_the_restore_configs():
    for cls in (PipelineConfig, EvalConfig):
        for field in dataclasses.fields(RestoreConfig):
            assert getattr(cls, field.name) == getattr(RestoreConfig, field.name)


@pytest.mark.parametrize("build, message", [
    (lambda: PipelineConfig("in", "out", format="gif"), "unknown format 'gif'"),
    (lambda: PipelineConfig("in", "out", stages="half"), "unknown stages 'half'"),
    (lambda: PipelineConfig("in", "out", workers=0), "workers must be >= 1"),
    (lambda: PipelineConfig("in", "out", max_megapixels=-1), "max-megapixels must be >= 0"),
    (lambda: PipelineConfig("in", "out", tile=64, tile_pad=32), "must exceed twice the padding"),
    (lambda: PipelineConfig("in", "out", precision="fp64"), "unknown precision 'fp64'"),
    (lambda: EvalConfig("d", "o", degradation="motion:length=x"), "bad value"),
    (lambda: EvalConfig("d", "o", limit=-1), "limit must be >= 0"),
    (lambda: DegradeConfig("i", "o", "gaussian", format="tiff"), "unknown format 'tiff'"),
    (lambda: TrainConfig("d", "o", batch_size=0), "batch-size must be >= 1"),
    (lambda: TrainConfig("d", "o", lr=0), "learning rate must be > 0"),
])
def test_bad_settings_fail_when_the_config_is_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_configs_round_trip_through_dicts():
    cfg = TrainConfig("d", "o", model="unet", channels=3, model_options={"width": 8}, degradation="blind")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_a_registry_raises_on_unknown_names_and_lists_the_choices():
    reg = Registry("thing", {"b": 2, "a": 1})
    assert reg["a"] == 1 and reg.names() == ["a", "b"] and "a" in reg and list(reg) == ["a", "b"]
    with pytest.raises(ValueError, match="unknown thing 'c'; choose one of: a, b"):
        reg["c"]


def test_a_registry_must_hold_the_names_config_declares():
    assert Registry("thing", {"b": 2, "a": 1}, ("a", "b"))["b"] == 2
    with pytest.raises(RuntimeError, match="does not match"):
        Registry("thing", {"a": 1}, ("a", "b"))


def test_a_registry_that_differs_from_what_settings_declares_fails_when_built():
    """Each registry is built against its names in src/deblur/core/choices.py: one name more or fewer fails at once."""
    with pytest.raises(RuntimeError, match=r"registry \['a'\] does not match .*\['a', 'b'\]"):
        Registry("thing", {"a": 1}, ("a", "b"))
    assert Registry("thing", {"a": 1}, ("a",)).names() == ["a"]


def test_init_inherits_the_recipe_its_checkpoint_records_and_each_setting_can_be_overridden():
    """Issue 21: `deblur train --init deblur/assets/default` with no recipe flags trained on the article's blur
    with MSE at lr 1e-3 and took the shipped model from 33.66 to 31.15 dB in 20 steps."""
    from deblur.core import checkpoint
    from deblur.core.choices import ARTICLE_RECIPE

    shipped = checkpoint.read_config(checkpoint.BUNDLED)
    cfg, line = TrainConfig(data="d", output="o", init=checkpoint.BUNDLED).with_recipe(shipped)
    assert cfg.degradation == shipped["train"]["blur"] and cfg.loss == "psnr" and cfg.patch_size == 128
    assert cfg.lr == pytest.approx(shipped["train"]["lr"] / 3) and "a third of --init's" in line
    assert "(from --init)" in line and line.startswith("recipe: degradation blind")
    given, line = TrainConfig(data="d", output="o", init="x", loss="l1", lr=2e-4).with_recipe(shipped)
    assert (given.loss, given.lr, given.patch_size) == ("l1", 2e-4, 128) and "loss l1 (given)" in line
    article, _ = TrainConfig(data="d", output="o").with_recipe()
    assert {k: getattr(article, k) for k in ARTICLE_RECIPE} == ARTICLE_RECIPE


def test_unknown_keys_in_a_config_are_an_error_not_dropped():
    from deblur.core.config import PipelineConfig, TrainConfig

    with pytest.raises(ValueError, match="unknown TrainConfig option"):
        TrainConfig.from_dict({"data": "d", "output": "o", "blurr": "gaussian"})
    cfg = PipelineConfig("in", "out", batch_size=8)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
