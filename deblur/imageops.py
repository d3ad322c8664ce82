"""Small array operations shared by training and inference (numpy HW/HWC <-> torch NCHW)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HW/HWC image (any dtype) -> HWC with ``channels`` (1 or 3); alpha is dropped, RGB->grey by luma."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == channels:
        return np.ascontiguousarray(img)
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(img[..., :1], channels, axis=2)


def to_hwc(img: np.ndarray) -> np.ndarray:
    """HW/HWC image (any dtype) -> HWC with 1 or 3 channels: grey gains a channel axis, alpha is dropped."""
    img = img[..., None] if img.ndim == 2 else img
    return img[..., :3] if img.shape[2] == 4 else img


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``min(size, H)`` x ``min(size, W)`` window of ``img``."""
    h, w = min(size, img.shape[0]), min(size, img.shape[1])
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y : y + h, x : x + w]


def to_tensor(images: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Same-sized HWC float32 images -> NCHW float32 tensor on ``device``."""
    arr = np.stack(images) if isinstance(images, list) else images
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).to(device)


def to_numpy(batch: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> N x H x W x C float32 numpy array in [0, 1]."""
    return batch.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
