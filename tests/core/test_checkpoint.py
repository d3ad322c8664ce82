import json
import os
import pickle

import pytest
import safetensors.torch
import torch

from deblur.core import checkpoint, models


@pytest.mark.parametrize("name", models.names())
def test_save_load_round_trip_rebuilds_the_model_from_its_own_settings(tmp_path, name):
    model = models.build(name, channels=3)
    checkpoint.save(str(tmp_path / "ck"), model, name, {"degradation": "seed", "metrics": {"val_psnr": 30.0}})
    loaded, config = checkpoint.load(str(tmp_path / "ck"))
    assert config["model"] == name and config["settings"]["channels"] == 3
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(x), model.eval()(x))


def test_checkpoints_hold_no_pickles(tmp_path):
    model = models.build("seed")
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 1, 8, 8)).sum().backward()
    opt.step()
    checkpoint.save(str(tmp_path), model, "seed", {}, opt)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors", "optimizer.pt"]
    state = checkpoint.load_optimizer_state(str(tmp_path))  # weights_only: tensors and plain containers
    assert state["state"][0]["exp_avg"].shape == model.encoder[0].weight.shape


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/deblur-pwned",))


def test_a_planted_pickle_is_refused(tmp_path):
    checkpoint.save(str(tmp_path), models.build("seed"), "seed", {})
    with open(tmp_path / "optimizer.pt", "wb") as f:
        torch.save({"x": Evil()}, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load_optimizer_state(str(tmp_path))
    assert not os.path.exists("/tmp/deblur-pwned")


def test_resolve_picks_the_best_checkpoint_of_a_training_output(tmp_path):
    model = models.build("seed")
    for epoch, psnr in [(1, 20.0), (2, 25.0), (3, 22.0)]:
        checkpoint.save(str(tmp_path / f"epoch_{epoch:04d}"), model, "seed",
                        {"epoch": epoch, "metrics": {"val_psnr": psnr}})
    assert checkpoint.resolve(str(tmp_path)).endswith("epoch_0002")
    assert checkpoint.resolve(str(tmp_path / "epoch_0003")).endswith("epoch_0003")


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.resolve(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model": "seed", "settings": {}}))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable deblur checkpoint"):
        checkpoint.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model": "unknown", "settings": {}}))
    with pytest.raises(ValueError, match="unknown model"):
        checkpoint.load(str(tmp_path))


def test_load_from_s3(bucket, tmp_path):
    import fsspec

    model = models.build("seed")
    checkpoint.save(str(tmp_path / "ck"), model, "seed", {"epoch": 1, "metrics": {"val_psnr": 1.0}})
    fsspec.filesystem("s3").put(str(tmp_path / "ck") + "/", f"{bucket[5:]}/run/epoch_0001/", recursive=True)
    uri = checkpoint.resolve(f"{bucket}/run")
    assert uri == f"{bucket}/run/epoch_0001"
    loaded, _ = checkpoint.load(uri)
    x = torch.rand(1, 1, 9, 9)
    assert torch.equal(loaded(x), model.eval()(x))


@pytest.mark.parametrize("name", models.names())
def test_export_ships_half_precision_weights_that_load_as_float32(tmp_path, name):
    model = models.build(name, channels=3)
    opt = torch.optim.Adam(model.parameters())
    checkpoint.save(str(tmp_path / "ck"), model, name, {"metrics": {"val_psnr": 30.0}}, opt)
    checkpoint.export(str(tmp_path / "ck"), str(tmp_path / "ship"), note="shipped")
    assert sorted(os.listdir(tmp_path / "ship")) == ["config.json", "model.safetensors"]  # no optimizer
    shipped = safetensors.torch.load_file(str(tmp_path / "ship" / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in shipped.values() if t.is_floating_point())
    loaded, config = checkpoint.load(str(tmp_path / "ship"))
    assert config["weights_dtype"] == "float16" and config["note"] == "shipped"
    assert config["metrics"]["val_psnr"] == 30.0 and config["model"] == name
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=2e-3, rtol=0)


@pytest.mark.parametrize("config", [
    {"model": "unet", "settings": {"width": "wide"}}, {"model": "unet", "settings": {"nope": 1}},
    {"model": "unet", "settings": [3]}, {"settings": {}}, ["not", "an", "object"]])
def test_a_tampered_config_is_not_a_readable_checkpoint(tmp_path, config):
    checkpoint.save(str(tmp_path), models.build("unet"), "unet", {})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a readable deblur checkpoint"):
        checkpoint.load(str(tmp_path))
