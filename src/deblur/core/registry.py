"""Registries: name -> thing, in one style for models, blurs, corruptions, losses and schedules.

Looking up a name that is not registered raises ``ValueError`` naming the choices, so a typo in a spec,
a flag or a checkpoint fails at once instead of silently picking something else.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A read-only mapping of names to ``T`` that raises on unknown names; ``kind`` names it in errors."""

    def __init__(self, kind: str, entries: dict[str, T], choices: tuple[str, ...] | None = None) -> None:
        """``choices``: the names :mod:`deblur.core.settings` declares for this registry; they must match."""
        if choices is not None and sorted(choices) != sorted(entries):
            raise RuntimeError(f"{kind} registry {sorted(entries)} does not match src/deblur/core/settings.py's "
                               f"{sorted(choices)}")
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]
