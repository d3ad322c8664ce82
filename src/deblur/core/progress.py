"""Progress bars (tqdm's) on standard error, only where it is a terminal: a redirected log gets no ``\\r``
frames. A terminal that reports no width (a pseudo-terminal nobody sized, as ``script`` and some CI runners
make) gets :data:`FALLBACK_SIZE`, where tqdm would draw an empty line."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Sized

from tqdm import tqdm  # not tqdm.auto: a notebook's streams are no terminal, so no bar there either

FALLBACK_SIZE = (80, 24)  # columns, lines


def shown() -> bool:
    """True when standard error is a terminal (where bars are drawn)."""
    return sys.stderr is not None and sys.stderr.isatty()


def bar(iterable: Iterable | None = None, every: float = 10.0, **kwargs) -> Iterable:
    """``tqdm(iterable, **kwargs)`` on standard error where it is a terminal (:func:`shown`). Elsewhere (a log)
    no frames: an ``iterable`` with a ``desc`` gets one line every ``every`` seconds of the work instead
    (``desc: 12/40 img after 31s``); anything else passes through silently."""
    on = shown()
    if not on and iterable is not None and "desc" in kwargs:
        return _lines(iterable, kwargs["desc"], kwargs.get("unit", ""), kwargs.get("total"), every)
    return tqdm(iterable, file=sys.stderr, disable=not on, **(_size() if on else {}), **kwargs)


def _lines(iterable: Iterable, desc: str, unit: str, total: int | None, every: float) -> Iterator:
    """``iterable``'s items, with a line on standard error every ``every`` seconds (see :func:`bar`)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    start = last = time.monotonic()
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now - last >= every:
            last = now
            words = [f"{desc}: {done}" + (f"/{total}" if total else ""), unit.strip(), f"after {now - start:.0f}s"]
            print(" ".join(w for w in words if w), file=sys.stderr, flush=True)


def _size() -> dict[str, int]:
    """tqdm's ``ncols`` and ``nrows`` from :data:`FALLBACK_SIZE` for a terminal of 0 columns; else nothing
    (tqdm measures the terminal itself; at 0 columns or lines it draws nothing)."""
    try:
        if os.get_terminal_size(sys.stderr.fileno()).columns:
            return {}
    except (OSError, ValueError):  # no descriptor behind sys.stderr (a notebook's stream)
        return {}
    return {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}
