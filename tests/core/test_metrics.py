import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblur.core import metrics
from tests.conftest import textured


@pytest.fixture
def pair():
    ref = textured(64, 80, 3, seed=3)
    noisy = np.clip(ref.astype(int) + np.random.default_rng(0).integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    return noisy, ref


def test_psnr_matches_scikit_image(pair):
    noisy, ref = pair
    assert metrics.psnr(noisy, ref) == pytest.approx(peak_signal_noise_ratio(ref, noisy, data_range=255), abs=1e-9)


def test_psnr_of_float_images_is_on_the_255_scale(pair):
    noisy, ref = pair
    assert metrics.psnr(noisy / 255.0, ref / 255.0) == pytest.approx(metrics.psnr(noisy, ref), abs=1e-9)


def test_ssim_matches_scikit_image_gaussian_window(pair):
    noisy, ref = pair
    expected = structural_similarity(ref, noisy, data_range=255, channel_axis=2, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert metrics.ssim(noisy, ref) == pytest.approx(expected, abs=2e-3)


def test_grey_ssim_matches_scikit_image(pair):
    noisy, ref = pair[0][..., 0], pair[1][..., 0]
    expected = structural_similarity(ref, noisy, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert metrics.ssim(noisy, ref) == pytest.approx(expected, abs=2e-3)


def test_identical_images(pair):
    _, ref = pair
    assert metrics.psnr(ref, ref) == float("inf")
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)


def test_y_channel_and_border_crop(pair):
    noisy, ref = pair
    y = metrics.psnr(noisy, ref, crop_border=4, y_channel=True)
    expected = peak_signal_noise_ratio(metrics.rgb_to_y(ref.astype(float))[4:-4, 4:-4],
                                       metrics.rgb_to_y(noisy.astype(float))[4:-4, 4:-4], data_range=255)
    assert y == pytest.approx(expected, abs=1e-9)


def test_shape_mismatch_is_an_error(pair):
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(pair[0][:10], pair[1])
