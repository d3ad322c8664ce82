"""Progress bars (tqdm's) on standard error, only where it is a terminal: a redirected log gets no ``\\r``
frames. A terminal that reports no width (a pseudo-terminal nobody sized, as ``script`` and some CI runners
make) gets :data:`FALLBACK_SIZE`, where tqdm would draw an empty line."""

from __future__ import annotations

import os
import sys
from typing import Iterable

from tqdm import tqdm  # not tqdm.auto: a notebook's streams are no terminal, so no bar there either

FALLBACK_SIZE = (80, 24)  # columns, lines


def shown() -> bool:
    """True when standard error is a terminal (where bars are drawn)."""
    return sys.stderr is not None and sys.stderr.isatty()


def bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on standard error, disabled (a plain pass-through) unless :func:`shown`."""
    on = shown()
    return tqdm(iterable, file=sys.stderr, disable=not on, **(_size() if on else {}), **kwargs)


def _size() -> dict[str, int]:
    """tqdm's ``ncols`` and ``nrows`` from :data:`FALLBACK_SIZE` for a terminal of 0 columns; else nothing
    (tqdm measures the terminal itself; at 0 columns or lines it draws nothing)."""
    try:
        if os.get_terminal_size(sys.stderr.fileno()).columns:
            return {}
    except (OSError, ValueError):  # no descriptor behind sys.stderr (a notebook's stream)
        return {}
    return {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}
