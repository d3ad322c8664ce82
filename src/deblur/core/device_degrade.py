"""Degradation split between the data loader and the training device, for loaders that cannot keep up.

The loader (CPU) still draws everything random per crop from its ``rng``: the kernel, the window, the
flip/rotation and each corruption's setting. For a crop whose corruptions are at most one additive noise,
it ships only the sharp window with a margin of the batch's largest kernel radius, as uint8 when stored so
(an eighth of the bytes of a float pair), and the kernel; the device blurs all of them with one grouped
convolution and adds the noise. Crops whose draw includes what the device cannot do (a spatially varying
blur, a JPEG round trip, quantisation, two noises) are degraded whole on the CPU, as
:func:`deblur.core.training.degrade_batch` does, and ride along in the same batch. Blurring matches
:func:`deblur.core.degrade.convolve` on the whole image (reflective borders at the image's edges): the
margin is real neighbouring pixels, reflected only past the image edge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deblur.core.degrade import BORDER, Degradation, Noise, blur_window, window
from deblur.core.flips import flip_array
from deblur.core.image import to_float


@dataclass(frozen=True)
class LoaderBatch:
    """One training batch as the loader ships it to :func:`finish` (CPU tensors).

    ``regions``: sharp windows plus margin, N x (P+2r) x (P+2r) x C, uint8 when every image is, else
    float32 [0, 1]; ``kernels``: N x (2r+1) x (2r+1) float32; ``sigmas``: N noise sigmas (0: none);
    ``index``: their positions in the batch. ``cpu_degraded`` / ``cpu_sharp``: M x P x P x C float32
    [0, 1] crops degraded on the CPU, at ``cpu_index``. ``windows``: (N + M) x 3, each crop's top, left
    and flip, for inspection.
    """

    regions: torch.Tensor
    kernels: torch.Tensor
    sigmas: torch.Tensor
    index: torch.Tensor
    cpu_degraded: torch.Tensor
    cpu_sharp: torch.Tensor
    cpu_index: torch.Tensor
    windows: torch.Tensor

    def pin_memory(self) -> "LoaderBatch":
        """Page-locked copies (what a DataLoader with ``pin_memory=True`` calls)."""
        return LoaderBatch(**{f.name: getattr(self, f.name).pin_memory() for f in dataclasses.fields(self)})


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
               flips: bool = False) -> LoaderBatch:
    """A training batch of random crops of HWC ``images`` (uint8, uint16 or float [0, 1]) for :func:`finish`."""
    size = min(patch, *(min(im.shape[:2]) for im in images))
    draws = [deg.draw_blur(rng) for _ in images]
    r = max([k.shape[0] // 2 for k in draws if isinstance(k, np.ndarray)], default=0)
    dev: dict[str, list] = {"regions": [], "kernels": [], "sigmas": [], "index": []}
    cpu: dict[str, list] = {"cpu_degraded": [], "cpu_sharp": [], "cpu_index": []}
    windows = []
    for i, (img, kernel) in enumerate(zip(images, draws)):
        y, x = window(img.shape, size, rng)
        k = int(rng.integers(8)) if flips else 0
        windows.append((y, x, k))
        drawn = [(c, c.draw(rng)) for c in deg.corruptions]
        applied = [(c, d) for c, d in drawn if d is not None]
        on_device = isinstance(kernel, np.ndarray) and all(isinstance(c, Noise) for c, _ in applied)
        if on_device and len(applied) <= 1:
            dev["regions"].append(flip_array(margin_window(img, y, x, size, r), k))
            dev["kernels"].append(flip_array(_padded(kernel, r), k))
            dev["sigmas"].append(applied[0][1] if applied else 0.0)
            dev["index"].append(i)
            continue
        sharp, blurred = blur_window(img, kernel, y, x, size)
        for corruption, parameters in applied:
            blurred = corruption.apply(blurred, parameters, rng)
        cpu["cpu_sharp"].append(flip_array(sharp, k))
        cpu["cpu_degraded"].append(flip_array(blurred, k))
        cpu["cpu_index"].append(i)
    if any(a.dtype != np.uint8 for a in dev["regions"]):  # uint16 has few torch ops: ship float32
        dev["regions"] = [to_float(a) for a in dev["regions"]]
    return LoaderBatch(
        regions=_stacked(dev["regions"]),
        kernels=torch.from_numpy(np.stack(dev["kernels"])) if dev["kernels"] else torch.zeros(0, 1, 1),
        sigmas=torch.tensor(dev["sigmas"], dtype=torch.float32), index=torch.tensor(dev["index"], dtype=torch.long),
        cpu_degraded=_stacked(cpu["cpu_degraded"]), cpu_sharp=_stacked(cpu["cpu_sharp"]),
        cpu_index=torch.tensor(cpu["cpu_index"], dtype=torch.long), windows=torch.tensor(windows, dtype=torch.long))


def _as_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def blur(regions: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each N x C x (P+2r) x (P+2r) region (float32 [0, 1]) filtered with its own (2r+1)^2 kernel, 'valid':
    N x C x P x P, clipped to [0, 1] (one grouped convolution)."""
    n, c, h, w = regions.shape
    weight = kernels.to(regions.dtype).repeat_interleave(c, dim=0)[:, None]
    out = F.conv2d(regions.reshape(1, n * c, h, w), weight, groups=n * c)
    return out.reshape(n, c, out.shape[-2], out.shape[-1]).clamp(0.0, 1.0)


def finish(batch: LoaderBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded, sharp) NCHW float32 [0, 1] on ``device`` from a :func:`draw_batch` batch, in its order."""
    get = {f.name: getattr(batch, f.name).to(device, non_blocking=True) for f in dataclasses.fields(batch)
           if f.name != "windows"}
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
