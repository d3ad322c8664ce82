import dataclasses

import cv2
import numpy as np
import pytest

from deblur.core import degrade, kernels
from deblur.core.degrade import CORRUPTIONS, degrade_crop, parse_degradation

SPECS = {"none": "none+noise:sigma=0.01", "seed": "seed", "gaussian": "gaussian:sigma=0.5..2.5", "anisotropic": "anisotropic",
         "motion": "motion:length=5..15", "defocus": "defocus:radius=1..4", "blind": "blind",
         "shake": "shake:length=5..40", "warp": "warp:shift=2..8,rotation=0..1,samples=8", "real": "real"}
SYMMETRIC = set(SPECS) - {"shake", "warp", "real"}  # kernels equal under a half turn (correlation == convolution)
CORRUPTED = ["", "+noise:sigma=0.01", "+jpeg:quality=60..95", "+noise:sigma=0..0.02,p=0.5+jpeg:quality=70",
             "+quantize:bits=8", "+poisson:a=0.001..0.01,sigma=0..0.01"]



def _part_spec(obj) -> str:
    parts = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        parts.append(f"{f.name}={value[0]}..{value[1]}" if isinstance(value, tuple) else f"{f.name}={value}")
    return obj.name + (":" + ",".join(parts) if parts else "")


def degradation_spec(deg) -> str:
    """The canonical spec string of ``deg`` (inverse of :func:`parse_degradation`)."""
    return "+".join(_part_spec(p) for p in (deg.blur, *deg.corruptions))

def test_every_registered_blur_and_corruption_has_a_test_spec():
    assert sorted(SPECS) == degrade.BLURS.names()
    used = {part.split(":")[0] for spec in CORRUPTED for part in spec.split("+")[1:]}
    assert sorted(used) == CORRUPTIONS.names()


@pytest.mark.parametrize("name", degrade.BLURS.names())
def test_every_blur_is_a_blur_and_draws_a_kernel_or_a_camera_path(name):
    from deblur.core.camera import CameraPath

    blur = degrade.BLURS[name]()
    assert isinstance(blur, degrade.Blur) and blur.name == name
    drawn = [blur.draw(np.random.default_rng(seed)) for seed in range(8)]
    for d in drawn:
        if not isinstance(d, CameraPath):
            assert d.dtype == np.float32 and d.shape[0] % 2 == 1 and abs(float(d.sum()) - 1) < 1e-5


def test_corruptions_state_their_noise_for_wiener():
    from deblur.core.wiener import noise_sigma_of

    deg = degrade.parse_degradation("gaussian+noise:sigma=0.01,p=0.5+poisson:a=0.02,sigma=0+jpeg:quality=90")
    assert noise_sigma_of(deg.corruptions) == pytest.approx(0.005 + 0.1)  # jpeg adds none it states
    assert noise_sigma_of(()) == 0.0


def test_seed_blur_is_opencv_gaussianblur_3x3():
    img = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    expected = cv2.GaussianBlur(img, (3, 3), 0)
    np.testing.assert_array_equal(parse_degradation("seed")(img, np.random.default_rng(0)), expected)
    k = parse_degradation("seed").blur.draw(None)
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
    k = deg.draw_blur(np.random.default_rng(3))
    if isinstance(k, np.ndarray):
        assert abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    if name in SYMMETRIC:
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"seed", "none"}))
def test_ranges_are_sampled_per_image(name):
    deg = parse_degradation(SPECS[name])
    draws = [deg.draw_blur(np.random.default_rng(s)) for s in range(12)]
    assert len({(k.shape, float(k.max())) if isinstance(k, np.ndarray) else float(k.shifts.max()) for k in draws}) > 1


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
    assert parse_degradation(degradation_spec(deg)) == deg


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
    drawn = deg.draw_blur(np.random.default_rng(5))  # the crop consumed the same first draws
    whole = degrade.blur_region(img, drawn)
    ys, xs = np.argwhere(np.all(np.isclose(img[:37, :27], sharp[0, 0]), axis=2))[0]
    np.testing.assert_array_equal(img[ys : ys + 24, xs : xs + 24], sharp)
    np.testing.assert_allclose(whole[ys : ys + 24, xs : xs + 24], blurred, atol=2e-5)


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


def test_shake_kernels_are_curved_centred_and_as_long_as_drawn():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = kernels.ShakeBlur(length=(5.0, 60.0)).draw(rng)
        assert abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1 and k.shape[0] <= 2 * 30 + 3
        ys, xs = np.mgrid[: k.shape[0], : k.shape[1]]
        c = k.shape[0] // 2
        assert abs((k * ys).sum() - c) < 1e-3 and abs((k * xs).sum() - c) < 1e-3  # centroid: no image shift
    long = [kernels.ShakeBlur(length=(60.0, 60.0), exposure=(1.0, 1.0)).draw(rng) for _ in range(20)]
    assert max(k.shape[0] for k in long) >= 21 and any(not np.allclose(k, k[::-1, ::-1]) for k in long)


def test_warp_blur_varies_across_the_frame_and_saturates_highlights():
    path = degrade.parse_degradation("warp:shift=0,rotation=2,samples=16").draw_blur(np.random.default_rng(1))
    img = np.zeros((101, 101), np.float32)
    img[::10, :] = img[:, ::10] = 1.0  # a grid of lines
    out = degrade.blur_region(img, path)
    centre, corner = out[45:56, 45:56], out[:11, :11]
    assert np.abs(centre - img[45:56, 45:56]).mean() < np.abs(corner - img[:11, :11]).mean()  # rotation: corners move
    point = np.full((41, 41), 0.1, np.float32)
    point[20, 20] = 1.0
    shifted = degrade.parse_degradation("warp:shift=12,rotation=0,highlight=4,gamma=2").draw_blur(np.random.default_rng(2))
    streak = degrade.blur_region(point, shifted)
    dim = degrade.blur_region(np.where(point == 1, 0.9, point).astype(np.float32), shifted)
    assert (streak > 0.5).sum() > (dim > 0.5).sum()  # a saturated highlight leaves a brighter, longer streak


def test_poisson_noise_grows_with_the_signal():
    deg = degrade.parse_degradation("none+poisson:a=0.01,sigma=0")
    rng = np.random.default_rng(0)
    dark, bright = np.full((200, 200), 0.1, np.float32), np.full((200, 200), 0.8, np.float32)
    var_dark, var_bright = np.var(deg(dark, rng) - dark), np.var(deg(bright, rng) - bright)
    assert var_dark == pytest.approx(0.01 * 0.1, rel=0.1) and var_bright == pytest.approx(0.01 * 0.8, rel=0.1)


def test_the_realistic_family_draws_shake_warp_and_blind_by_share():
    real = degrade.parse_degradation("real:shake_share=0.4,warp_share=0.3").blur
    rng = np.random.default_rng(0)
    draws = [real.draw(rng) for _ in range(1000)]
    warps = sum(not isinstance(d, np.ndarray) for d in draws)
    assert abs(warps / 1000 - 0.3) < 0.04
    with pytest.raises(ValueError, match="sum to <= 1"):
        degrade.parse_degradation("real:shake_share=0.8,warp_share=0.5")
