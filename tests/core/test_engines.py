"""Every engine restores what eager PyTorch restores, for every registered model, at any window size and
batch; ``auto`` picks OpenVINO for deblur's own models on the CPU and eager PyTorch for foreign ones."""

import numpy as np
import pytest
import torch

import deblur
from deblur.core import engines, models
from deblur.core.restore import restore_images
from deblur.core.choices import ENGINE_NAMES
from tests.conftest import random_model, textured

CPU = torch.device("cpu")


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("name", models.names())
def test_every_engine_restores_what_eager_pytorch_does(name, engine):
    net = random_model(name, 3)
    net = net.to(memory_format=models.memory_format(net))  # as deblur.load() places it
    sizes = [(40, 52), (37, 61), (64, 64)]  # odd sides: padded inside, cropped
    images = [textured(h, w, 3, seed=i) for i, (h, w) in enumerate(sizes)]
    expected = restore_images(net, images, 3, CPU, tile=48, pad=4)  # windows of several shapes, batched
    got = restore_images(engines.prepare(net, engine, CPU, "fp32"), images, 3, CPU, tile=48, pad=4)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert np.abs(g.astype(int) - e).max() <= 1  # fp32 both: at most a rounding apart
    assert any(np.abs(e.astype(int) - img).mean() > 2 for e, img in zip(expected, images))  # not the identity


def test_openvino_in_bf16_stays_near_fp32():
    net = random_model("unet", 3)
    img = [textured(96, 128, 3)]
    fp32 = restore_images(net, img, 3, CPU, 512, 32)[0].astype(int)
    bf16 = restore_images(engines.prepare(net, "openvino", CPU, "bf16"), img, 3, CPU, 512, 32)[0]
    assert np.abs(bf16 - fp32).mean() < 1.0 and np.abs(bf16 - fp32).max() <= 8


def test_auto_is_openvino_for_deblurs_models_on_the_cpu_and_eager_for_foreign_ones():
    from tests.core.test_foreign import nafnet

    assert engines.resolve_engine("auto", random_model("unet", 3), CPU) == "openvino"
    assert engines.resolve_engine("auto", nafnet(), CPU) == "eager"  # a foreign architecture may not convert
    assert engines.resolve_engine("auto", random_model("unet", 3), torch.device("cuda")) == "eager"
    assert engines.resolve_engine("eager", random_model("unet", 3), CPU) == "eager"  # asked for: kept
    restorer = deblur.load(device="cpu")
    assert restorer.options.engine == "openvino" and isinstance(restorer.forward, engines.OpenVINO)
    assert deblur.load(device="cpu", engine="eager").forward is not restorer.forward


def test_openvino_refuses_a_device_it_does_not_run_on():
    with pytest.raises(ValueError, match="runs on the CPU.*--engine eager"):
        engines.prepare(random_model("seed", 3), "openvino", torch.device("cuda"), "fp32")


def test_a_converted_model_is_cached_and_a_damaged_entry_converted_again(tmp_path, monkeypatch):
    """Converting traces the network (~1 s an actor): done once per network and OpenVINO version, read back
    after; other weights are another entry; a damaged entry is converted again, with the same results."""
    monkeypatch.setenv("DEBLUR_CACHE", str(tmp_path))
    net, other = random_model("unet", 3, seed=1), random_model("unet", 3, seed=2)
    x = torch.rand(2, 3, 24, 40).contiguous(memory_format=torch.channels_last)
    first = engines.prepare(net, "openvino", CPU, "fp32")(x)
    entries = sorted(p.name for p in (tmp_path / "openvino").iterdir())
    assert len(entries) == 2 and entries[0].endswith(".bin") and entries[1].endswith(".xml")
    assert torch.equal(engines.prepare(net, "openvino", CPU, "fp32")(x), first)  # read back: the same results
    engines.prepare(other, "openvino", CPU, "fp32")
    assert len(list((tmp_path / "openvino").iterdir())) == 4  # other weights: an entry of their own
    (tmp_path / "openvino" / entries[1]).write_text("<not a model")
    again = engines.prepare(net, "openvino", CPU, "fp32")(x)
    assert torch.equal(again, first) and (tmp_path / "openvino" / entries[1]).read_text().startswith("<?xml")
