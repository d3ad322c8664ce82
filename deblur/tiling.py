"""Tiled inference: bounded memory for any image size, and no seams.

The image is cut into windows of at most ``tile`` pixels that overlap by ``2 * pad``; each window's
outer ``pad`` pixels (except at the image's own border) are dropped and the inner parts abut. When
``pad`` covers the model's receptive-field radius, the result equals whole-image processing exactly;
models with a wider reach keep ``pad`` pixels of context on every side of every output pixel.
"""

from __future__ import annotations

from typing import Callable

import torch


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512, pad: int = 32,
          batch: int = 4) -> torch.Tensor:
    """Apply ``fn`` (NCHW -> NCHW, same size) to ``x`` (1 x C x H x W) tile by tile.

    ``tile`` is the largest window side; ``pad`` the context dropped at inner window edges.
    Windows of equal size are run ``batch`` at a time.
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    inner = tile - 2 * pad
    if inner <= 0:
        raise ValueError(f"tile ({tile}) must exceed twice the padding ({pad})")
    out = None
    windows = [(y, xx) for y in _cuts(h, inner) for xx in _cuts(w, inner)]
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        crops, spans = [], []
        for (y0, y1), (x0, x1) in group:
            a0, a1, b0, b1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            crops.append(x[..., a0:a1, b0:b1])
            spans.append((y0, y1, x0, x1, y0 - a0, x0 - b0))
        results = _run_grouped(fn, crops)
        for res, (y0, y1, x0, x1, dy, dx) in zip(results, spans):
            if out is None:
                out = x.new_empty((1, res.shape[1], h, w))
            out[..., y0:y1, x0:x1] = res[..., dy : dy + y1 - y0, dx : dx + x1 - x0]
    return out


def _cuts(length: int, inner: int) -> list[tuple[int, int]]:
    """Abutting [start, end) spans of at most ``inner`` covering ``range(length)``."""
    return [(s, min(s + inner, length)) for s in range(0, length, inner)]


def _run_grouped(fn: Callable[[torch.Tensor], torch.Tensor], crops: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run same-shaped crops together, others alone; results in input order."""
    results: list[torch.Tensor | None] = [None] * len(crops)
    by_shape: dict[tuple, list[int]] = {}
    for i, c in enumerate(crops):
        by_shape.setdefault(tuple(c.shape), []).append(i)
    for idx in by_shape.values():
        out = fn(torch.cat([crops[i] for i in idx]))
        for j, i in enumerate(idx):
            results[i] = out[j : j + 1]
    return results  # type: ignore[return-value]


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` averaged over the 8 flips/rotations of its NCHW input (each undone on the output): the
    "x8 self-ensemble" of restoration papers, 8x the compute for a cleaner result."""

    def ensembled(x: torch.Tensor) -> torch.Tensor:
        total = None
        for k in range(8):
            y = torch.rot90(x, k % 4, (2, 3))
            y = fn(y.flip(3) if k >= 4 else y)
            y = torch.rot90(y.flip(3) if k >= 4 else y, -(k % 4), (2, 3))
            total = y if total is None else total + y
        return total / 8

    return ensembled
