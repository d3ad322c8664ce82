import numpy as np
import pytest
import torch

from deblur import degrade, models
from deblur.degrade import parse_blur
from deblur.steps import (LOSSES, dihedral, learning_rate, loss_fn, train_step, training_batches)
from tests.conftest import textured
from tests.test_degrade import SPECS


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_is_lowest_at_the_target_and_has_gradients(name):
    target = torch.rand(2, 3, 8, 8) * 0.8 + 0.1
    near, far = target + 0.01, target + 0.1
    assert loss_fn(near, target, name) < loss_fn(far, target, name)
    out = far.clone().requires_grad_(True)
    loss_fn(out, target, name).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_learning_rate_schedules():
    assert learning_rate(1e-3, 0.5, "constant") == 1e-3
    warm = [learning_rate(1e-3, p, "cosine") for p in (0.0, 0.01, 0.02)]
    assert warm[0] < warm[1] < warm[2] <= 1e-3
    assert learning_rate(1e-3, 0.51, "cosine") == pytest.approx(0.505e-3, rel=0.02)
    assert learning_rate(1e-3, 1.0, "cosine") == pytest.approx(1e-5)


def test_dihedral_gives_eight_distinct_invertible_views():
    img = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    views = [dihedral(img, k) for k in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8
    np.testing.assert_array_equal(views[0], img)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dihedral_is_numpys_rotation_then_mirror(shape, dtype):
    img = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    for k in range(8):
        want = np.rot90(img, k % 4)
        want = want[:, ::-1] if k >= 4 else want
        got = dihedral(img, k)
        assert got.dtype == img.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", degrade.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_training_batches_for_every_blur(name, channels):
    images = [textured(40, 52, 3, seed=i) for i in range(5)]
    deg = parse_blur(SPECS[name] + "+jpeg:quality=80,p=0.5")
    rng = np.random.default_rng(0)
    batches = list(training_batches(images, 2, deg, 32, channels, rng, flips=True))
    assert [len(b) for b, _ in batches] == [2, 2, 1]
    for blurred, sharp in batches:
        assert blurred.shape == sharp.shape == (len(blurred), 32, 32, channels)
        assert blurred.dtype == sharp.dtype == np.float32 and 0 <= blurred.min() and blurred.max() <= 1


@pytest.mark.parametrize("name", models.names())
def test_a_few_steps_of_every_model_reduce_the_loss(name):
    torch.manual_seed(0)
    model = models.build(name, channels=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = [textured(64, 64, 3, seed=i) for i in range(4)]
    blurred, sharp = next(training_batches(images, 4, parse_blur("gaussian:sigma=1.5"), 48, 3,
                                           np.random.default_rng(0)))
    x, y = torch.from_numpy(blurred.transpose(0, 3, 1, 2)), torch.from_numpy(sharp.transpose(0, 3, 1, 2))
    losses = [train_step(model, opt, x, y, "mse", torch.device("cpu"), False, clip=1.0) for _ in range(25)]
    assert losses[-1] < losses[0]
