"""Classical non-blind deconvolution: the baseline a user would otherwise try.

Wiener deconvolution with the true kernel and a constant noise-to-signal ratio. The NSR rule,
``2 * sigma`` with sigma the noise standard deviation (8-bit rounding included), was calibrated on the
Kodak training photos (the best constant over a grid, for motion, defocus and Gaussian blur at noise
0 to 0.02), never on evaluation images. The image is mirrored into a 2H x 2W periodic extension before
the FFT, so the circular convolution the filter assumes has no edge jumps to ring at.
"""

from __future__ import annotations

import math

import numpy as np

QUANTISATION_SIGMA = 1.0 / (255.0 * math.sqrt(12))  # rounding to 8 bits, on [0, 1]


def otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The optical transfer function (real FFT) for ``shape`` (H, W) of the blur that correlates with
    ``kernel`` (centred, odd-sized; as :func:`deblur.core.degrade.convolve` applies it): the half-turned
    kernel's transform, the same for the symmetric kernels."""
    padded = np.zeros(shape, np.float64)
    kh, kw = kernel.shape
    padded[:kh, :kw] = kernel[::-1, ::-1]
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(padded)


def wiener_nsr(noise_sigma: float) -> float:
    """The calibrated constant noise-to-signal ratio for additive noise of ``noise_sigma`` (on [0, 1])."""
    return 2.0 * math.sqrt(noise_sigma**2 + QUANTISATION_SIGMA**2)


def wiener(img: np.ndarray, kernel: np.ndarray, noise_sigma: float = 0.0) -> np.ndarray:
    """Deconvolve ``img`` (float32 [0, 1], HWC) blurred by ``kernel`` with additive noise of standard
    deviation ``noise_sigma``; returns float32 [0, 1], same shape."""
    h, w = img.shape[:2]
    nsr = wiener_nsr(noise_sigma)
    out = np.empty(img.shape, np.float32)
    transfer = None
    for c in range(img.shape[2]):
        x = img[..., c].astype(np.float64)
        periodic = np.block([[x, x[:, ::-1]], [x[::-1], x[::-1, ::-1]]])
        if transfer is None:
            transfer = otf(kernel, periodic.shape)
        filt = np.conj(transfer) / (np.abs(transfer) ** 2 + nsr)
        out[..., c] = np.fft.irfft2(np.fft.rfft2(periodic) * filt, s=periodic.shape)[:h, :w]
    return np.clip(out, 0.0, 1.0)


def noise_sigma_of(corruptions: tuple) -> float:
    """The mean noise standard deviation a degradation's corruptions add (0 when none), as each states it
    (``Corruption.noise_sigma``: Poisson-Gaussian noise counts at mid-grey)."""
    return sum(c.noise_sigma() for c in corruptions)
