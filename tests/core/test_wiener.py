import numpy as np
import pytest

from deblur.core import metrics
from deblur.core.degrade import convolve, parse_degradation
from deblur.core.wiener import noise_sigma_of, otf, wiener
from tests.conftest import textured

BLURS = ["seed", "gaussian:sigma=2", "anisotropic:sigma_x=2.5,sigma_y=0.5,angle=30", "motion:length=9,angle=20",
         "defocus:radius=2.5",
         "shake:length=15,exposure=1"]


def test_otf_multiplication_is_the_same_convolution():
    rng = np.random.default_rng(0)
    img = rng.random((50, 60)).astype(np.float32)
    k = parse_degradation("shake:length=20").draw_blur(rng)  # not symmetric: correlation, not convolution
    circular = np.fft.irfft2(np.fft.rfft2(img) * otf(k, img.shape), s=img.shape)
    np.testing.assert_allclose(circular[10:-10, 10:-10], convolve(img[..., None], k)[10:-10, 10:-10, 0], atol=1e-5)


@pytest.mark.parametrize("spec", BLURS)
def test_wiener_with_the_true_kernel_undoes_most_of_a_blur(spec):
    sharp = textured(96, 128, 3, seed=3).astype(np.float32) / 255
    deg = parse_degradation(spec)
    kernel = deg.draw_blur(np.random.default_rng(0))
    blurred = np.round(convolve(sharp, kernel) * 255) / 255  # stored as 8 bits
    restored = wiener(blurred.astype(np.float32), kernel)
    assert restored.shape == sharp.shape and restored.dtype == np.float32
    assert metrics.psnr(restored, sharp, crop_border=8) > metrics.psnr(blurred, sharp, crop_border=8) + 2


def test_noise_sigma_of_a_spec():
    assert noise_sigma_of(parse_degradation("seed").corruptions) == 0
    assert noise_sigma_of(parse_degradation("seed+noise:sigma=0.01..0.03,p=0.5+jpeg").corruptions) == pytest.approx(0.01)
    poisson = parse_degradation("seed+poisson:a=0.002,sigma=0.003").corruptions
    assert noise_sigma_of(poisson) == pytest.approx((0.002 / 2 + 0.003**2) ** 0.5)
