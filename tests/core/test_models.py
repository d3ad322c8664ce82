import os
import re

import numpy as np
import pytest
import torch

from deblur.core import models
from deblur.core.models.seed import SameConv2d, SameConvTranspose2d
from tests.conftest import random_model


def test_seed_has_the_articles_parameter_count():
    assert models.cost(models.build("seed"), 1)[0] == 22_057


def keras_same_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Reference TensorFlow 'same' convolution (stride 1) for one image: x C x H x W, w O x C x k x k."""
    k = w.shape[-1]
    before = (k - 1) // 2  # TF: pad_total // 2 before, the rest after (bottom/right)
    xp = np.pad(x, ((0, 0), (before, k - 1 - before), (before, k - 1 - before)))
    h, wd = x.shape[1:]
    out = np.zeros((w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i : i + h, j : j + wd])
    return out


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (5, 9), (28, 28)])
def test_same_conv_matches_keras_padding(size):
    torch.manual_seed(0)
    conv = SameConv2d(3, 4, 2, bias=False)
    x = torch.randn(1, 3, *size)
    ref = keras_same_conv(x[0].double().numpy(), conv.weight.detach().double().numpy())
    np.testing.assert_allclose(conv(x)[0].detach().numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (5, 9)])
def test_same_transposed_conv_is_the_adjoint_of_same_conv(size):
    """Keras' Conv2DTranspose('same') is the gradient of Conv2D('same'): <conv x, y> == <x, convT y>."""
    torch.manual_seed(1)
    conv = SameConv2d(3, 5, 2, bias=False)
    convt = SameConvTranspose2d(5, 3, 2, bias=False)
    convt.weight.data = conv.weight.data.clone()
    x, y = torch.randn(2, 3, *size), torch.randn(2, 5, *size)
    assert convt(y).shape == x.shape
    lhs = (conv(x) * y).sum()
    rhs = (x * convt(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-4)
    # and the same result as autograd's gradient of the conv
    x.requires_grad_(True)
    (g,) = torch.autograd.grad((conv(x) * y).sum(), x)
    assert torch.allclose(g, convt(y), atol=1e-5)


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(28, 28), (31, 17), (64, 48)])
def test_every_model_keeps_size_and_range(name, channels, size):
    model = random_model(name, channels)
    with torch.no_grad():
        out = model(torch.rand(2, channels, *size))
    assert out.shape == (2, channels, *size)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", models.names())
def test_settings_rebuild_the_same_architecture(name):
    model = random_model(name)
    again = models.build(name, **models.settings_of(model))
    again.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(model(x), again.eval()(x)) and not torch.allclose(model(x), x, atol=1e-2)


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_runs_channels_last_and_gives_what_nchw_gives(name, channels):
    """deblur's models declare channels-last (their faster layout); converted, they compute the same."""
    model = random_model(name, channels)
    assert models.memory_format(model) == torch.channels_last
    x = torch.rand(2, channels, 31, 40)
    last = random_model(name, channels).to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = last(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=0)
    if channels == 3:  # a one-channel tensor is both layouts at once
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'nope'.*seed"):
        models.build("nope")


def test_seed_is_linear_before_the_sigmoid():
    """The article's network has no activations in between: logit(f(x)) is affine in x."""
    model = models.build("seed").eval()
    a, b = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    logit = lambda x: torch.logit(model(x).double())
    zero = logit(torch.zeros_like(a))
    with torch.no_grad():
        lhs = logit(a + b) - zero
        rhs = (logit(a) - zero) + (logit(b) - zero)
    assert torch.allclose(lhs, rhs, atol=1e-3)


def test_macs_per_pixel_counts_every_convolution():
    assert models.cost(models.build("seed"), 1)[1] == 21_824  # sum of k*k*c_in*c_out over the 8 layers
    unet = models.build("unet")
    assert 50_000 < models.cost(unet, 3)[1] < 200_000


def test_the_default_model_is_a_residual_unet_that_starts_as_the_identity():
    model = models.build(models.DEFAULT).eval()
    assert 100_000 < models.cost(model, 3)[0] < 5_000_000
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(model(x), x)


@pytest.mark.parametrize("name", models.names())
def test_the_readme_states_each_models_parameters_and_macs(name):
    """The README's model table (parameters, MACs per pixel) is what the registered defaults build."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "README.md")).read()
    row = re.search(rf"^\| `{name}`[^|]*\|[^|]*\| ([\d,]+) \| ([\d,]+)", readme, re.M)
    assert row, f"no row for {name} in the README's model table"
    model = models.build(name, channels=1 if name == "seed" else 3)
    assert (int(row[1].replace(",", "")), int(row[2].replace(",", ""))) == models.cost(model, model.settings.channels)


def test_unknown_settings_are_clear_errors():
    with pytest.raises(ValueError, match="bad model option for 'unet': depth; settings: channels, depths, middle, width"):
        models.build("unet", depth=3)
