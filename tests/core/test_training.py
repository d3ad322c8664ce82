import numpy as np
import pytest
import torch

from deblur.core import models
from deblur.core.degrade import parse_degradation
from deblur.core.degrade import BLURS
from deblur.core.training import LOSSES, SCHEDULES, learning_rate, loss_fn, optimizer, train_step, training_batches
from tests.conftest import textured
from tests.core.test_degrade import SPECS


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_lowest_at_the_target_and_has_gradients(name):
    target = torch.rand(2, 3, 8, 8) * 0.8 + 0.1
    near, far = target + 0.01, target + 0.1
    assert loss_fn(near, target, name) < loss_fn(far, target, name)
    out = far.clone().requires_grad_(True)
    loss_fn(out, target, name).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


@pytest.mark.parametrize("registry, kind", [(LOSSES, "loss"), (SCHEDULES, "schedule")])
def test_unknown_loss_or_schedule_is_an_error_not_a_fallback(registry, kind):
    with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; choose one of"):
        registry["nope"]
    with pytest.raises(ValueError, match="unknown loss"):
        loss_fn(torch.zeros(1), torch.zeros(1), "nope")


def test_the_optimiser_is_adam_with_keras_epsilon():
    opt = optimizer(models.build("seed"), 1e-3)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["eps"] == 1e-7 and opt.defaults["lr"] == 1e-3


def test_learning_rate_schedules():
    assert learning_rate(1e-3, 0.5, "constant") == 1e-3
    warm = [learning_rate(1e-3, p, "cosine") for p in (0.0, 0.01, 0.02)]
    assert warm[0] < warm[1] < warm[2] <= 1e-3
    assert learning_rate(1e-3, 0.51, "cosine") == pytest.approx(0.505e-3, rel=0.02)
    assert learning_rate(1e-3, 1.0, "cosine") == pytest.approx(1e-5)


@pytest.mark.parametrize("name", BLURS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_training_batches_for_every_blur(name, channels):
    images = [textured(40, 52, 3, seed=i) for i in range(5)]
    deg = parse_degradation(SPECS[name] + "+jpeg:quality=80,p=0.5")
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
    blurred, sharp = next(training_batches(images, 4, parse_degradation("gaussian:sigma=1.5"), 48, 3,
                                           np.random.default_rng(0)))
    x, y = torch.from_numpy(blurred.transpose(0, 3, 1, 2)), torch.from_numpy(sharp.transpose(0, 3, 1, 2))
    losses = [train_step(model, opt, x, y, "mse", torch.device("cpu"), False, clip=1.0) for _ in range(25)]
    assert losses[-1] < losses[0]
