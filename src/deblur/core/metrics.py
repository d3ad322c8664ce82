"""Image quality metrics, computed the standard way (as BasicSR defines PSNR and SSIM).

Inputs are numpy images, HW or HWC, either float in [0, 1] or uint8; both are compared on the
[0, 255] scale. ``crop_border`` drops that many pixels at each edge; ``y_channel`` compares the
ITU-R BT.601 luma (Y of YCbCr, as MATLAB's rgb2ycbcr) of RGB images instead of all channels.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_255(img: np.ndarray) -> np.ndarray:
    """float64 copy of ``img`` on the [0, 255] scale (uint8 as is, floats in [0, 1] scaled)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 257.0
    return img.astype(np.float64) * 255.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Luma (BT.601, [16, 235]) of an RGB image on the [0, 255] scale, HWC -> HW."""
    return img @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0


def _prepare(img: np.ndarray, crop_border: int, y_channel: bool) -> np.ndarray:
    img = to_255(img)
    if y_channel and img.ndim == 3 and img.shape[2] == 3:
        img = rgb_to_y(img)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
    return img


def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB of ``img`` against ``ref`` (same shape); inf when identical."""
    if img.shape != ref.shape:
        raise ValueError(f"shapes differ: {img.shape} vs {ref.shape}")
    a, b = _prepare(img, crop_border, y_channel), _prepare(ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = k @ k.T
    mu_a = cv2.filter2D(a, -1, w)[5:-5, 5:-5]
    mu_b = cv2.filter2D(b, -1, w)[5:-5, 5:-5]
    var_a = cv2.filter2D(a * a, -1, w)[5:-5, 5:-5] - mu_a**2
    var_b = cv2.filter2D(b * b, -1, w)[5:-5, 5:-5] - mu_b**2
    cov = cv2.filter2D(a * b, -1, w)[5:-5, 5:-5] - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5), mean over channels.

    Images must be at least 11x11 after cropping.
    """
    if img.shape != ref.shape:
        raise ValueError(f"shapes differ: {img.shape} vs {ref.shape}")
    a, b = _prepare(img, crop_border, y_channel), _prepare(ref, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def sharpness(img: np.ndarray, rows: int = 256) -> float:
    """Variance of the Laplacian of the grey image (mean of the colour channels) on the [0, 1] scale
    (higher is sharper). Computed in strips of ``rows`` rows, so memory stays a few strips of float64
    whatever the image's size."""
    h = img.shape[0]
    total = squares = 0.0
    for y0 in range(0, h, rows):
        a, b = max(0, y0 - 1), min(h, y0 + rows + 1)  # one row of context above and below
        lap = cv2.Laplacian(_grey(img[a:b]), cv2.CV_64F)[y0 - a : y0 - a + min(rows, h - y0)]
        total, squares = total + float(lap.sum()), squares + float(np.square(lap).sum())
    n = h * img.shape[1]
    return max(squares / n - (total / n) ** 2, 0.0)


def _grey(img: np.ndarray) -> np.ndarray:
    """float64 [0, 1] mean of the colour channels (alpha left out), channel by channel: numpy's mean over
    a last axis of 3 is several times slower, and this runs on every image the pipeline decodes."""
    if img.ndim == 2:
        return to_255(img) / 255.0
    g = to_255(img[..., 0])
    g += to_255(img[..., 1])
    g += to_255(img[..., 2])
    g /= 3 * 255.0
    return g
