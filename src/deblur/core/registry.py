"""Registries: name -> thing, in one style for models, blurs, corruptions, losses and schedules.

Looking up a name that is not registered raises ``ValueError`` naming the choices, so a typo in a spec,
a flag or a checkpoint fails at once instead of silently picking something else.

A registry is filled at once (``Registry(kind, entries, choices)``) or where each entry is defined
(``@REGISTRY.register`` on a class with a ``name``, as timm and BasicSR register theirs); the modules that
define entries (``definers``) are imported at the first lookup, so every entry is there whoever asks first.
Either way its names must be the ones :mod:`deblur.core.choices` declares for it (``choices``).
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """A read-only mapping of names to ``T`` that raises on unknown names; ``kind`` names it in errors."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None, choices: tuple[str, ...] | None = None,
                 definers: tuple[str, ...] = ()) -> None:
        """``choices``: the names :mod:`deblur.core.choices` declares for this registry; they must match.
        ``definers``: the modules whose ``@register`` fill it (imported at the first lookup)."""
        self.kind, self.choices, self._definers = kind, choices, definers
        self._entries: dict[str, Any] = dict(entries or {})
        self._complete = False
        if entries is not None:
            self._check()

    def register(self, cls: C) -> C:
        """Class decorator: register ``cls`` under its ``name`` (twice is an error)."""
        if cls.name in self._entries:
            raise RuntimeError(f"{self.kind} {cls.name!r} is registered twice")
        self._entries[cls.name] = cls
        return cls

    def _check(self) -> None:
        if self.choices is not None and sorted(self.choices) != sorted(self._entries):
            raise RuntimeError(f"{self.kind} registry {sorted(self._entries)} does not match "
                               f"src/deblur/core/choices.py's {sorted(self.choices)}")
        self._complete = True

    def _all(self) -> dict[str, Any]:
        """The entries, once every definer has registered its own."""
        if not self._complete:
            for module in self._definers:
                importlib.import_module(module)
            self._check()
        return self._entries

    def __getitem__(self, name: str) -> T:
        if name not in self._all():
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._all())

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._all())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]
