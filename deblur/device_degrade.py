"""Degradation split between the data loader and the training device, for loaders that cannot keep up.

The loader (CPU) still draws everything random per crop from its ``rng``: the kernel, the window, the
flip/rotation and each stage's setting. For a crop whose stages are at most one additive noise, it ships only
the sharp window with a margin of the batch's largest kernel radius, as uint8 when stored so (an eighth
of the bytes of a float pair), and the kernel; the device blurs all of them with one grouped
convolution and adds the noise. Crops whose draw includes a stage the device cannot do (a JPEG round trip,
quantisation, two noises) are degraded whole on the CPU, as :func:`deblur.steps.degrade_batch` does, and ride
along in the same batch. Blurring matches :func:`deblur.degrade.convolve` on the whole image (reflective
borders at the image's edges): the margin is real neighbouring pixels, reflected only past the image edge.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deblur.degrade import BORDER, Degradation, Noise, blur_window, window
from deblur.io import to_float
from deblur.steps import dihedral

Batch = dict[str, torch.Tensor]


def margin_window(img: np.ndarray, y: int, x: int, size: int, r: int) -> np.ndarray:
    """The ``size + 2r`` square around the window at (y, x) of HWC ``img``, reflected past the image's
    edges as OpenCV's filters do; dtype as stored."""
    h, w = img.shape[:2]
    y0, x0, y1, x1 = y - r, x - r, y + size + r, x + size + r
    region = img[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pads = (max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0))
    if any(pads):
        region = cv2.copyMakeBorder(np.ascontiguousarray(region), *pads, BORDER).reshape(
            size + 2 * r, size + 2 * r, img.shape[2])
    return region


def _padded(kernel: np.ndarray, r: int) -> np.ndarray:
    p = r - kernel.shape[0] // 2
    return np.pad(kernel, p)


def _stacked(arrays: list[np.ndarray]) -> torch.Tensor:
    """NHWC tensor of HWC arrays (the device makes it NCHW: no transposing copy in the loader)."""
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 0, 0, 0)


def draw_batch(images: list[np.ndarray], deg: Degradation, patch: int, rng: np.random.Generator,
               flips: bool = False) -> Batch:
    """A training batch of random crops of HWC ``images`` (uint8, uint16 or float [0, 1]), as tensors for
    :func:`finish`: ``regions`` (sharp windows plus margin, NHWC, uint8 when every image is, else float32),
    ``kernels`` (N x K x K), ``sigmas`` (N; 0 means no noise), ``index`` (their positions in the batch),
    ``cpu_degraded`` / ``cpu_sharp`` (NHWC float32 [0, 1]) with ``cpu_index`` for the rest, and
    ``windows`` (N x 3: each crop's top, left and flip/rotation, for inspection)."""
    size = min(patch, *(min(im.shape[:2]) for im in images))
    kernels = [deg.kernel(rng) for _ in images]
    r = max(k.shape[0] for k in kernels) // 2
    dev: dict[str, list] = {"regions": [], "kernels": [], "sigmas": [], "index": []}
    cpu: dict[str, list] = {"cpu_degraded": [], "cpu_sharp": [], "cpu_index": []}
    windows = []
    for i, (img, kernel) in enumerate(zip(images, kernels)):
        y, x = window(img.shape, size, rng)
        k = int(rng.integers(8)) if flips else 0
        windows.append((y, x, k))
        draws = [(stage, stage.draw(rng)) for stage in deg.after]
        applied = [(stage, s) for stage, s in draws if s is not None]
        if all(isinstance(stage, Noise) for stage, _ in applied) and len(applied) <= 1:
            dev["regions"].append(dihedral(margin_window(img, y, x, size, r), k))
            dev["kernels"].append(dihedral(_padded(kernel, r), k))
            dev["sigmas"].append(applied[0][1] if applied else 0.0)
            dev["index"].append(i)
            continue
        sharp, blurred = blur_window(img, kernel, y, x, size)
        for stage, setting in applied:
            blurred = stage.apply(blurred, setting, rng)
        cpu["cpu_sharp"].append(dihedral(sharp, k))
        cpu["cpu_degraded"].append(dihedral(blurred, k))
        cpu["cpu_index"].append(i)
    if any(a.dtype != np.uint8 for a in dev["regions"]):  # uint16 has few torch ops: ship float32
        dev["regions"] = [to_float(a) for a in dev["regions"]]
    return {"regions": _stacked(dev["regions"]),
            "kernels": torch.from_numpy(np.stack(dev["kernels"])) if dev["kernels"] else torch.zeros(0, 1, 1),
            "sigmas": torch.tensor(dev["sigmas"], dtype=torch.float32),
            "index": torch.tensor(dev["index"], dtype=torch.long),
            "cpu_degraded": _stacked(cpu["cpu_degraded"]), "cpu_sharp": _stacked(cpu["cpu_sharp"]),
            "cpu_index": torch.tensor(cpu["cpu_index"], dtype=torch.long),
            "windows": torch.tensor(windows, dtype=torch.long)}


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def blur(regions: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each N x C x (P+2r) x (P+2r) region (float32 [0, 1]) filtered with its own (2r+1)^2 kernel, 'valid':
    N x C x P x P, clipped to [0, 1] (one grouped convolution)."""
    n, c, h, w = regions.shape
    weight = kernels.to(regions.dtype).repeat_interleave(c, dim=0)[:, None]
    out = F.conv2d(regions.reshape(1, n * c, h, w), weight, groups=n * c)
    return out.reshape(n, c, out.shape[-2], out.shape[-1]).clamp(0.0, 1.0)


def finish(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded, sharp) NCHW float32 [0, 1] on ``device`` from a :func:`draw_batch` batch, in its order."""
    get = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "windows"}
    for key in ("regions", "cpu_degraded", "cpu_sharp"):
        get[key] = get[key].permute(0, 3, 1, 2)
    regions, index, cpu_index = _as_float(get["regions"]).contiguous(), get["index"], get["cpu_index"]
    n = len(index) + len(cpu_index)
    parts = [(get["cpu_degraded"], get["cpu_sharp"], cpu_index)] if len(cpu_index) else []
    if len(index):
        r = get["kernels"].shape[-1] // 2
        blurred = blur(regions, get["kernels"])
        blurred = (blurred + torch.randn_like(blurred) * get["sigmas"][:, None, None, None]).clamp(0.0, 1.0)
        parts.append((blurred, regions[..., r : regions.shape[-2] - r, r : regions.shape[-1] - r], index))
    size, c = parts[0][0].shape[-1], parts[0][0].shape[1]
    degraded = torch.empty(n, c, size, size, device=device)
    sharp = torch.empty_like(degraded)
    for d, s, i in parts:
        degraded[i], sharp[i] = d, s
    return degraded, sharp
