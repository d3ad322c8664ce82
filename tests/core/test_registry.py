"""deblur.core.registry: entries registered where they are defined, checked against settings at first use."""

import sys
import types

import pytest

from deblur.core.registry import Registry


def _definer(name: str, registry: Registry, *names: str) -> None:
    """A module ``name`` that registers a class for each of ``names`` when it is imported."""
    module = types.ModuleType(name)
    module.__dict__["defined"] = [registry.register(type(n, (), {"name": n})) for n in names]
    sys.modules[name] = module


def test_a_registry_imports_its_definers_at_the_first_lookup_and_checks_their_names(monkeypatch):
    things = Registry("thing", choices=("a", "b"), definers=("deblur_test_definer",))
    monkeypatch.setitem(sys.modules, "deblur_test_definer", None)  # replaced by _definer; removed after
    _definer("deblur_test_definer", things, "a", "b")
    assert things.names() == ["a", "b"] and things["b"].name == "b"
    with pytest.raises(RuntimeError, match="thing 'a' is registered twice"):
        things.register(type("A", (), {"name": "a"}))


def test_a_definer_that_misses_a_declared_name_fails_at_the_first_lookup(monkeypatch):
    things = Registry("thing", choices=("a", "b"), definers=("deblur_test_short",))
    monkeypatch.setitem(sys.modules, "deblur_test_short", None)
    _definer("deblur_test_short", things, "a")
    with pytest.raises(RuntimeError, match=r"thing registry \['a'\] does not match .*\['a', 'b'\]"):
        things["a"]


def test_every_blur_and_corruption_is_registered_where_it_is_defined():
    from deblur.core import blurs, degrade
    from deblur.core.choices import BLUR_NAMES, CORRUPTION_NAMES

    assert blurs.BLURS.names() == sorted(BLUR_NAMES) and degrade.CORRUPTIONS.names() == sorted(CORRUPTION_NAMES)
    homes = {name: cls.__module__ for name, cls in blurs.BLURS.items()}
    assert homes["warp"] == homes["real"] == "deblur.core.camera"
    assert {m for n, m in homes.items() if n not in ("warp", "real")} == {"deblur.core.kernels"}
