"""deblur.core.device_degrade: the loader/device split gives the same pairs as blurring whole images on the CPU."""

import numpy as np
import pytest
import torch

from deblur.core.degrade import blur_region, convolve, parse_degradation
from deblur.core.device_degrade import draw_batch, finish
from deblur.core.flips import flip_array
from deblur.core.image import to_float
from tests.core.test_degrade import SPECS

PATCH = 24


def _images(dtype=np.uint8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(40, 50, 3), (24, 24, 3), (31, 64, 3), (60, 30, 3)] * 3  # (24, 24): the margin is all reflection
    imgs = [(rng.random(s) * 255).astype(np.uint8) for s in shapes]
    if dtype == np.uint16:
        return [im.astype(np.uint16) * 257 for im in imgs]
    return imgs if dtype == np.uint8 else [to_float(im) if i % 2 else im for i, im in enumerate(imgs)]


def _undo(img: np.ndarray, k: int) -> np.ndarray:
    """The inverse of ``flip_array(img, k)``."""
    return np.rot90(img[:, ::-1] if k >= 4 else img, -(k % 4))


def _reference(img: np.ndarray, kernel: np.ndarray, window: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    y, x, k = (int(v) for v in window)
    sharp = to_float(img)
    blurred = convolve(sharp, kernel)[y : y + PATCH, x : x + PATCH]
    return flip_array(sharp[y : y + PATCH, x : x + PATCH], k), flip_array(blurred, k)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


KERNEL_SPECS = sorted(set(SPECS) - {"warp", "real"})  # one kernel per image: the device can blur them


@pytest.mark.parametrize("name", KERNEL_SPECS)
@pytest.mark.parametrize("flips", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_device_blur_equals_blurring_the_whole_image(name, flips, dtype):
    images = _images(dtype)
    deg = parse_degradation(SPECS[name].split("+")[0])
    batch = draw_batch(images, deg, PATCH, np.random.default_rng(1), flips)
    assert len(batch.index) == len(images) and len(batch.cpu_index) == 0  # a blur alone: all on the device
    degraded, sharp = finish(batch, torch.device("cpu"))
    assert degraded.shape == sharp.shape == (len(images), 3, PATCH, PATCH) and degraded.dtype == torch.float32
    for j, i in enumerate(batch.index.tolist()):
        k = int(batch.windows[i, 2])
        kernel = _undo(batch.kernels[j].numpy(), k)
        want_sharp, want_blurred = _reference(images[i], np.ascontiguousarray(kernel), batch.windows[i])
        np.testing.assert_allclose(_hwc(sharp[i]), want_sharp, atol=1e-6)
        np.testing.assert_allclose(_hwc(degraded[i]), want_blurred, atol=2e-5)


def test_jpeg_crops_are_degraded_on_the_cpu_and_keep_their_place():
    images = _images()
    deg = parse_degradation("gaussian:sigma=1+jpeg:quality=70,p=0.5")
    kernel = deg.draw_blur(np.random.default_rng(0))
    batch = draw_batch(images, deg, PATCH, np.random.default_rng(2), flips=True)
    on_cpu = set(batch.cpu_index.tolist())
    assert on_cpu and len(on_cpu) < len(images) and on_cpu.isdisjoint(batch.index.tolist())
    degraded, sharp = finish(batch, torch.device("cpu"))
    for i, img in enumerate(images):
        want_sharp, want_blurred = _reference(img, kernel, batch.windows[i])
        np.testing.assert_allclose(_hwc(sharp[i]), want_sharp, atol=1e-6)
        got = _hwc(degraded[i])
        if i in on_cpu:  # a JPEG round trip: 8-bit levels, near the blur
            np.testing.assert_allclose(got * 255, np.round(got * 255), atol=1e-3)
            assert 0 < np.abs(got - want_blurred).mean() < 0.05
        else:
            np.testing.assert_allclose(got, want_blurred, atol=2e-5)


def test_device_noise_has_the_drawn_sigma_and_skips_when_not_drawn():
    images = [np.full((48, 48, 3), 128, np.uint8)] * 16
    batch = draw_batch(images, parse_degradation("none+noise:sigma=0.03..0.06,p=0.5"), 48, np.random.default_rng(3))
    torch.manual_seed(0)
    degraded, sharp = finish(batch, torch.device("cpu"))
    sigmas = batch.sigmas.tolist()
    assert 0 < sum(s > 0 for s in sigmas) < len(sigmas)
    for j, i in enumerate(batch.index.tolist()):
        residual = degraded[i] - sharp[i]
        if sigmas[j] == 0:
            assert torch.equal(degraded[i], sharp[i])
        else:
            assert 0.03 <= sigmas[j] <= 0.06
            assert abs(float(residual.std()) - sigmas[j]) < 0.1 * sigmas[j]
            assert abs(float(residual.mean())) < 0.005


def test_spatially_varying_blur_is_done_on_the_cpu_as_the_whole_image_would_be():
    images = _images()
    deg = parse_degradation("real:shake_share=0.3,warp_share=0.5")
    batch = draw_batch(images, deg, PATCH, np.random.default_rng(4), flips=True)
    assert len(batch.cpu_index) and len(batch.index)  # warps on the CPU, kernels on the device
    degraded, sharp = finish(batch, torch.device("cpu"))
    rng = np.random.default_rng(4)
    draws = [deg.draw_blur(rng) for _ in images]  # draw_batch draws every blur first
    for i in batch.cpu_index.tolist():
        y, x, k = (int(v) for v in batch.windows[i])
        whole = blur_region(to_float(images[i]), draws[i])
        np.testing.assert_allclose(_hwc(degraded[i]), flip_array(whole[y : y + PATCH, x : x + PATCH], k), atol=2e-5)
        np.testing.assert_allclose(_hwc(sharp[i]), flip_array(to_float(images[i])[y : y + PATCH, x : x + PATCH], k))
