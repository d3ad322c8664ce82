"""Foreign checkpoints through spandrel: NAFNet (a CNN), SwinIR (a window transformer) and FFTformer (a
frequency-domain transformer), built small with random weights (no downloads), saved as .pth (plain and
with BasicSR's ``params`` wrapper) and .safetensors, loaded through deblur.load: the same output as
spandrel's own call, whole image, fp32. Refusals: a malicious pickle, TorchScript, super-resolution."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch

import deblur
from deblur.core import checkpoint, foreign, models
from deblur.core.image import to_float
from tests.conftest import textured

spandrel = pytest.importorskip("spandrel")


def nafnet(channels: int = 3) -> torch.nn.Module:
    from spandrel.architectures.NAFNet import NAFNet

    return NAFNet(img_channel=channels, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


def swinir() -> torch.nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(img_size=16, in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=1,
                  upsampler="", resi_connection="1conv", mlp_ratio=2.0)


def fftformer() -> torch.nn.Module:
    from spandrel.architectures.FFTformer import FFTformer

    return FFTformer(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1)


ARCHITECTURES = {"NAFNet": nafnet, "SwinIR": swinir, "FFTformer": fftformer}


def random_weights(build) -> dict[str, torch.Tensor]:
    """A network's state dict with random, non-identity weights (every tensor perturbed)."""
    torch.manual_seed(0)
    net = build()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def save(state: dict, path, form: str) -> str:
    path = str(path)
    if form == "safetensors":
        safetensors.torch.save_file(state, path + ".safetensors")
        return path + ".safetensors"
    torch.save({"params": state} if form == "params" else state, path + ".pth")
    return path + ".pth"


def spandrel_output(state: dict, x: np.ndarray) -> np.ndarray:
    """spandrel's own call on HWC float32 ``x``, whole image, fp32."""
    descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    t = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        return descriptor(t)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("form", ["pth", "params", "safetensors"])
def test_a_foreign_checkpoint_gives_what_spandrel_gives(tmp_path, arch, form):
    state = random_weights(ARCHITECTURES[arch])
    uri = save(state, tmp_path / arch, form)
    restorer = deblur.load(uri, device="cpu", precision="fp32")  # against spandrel in fp32
    assert restorer.config["settings"]["architecture"] == arch
    assert models.memory_format(restorer.model) == torch.contiguous_format  # spandrel's may use view()
    for h, w in ((37, 45), (20, 1)):  # not multiples of anything; one pixel wide
        x = to_float(textured(h, w, 3, seed=h))
        ours = restorer(x)
        assert ours.shape == x.shape
        np.testing.assert_allclose(ours, spandrel_output(state, x), atol=1e-5)
        assert np.abs(ours - x).mean() > 1e-3  # random weights: not the identity


def test_grey_and_rgba_images_go_through_a_colour_model(tmp_path):
    state = random_weights(nafnet)
    restorer = deblur.load(save(state, tmp_path / "n", "pth"), device="cpu", precision="fp32")
    grey = to_float(textured(24, 28, 1, seed=3))
    expected = spandrel_output(state, np.repeat(grey[..., None], 3, axis=2)).mean(axis=2)
    np.testing.assert_allclose(restorer(grey), expected, atol=1e-5)
    rgba = to_float(textured(24, 28, 4, seed=4))
    out = restorer(rgba)
    np.testing.assert_allclose(out[..., :3], spandrel_output(state, rgba[..., :3]), atol=1e-5)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])  # alpha kept aside


class WritesAFile:
    """A pickle that would create a file if it were executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pth"
    with open(bad, "wb") as f:
        pickle.dump({"params": WritesAFile(str(marker))}, f)
    torch.save({"weight": WritesAFile(str(marker))}, tmp_path / "zipped.pth")
    for path in (bad, tmp_path / "zipped.pth"):
        with pytest.raises(ValueError, match="refused"):
            deblur.load(str(path), device="cpu")
    assert not marker.exists()


def test_torchscript_and_whole_model_pickles_are_refused_with_how_to_convert(tmp_path):
    torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(ValueError, match="TorchScript.*state_dict"):
        deblur.load(str(tmp_path / "scripted.pt"), device="cpu")
    torch.save(torch.nn.Conv2d(3, 3, 3), tmp_path / "whole.pth")
    with pytest.raises(ValueError, match="refused.*state_dict"):
        deblur.load(str(tmp_path / "whole.pth"), device="cpu")


def test_a_super_resolution_checkpoint_is_refused_with_its_scale_named(tmp_path):
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    sr = SwinIR(img_size=16, in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=4,
                upsampler="pixelshuffledirect", resi_connection="1conv", mlp_ratio=2.0)
    path = save(sr.state_dict(), tmp_path / "sr", "pth")
    with pytest.raises(ValueError, match="scale 4"):
        deblur.load(path, device="cpu")


def test_a_precision_the_architecture_cannot_run_falls_back_and_tiling_is_honoured(tmp_path, caplog):
    nafnet_uri = save(random_weights(nafnet), tmp_path / "n", "safetensors")
    assert deblur.load(nafnet_uri, device="cpu", precision="fp16").options.precision == "fp32"  # no fp16
    assert deblur.load(nafnet_uri, device="cpu", precision="bf16").options.precision == "bf16"
    swin = deblur.load(save(random_weights(swinir), tmp_path / "s", "pth"), device="cpu", tile=128)
    assert swin.options.tile > 10_000 and "whole images" in caplog.text  # spandrel discourages tiling SwinIR


def test_a_foreign_model_has_an_id_of_its_architecture_and_weights(tmp_path):
    a = save(random_weights(nafnet), tmp_path / "a", "pth")
    b = save({k: v * 1.01 for k, v in random_weights(nafnet).items()}, tmp_path / "b", "pth")
    ida, idb = checkpoint.model_id(a), checkpoint.model_id(b)
    assert ida.startswith("NAFNet-") and idb.startswith("NAFNet-") and ida != idb
    assert checkpoint.resolve(a) == a and foreign.is_foreign(a) and not foreign.is_foreign(str(tmp_path))


def test_eval_and_batch_restorer_take_a_foreign_checkpoint(tmp_path, photo_folder):
    import json

    from deblur.core.config import EvalConfig
    from deblur.core.evaluate import evaluate

    state = random_weights(nafnet)
    uri = save(state, tmp_path / "n", "safetensors")
    evaluate(EvalConfig(data=str(photo_folder), output=str(tmp_path / "eval"), model=uri, degradation="gaussian",
                        limit=2))
    with open(tmp_path / "eval" / "summary.json") as f:
        assert json.load(f)["model"].startswith("NAFNet-")
    images = np.stack([textured(20, 24, 3, seed=s) for s in (1, 2)])
    out = deblur.BatchRestorer(uri, output_column="restored", device="cpu")({"image": images})["restored"]
    expected = np.rint(spandrel_output(state, images[1].astype(np.float32) / 255) * 255)
    assert out.shape == images.shape and np.abs(out[1].astype(int) - expected).max() <= 1


def test_extra_architectures_only_when_installed_and_asked_for_with_their_licence_named(tmp_path, monkeypatch):
    path = save({"unknown.weight": torch.zeros(3, 3)}, tmp_path / "x", "pth")
    with pytest.raises(ValueError, match="no architecture spandrel knows.*non-commercial"):
        deblur.load(path, device="cpu")
    try:
        import spandrel_extra_arches  # noqa: F401
    except ImportError:
        monkeypatch.setenv(foreign.EXTRA, "1")
        monkeypatch.setattr(foreign, "_extra_installed", False)
        with pytest.raises(ValueError, match="pip install spandrel-extra-arches.*non-commercial"):
            deblur.load(path, device="cpu")
