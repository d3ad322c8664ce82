import cv2
import numpy as np
import pytest

from deblur import degrade
from deblur.degrade import degrade_crop, parse_blur

SPECS = {"seed": "seed", "gaussian": "gaussian:sigma=0.5..2.5"}


def test_every_registered_blur_has_a_test_spec():
    assert sorted(SPECS) == degrade.names()


def test_seed_blur_is_opencv_gaussianblur_3x3():
    img = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    expected = cv2.GaussianBlur(img, (3, 3), 0)
    np.testing.assert_allclose(parse_blur("seed")(img), expected, atol=1e-7)
    k = parse_blur("seed").kernel(None)
    np.testing.assert_allclose(k, np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]), atol=1e-7)


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("shape", [(33, 40), (32, 24, 3)])
def test_every_blur_keeps_shape_range_and_is_reproducible(name, shape):
    blur = parse_blur(SPECS[name])
    img = np.random.default_rng(1).random(shape).astype(np.float32)
    a = blur(img, np.random.default_rng(7))
    b = blur(img, np.random.default_rng(7))
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - img).mean() > 1e-3  # it really blurs
    k = blur.kernel(np.random.default_rng(3))
    assert abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1


def test_gaussian_range_is_sampled_per_image():
    blur = parse_blur("gaussian:sigma=0.5..3")
    sizes = {blur.kernel(np.random.default_rng(s)).shape[0] for s in range(20)}
    assert len(sizes) > 1


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_round_trips(name):
    blur = parse_blur(SPECS[name])
    assert parse_blur(degrade.blur_spec(blur)) == blur


@pytest.mark.parametrize("spec, message", [("box", "unknown blur"), ("gaussian:radius=2", "bad blur option"),
                                           ("gaussian:sigma=x", "bad value"), ("gaussian:sigma", "bad blur option")])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_blur(spec)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_degrade_crop_equals_blurring_the_whole_image(name):
    blur = parse_blur(SPECS[name])
    img = np.random.default_rng(2).random((60, 50, 3)).astype(np.float32)
    sharp, blurred = degrade_crop(img, blur, 24, np.random.default_rng(5))
    kernel = blur.kernel(np.random.default_rng(5))  # the crop consumed the same first draw
    whole = degrade.convolve(img, kernel)
    # locate the crop and compare
    ys, xs = np.argwhere(np.all(np.isclose(img[:37, :27], sharp[0, 0]), axis=2))[0]
    np.testing.assert_array_equal(img[ys : ys + 24, xs : xs + 24], sharp)
    np.testing.assert_allclose(whole[ys : ys + 24, xs : xs + 24], blurred, atol=1e-6)
