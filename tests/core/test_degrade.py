import cv2
import numpy as np
import pytest

from deblur.core import degrade, kernels
from deblur.core.degrade import CORRUPTIONS, degrade_crop, parse_degradation

SPECS = {"none": "none+noise:sigma=0.01", "seed": "seed", "gaussian": "gaussian:sigma=0.5..2.5", "anisotropic": "anisotropic",
         "motion": "motion:length=5..15", "defocus": "defocus:radius=1..4", "blind": "blind"}
CORRUPTED = ["", "+noise:sigma=0.01", "+jpeg:quality=60..95", "+noise:sigma=0..0.02,p=0.5+jpeg:quality=70",
             "+quantize:bits=8"]


def test_every_registered_blur_and_corruption_has_a_test_spec():
    assert sorted(SPECS) == kernels.BLURS.names()
    used = {part.split(":")[0] for spec in CORRUPTED for part in spec.split("+")[1:]}
    assert sorted(used) == CORRUPTIONS.names()


def test_seed_blur_is_opencv_gaussianblur_3x3():
    img = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    expected = cv2.GaussianBlur(img, (3, 3), 0)
    np.testing.assert_array_equal(parse_degradation("seed")(img, np.random.default_rng(0)), expected)
    k = parse_degradation("seed").kernel(None)
    np.testing.assert_allclose(k, np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]), atol=1e-7)


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("corruptions", CORRUPTED)
@pytest.mark.parametrize("shape", [(33, 40), (32, 24, 1), (32, 24, 3)])
def test_every_degradation_keeps_shape_range_and_is_reproducible(name, corruptions, shape):
    deg = parse_degradation(SPECS[name] + corruptions)
    img = np.random.default_rng(1).random(shape).astype(np.float32)
    a = deg(img, np.random.default_rng(7))
    b = deg(img, np.random.default_rng(7))
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - img).mean() > 1e-3  # it really degrades
    k = deg.kernel(np.random.default_rng(3))
    assert abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # correlation == convolution


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"seed", "none"}))
def test_ranges_are_sampled_per_image(name):
    deg = parse_degradation(SPECS[name])
    kernels_ = [deg.kernel(np.random.default_rng(s)) for s in range(12)]
    assert len({(k.shape, float(k.max())) for k in kernels_}) > 1


def test_kernel_shapes_are_what_they_say():
    m = kernels.motion_kernel(9, 0)
    assert m.shape == (11, 11) and m[5].sum() > 0.85  # a horizontal line through the centre
    assert np.count_nonzero(m[5] > 0.02) in (9, 10)
    v = kernels.motion_kernel(9, 90)
    np.testing.assert_allclose(v, m.T, atol=1e-6)
    d = kernels.defocus_kernel(3)
    assert d.shape == (7, 7) and d[3, 3] == pytest.approx(d[3, 1], rel=0.05) and d[0, 0] < 1e-3
    a = kernels.anisotropic_kernel(3, 0.5, 0)
    assert a[a.shape[0] // 2].sum() > 0.5  # elongated along x
    np.testing.assert_allclose(kernels.anisotropic_kernel(1.5, 1.5, 33), kernels.gaussian_kernel(1.5), atol=1e-6)


def test_noise_and_jpeg_do_what_they_say():
    img = np.full((64, 64, 3), 0.5, np.float32)
    noisy = parse_degradation("gaussian:sigma=0.3+noise:sigma=0.02")(img, np.random.default_rng(0))
    assert noisy.std() == pytest.approx(0.02, rel=0.1)
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (64, 1, 3))
    ramp[:, :, 0] = ramp[::-1, :, 0]
    low = parse_degradation("gaussian:sigma=0.3+jpeg:quality=10")(ramp, np.random.default_rng(0))
    high = parse_degradation("gaussian:sigma=0.3+jpeg:quality=95")(ramp, np.random.default_rng(0))
    clean = parse_degradation("gaussian:sigma=0.3")(ramp, np.random.default_rng(0))
    assert np.abs(low - clean).mean() > np.abs(high - clean).mean() > 0
    assert np.abs(high[..., 0] - clean[..., 0]).mean() < 0.01  # channels kept in RGB order


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_round_trips(name):
    deg = parse_degradation(SPECS[name] + CORRUPTED[-1])
    assert parse_degradation(degrade.degradation_spec(deg)) == deg


@pytest.mark.parametrize("spec, message", [("box", "unknown blur"), ("gaussian:radius=2", "bad blur option"),
                                           ("gaussian:sigma=x", "bad value"), ("gaussian:sigma", "bad blur option"),
                                           ("motion+blur", "unknown corruption"), ("defocus:radius=0", "> 0"),
                                           ("seed+noise:level=3", "bad corruption option")])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_degradation(spec)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_degrade_crop_equals_blurring_the_whole_image(name):
    deg = parse_degradation(SPECS[name].split("+")[0])
    img = np.random.default_rng(2).random((60, 50, 3)).astype(np.float32)
    sharp, blurred = degrade_crop(img, deg, 24, np.random.default_rng(5))
    kernel = deg.kernel(np.random.default_rng(5))  # the crop consumed the same first draws
    whole = degrade.convolve(img, kernel)
    ys, xs = np.argwhere(np.all(np.isclose(img[:37, :27], sharp[0, 0]), axis=2))[0]
    np.testing.assert_array_equal(img[ys : ys + 24, xs : xs + 24], sharp)
    np.testing.assert_allclose(whole[ys : ys + 24, xs : xs + 24], blurred, atol=1e-6)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.6, 1.0])
def test_blind_family_draws_motion_with_its_share_and_the_rest_evenly(share):
    blind = parse_degradation(f"blind:motion_share={share}").blur
    rng = np.random.default_rng(0)
    counts: dict[str, int] = {}
    for _ in range(4000):
        name = blind.choose(rng).name
        counts[name] = counts.get(name, 0) + 1
    assert abs(counts.get("motion", 0) / 4000 - share) < 0.03
    for other in ("gaussian", "anisotropic", "defocus"):
        assert abs(counts.get(other, 0) / 4000 - (1 - share) / 3) < 0.03
    with pytest.raises(ValueError, match="motion_share"):
        parse_degradation("blind:motion_share=1.5")
