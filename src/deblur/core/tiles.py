"""Running a model over images of any size and number: overlapping windows, batched by shape, with pixels
kept as integers until they are on the model's device.

An image is split into planes (the channel groups the model takes: RGB for a colour model, each channel
for a one-channel model; alpha is never a plane) and each plane into windows of at most ``tile`` pixels a
side that overlap by ``2 * pad``. Each window's outer ``pad`` pixels (except at the image's own border)
are dropped and the inner parts abut, so when ``pad`` covers the model's receptive-field radius the result
equals whole-image processing exactly.

Windows of the same shape, from one image or many, go through the model together, up to ``budget`` pixels
a call (:data:`BUDGETS`): a large image costs one tile batch of memory, many small images share calls. Each
batch is gathered as integers in the images' own channels-last order (pinned memory and a non-blocking
copy on CUDA), converted to float32 [0, 1] on the device in the layout the model asks for, and its
results rounded back to the output dtype on the device before they are written into a preallocated
output: no float copy of a whole image is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

Fn = Callable[[torch.Tensor], torch.Tensor]  # NCHW float32 [0, 1] -> NCHW, same size
Span = tuple[slice, slice]
BUDGETS = {"cpu": 1 << 16, "cuda": 4 * 512 * 512}  # pixels per model call (measured: a CPU slows past ~64k
# pixels a call, as activations leave its caches; a GPU wants large batches)


def budget(device: torch.device) -> int:
    """The pixels a model call takes on ``device`` (windows larger than that run alone)."""
    return BUDGETS.get(device.type, BUDGETS["cuda"])


@dataclass(frozen=True)
class Plane:
    """One model input of one image: ``src`` (H x W x C numpy view of the input: uint8, uint16 or float32)
    and ``dst`` (H x W x C' numpy view of the output, same dtype). ``top`` is the integer scale (255,
    65535; 1.0 for float); ``expand``: a grey plane repeated to the model's channels and its result averaged
    back."""

    src: np.ndarray
    dst: np.ndarray
    top: float
    expand: int = 0


@dataclass(frozen=True)
class Window:
    """The region ``read`` of plane ``plane``; the part ``keep`` of its result goes to ``write``."""

    plane: int
    read: Span
    keep: Span
    write: Span

    @property
    def shape(self) -> tuple[int, int]:
        return self.read[0].stop - self.read[0].start, self.read[1].stop - self.read[1].start


def cuts(length: int, inner: int) -> list[tuple[int, int]]:
    """Abutting [start, end) spans of at most ``inner`` covering ``range(length)``."""
    return [(s, min(s + inner, length)) for s in range(0, length, inner)]


def windows(plane: int, h: int, w: int, tile: int, pad: int) -> list[Window]:
    """The windows of an ``h`` x ``w`` plane: itself when it fits in a ``tile``, else overlapping tiles."""
    if h <= tile and w <= tile:
        whole = (slice(0, h), slice(0, w))
        return [Window(plane, whole, whole, whole)]
    inner = tile - 2 * pad
    if inner <= 0:
        raise ValueError(f"tile ({tile}) must exceed twice the padding ({pad})")
    out = []
    for y0, y1 in cuts(h, inner):
        for x0, x1 in cuts(w, inner):
            a0, a1, b0, b1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            out.append(Window(plane, (slice(a0, a1), slice(b0, b1)),
                              (slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0)), (slice(y0, y1), slice(x0, x1))))
    return out


def batches(found: list[Window], planes: list[Plane], budget: int) -> Iterator[list[Window]]:
    """``found`` grouped into model calls: the same shape and input kind, at most ``budget`` pixels each
    (always at least one window)."""
    groups: dict[tuple, list[Window]] = {}
    for win in found:
        p = planes[win.plane]
        groups.setdefault((win.shape, p.src.shape[2], p.src.dtype, p.expand), []).append(win)
    for group in groups.values():
        h, w = group[0].shape
        step = max(1, budget // (h * w))
        for i in range(0, len(group), step):
            yield group[i : i + step]


def run(fn: Fn, planes: list[Plane], tile: int, pad: int, device: torch.device, pixels: int = 0,
        memory_format: torch.memory_format = torch.channels_last) -> None:
    """Write ``fn`` of every plane into its ``dst``, window batch by window batch of at most ``pixels``
    (0: the device's :func:`budget`); ``fn`` gets its input in ``memory_format`` (channels-last, the
    layout the windows are gathered in, needs no reordering on the host); see the module doc."""
    found = [win for i, p in enumerate(planes) for win in windows(i, p.src.shape[0], p.src.shape[1], tile, pad)]
    for group in batches(found, planes, pixels or budget(device)):
        first = planes[group[0].plane]
        crops = [planes[win.plane].src[win.read] for win in group]  # N x (H x W x C) views
        nhwc = _to_device(np.stack(crops), device)  # a contiguous, writable copy of the windows' integers
        x = nhwc.permute(0, 3, 1, 2).to(torch.float32, memory_format=memory_format)  # NCHW, any layout
        x = x.div_(first.top) if first.top != 1.0 else x.clamp_(0.0, 1.0)
        if first.expand:
            x = x.expand(-1, first.expand, -1, -1)
        y = fn(x).float().clamp_(0.0, 1.0)
        if first.expand:
            y = y.mean(dim=1, keepdim=True)
        y = y.mul_(first.top) if first.top != 1.0 else y
        out = _to_host(y.permute(0, 2, 3, 1), first.dst.dtype)  # N x H x W x C
        for res, win in zip(out, group):
            planes[win.plane].dst[win.write] = res[win.keep]


def _to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A contiguous array (integers or float) as a tensor on ``device`` (through pinned memory to CUDA)."""
    t = torch.from_numpy(x)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _to_host(y: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """A model result (N x H x W x C float32; for an integer ``dtype`` already clamped and scaled to its
    range) as a contiguous numpy array of ``dtype``, rounded half to even: converted on a GPU before the
    copy (less to move), on the CPU by OpenCV or numpy (faster than torch)."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return y.contiguous().cpu().numpy()
    if y.device.type != "cpu":
        return y.round_().to(_TORCH_DTYPES[dtype]).contiguous().cpu().numpy()
    y = y.contiguous().numpy()  # no copy when the model kept channels-last
    if dtype == np.uint8:  # rounds half to even and saturates, in one pass
        return cv2.convertScaleAbs(y.reshape(-1, y.shape[-1])).reshape(y.shape)
    return np.rint(y, out=y).astype(dtype)


_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}
