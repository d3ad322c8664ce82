import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from deblur.core import checkpoint, evaluate, models
from deblur.core.config import TrainConfig
from deblur.train.trainer import fit


def _epochs(output) -> dict[int, dict]:
    out = {}
    for d in sorted(os.listdir(output)):
        if d.startswith("epoch_"):
            with open(os.path.join(output, d, "config.json")) as f:
                out[int(d[6:])] = json.load(f)
    return out


def test_two_workers_learn_checkpoint_and_resume_past_a_truncated_checkpoint(ray_cluster, photo_folder, tmp_path,
                                                                            capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --output, as the README's recipes give it (finding 9 of issue 19)
    output = tmp_path / "run"
    cfg = TrainConfig(data=str(photo_folder), val_data=str(photo_folder), output="run", model="seed",
                      degradation="gaussian:sigma=1.0", epochs=3, batch_size=8, lr=3e-3, patch_size=32,
                      patches_per_image=16, workers=2, keep_checkpoints=10)
    best = fit(cfg)
    first = _epochs(output)
    assert sorted(first) == [1, 2, 3]
    psnr = [first[e]["metrics"]["val_psnr"] for e in (1, 2, 3)]
    assert psnr[-1] > psnr[0] + 1.0  # validation loss goes down
    assert best == checkpoint.resolve(str(output))
    meta = first[3]
    assert meta["model"] == "seed" and meta["degradation"] == "gaussian:sigma=1.0" and meta["settings"]["channels"] == 1
    mtime = os.path.getmtime(output / "epoch_0001" / "config.json")
    assert "recipe: degradation gaussian:sigma=1.0 (given), loss mse (the article's)" in capfd.readouterr().out

    weights = output / "epoch_0003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a crash while the latest was being written
    fit(TrainConfig(**{**cfg.to_dict(), "epochs": 5}))  # same output: resumes after epoch 2, the last whole one
    assert "skipping checkpoint" in capfd.readouterr().out
    second = _epochs(output)
    assert sorted(second) == [1, 2, 3, 4, 5]
    assert os.path.getmtime(output / "epoch_0001" / "config.json") == mtime  # not redone
    for epoch in (3, 4, 5):  # epoch 3 was trained again from epoch 2
        checkpoint.load(str(output / f"epoch_{epoch:04d}"))
    assert second[4]["metrics"]["train_loss"] < first[1]["metrics"]["train_loss"]
    assert second[5]["metrics"]["val_psnr"] > psnr[0]


@pytest.mark.parametrize("name", models.names())
def test_every_model_trains_with_the_modern_recipe(ray_cluster, photo_folder, tmp_path, name):
    """Charbonnier loss, cosine schedule, flips, the blind family with noise and JPEG, 3-channel; and it learns:
    the U-Net ends above the blurred input's validation PSNR, the autoencoder gains on its first epoch."""
    output = tmp_path / name
    best = fit(TrainConfig(data=str(photo_folder), val_data=str(photo_folder), output=str(output), model=name,
                           channels=3, degradation="blind+noise:sigma=0..0.01+jpeg:quality=80..95,p=0.5", epochs=2,
                           batch_size=8, lr=2e-3, loss="charbonnier", schedule="cosine", flips=True,
                           patch_size=32, patches_per_image=64 if name == "unet" else 8,
                           model_options={"width": 8} if name == "unet" else None))
    epochs = _epochs(output)
    meta, metrics = epochs[2], epochs[2]["metrics"]
    assert meta["model"] == name and meta["train"]["loss"] == "charbonnier" and np.isfinite(metrics["train_loss"])
    if name == "unet":  # starts as the identity (the blurred input's PSNR): it must do better than the input
        assert metrics["val_psnr"] > metrics["val_psnr_blurred"] + 0.3, metrics  # measured: +0.72 dB (bf16), +0.78 (fp32)
    else:  # the article's autoencoder starts far below the input and needs hundreds of epochs to pass it
        assert metrics["val_psnr"] > epochs[1]["metrics"]["val_psnr"] + 0.2, metrics  # measured: +0.49 dB (bf16), +0.57 (fp32)
    model, _ = checkpoint.load(best)
    assert models.settings_of(model) == meta["settings"]
    assert evaluate.trained_on(best) == "blind+noise:sigma=0..0.01+jpeg:quality=80..95,p=0.5"  # not the default
    checkpoint.export(str(output), str(tmp_path / "shipped"))  # a training output exports its best checkpoint
    assert checkpoint.read_config(str(tmp_path / "shipped"))["metrics"] == checkpoint.read_config(best)["metrics"]


@pytest.mark.parametrize("field, value, message", [
    ("degradation", "box", "unknown blur"), ("model", "nope", "unknown model"), ("loss", "l7", "unknown loss"),
    ("schedule", "step", "unknown schedule"), ("model_options", {"depth": 3}, "bad model option"),
    ("degradation", "motion:lenght=9", "bad blur option 'lenght'"),
    ("epochs", 0, "epochs must be >= 1"), ("val_fraction", 1.0, "val-fraction")])
def test_bad_settings_fail_before_any_work(photo_folder, tmp_path, field, value, message):
    """Names and shapes fail when the config is built; what only a registry knows (a model's settings, a
    blur's options) when training starts, before Ray or any output."""
    with pytest.raises(ValueError, match=message):
        fit(TrainConfig(data=str(photo_folder), output=str(tmp_path / "run"), **{field: value}))
    assert not (tmp_path / "run").exists()


def _steps(output) -> dict[int, dict]:
    out = {}
    for d in os.listdir(output):
        if d.startswith("step_"):
            with open(os.path.join(output, d, "config.json")) as f:
                out[int(d[5:])] = json.load(f)
    return out


def test_init_fine_tunes_from_a_checkpoint_with_its_model_and_settings(ray_cluster, photo_folder, tmp_path,
                                                                         monkeypatch):
    """--init takes the checkpoint's architecture and settings (a U-Net of width 8 here), not the flags'
    defaults, and the recipe it records. (Exact resume by steps, with other loader workers, and a foreign
    checkpoint: tests/train/test_pairs.py.)"""
    torch.manual_seed(0)
    checkpoint.save(str(tmp_path / "start"), models.build("unet", channels=3, width=8), "unet",
                    {"step": 2, "metrics": {"val_psnr": 20.0}, "train": {"lr": 3e-3, "loss": "l1", "patch_size": 32,
                                                                          "degradation": "real+noise:sigma=0.01"}})
    monkeypatch.chdir(tmp_path)  # relative --init and --output, as the Makefile's recipes give them (finding 9 of issue 19)
    tuned = fit(TrainConfig(output="tuned", init="start", steps=2, data=str(photo_folder), val_data=str(photo_folder),
                            batch_size=4, val_every=2, loader_workers=0))
    model, config = checkpoint.load(tuned)
    assert config["model"] == "unet" and config["settings"]["width"] == 8 and config["train"]["init"]
    assert config["train"]["lr"] == pytest.approx(1e-3) and config["train"]["loss"] == "l1"  # the recipe it records
    before = checkpoint.load_state(str(tmp_path / "start"))[0]
    assert any(not torch.equal(before[k], v) for k, v in checkpoint.load_state(tuned)[0].items())  # it trained


def test_ctrl_c_aborts_the_run_and_reaches_the_caller(ray_cluster, photo_folder, tmp_path):
    """Ray Train's own handler aborts the run but swallows Ctrl-C and stays installed after fit: a test suite
    (or a notebook) that trained once went on after Ctrl-C. Now the interrupt reaches the caller, and the
    handler from before the fit is back afterwards."""
    before, output = signal.getsignal(signal.SIGINT), tmp_path / "run"

    def interrupt_once_training() -> None:  # Ctrl-C once the first checkpoint is written: mid-run
        deadline = time.time() + 300
        while not (output.exists() and any(p.name.startswith("step_") for p in output.iterdir())):
            if time.time() > deadline:
                return
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_training, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(data=str(photo_folder), val_data=str(photo_folder), output=str(output), model="seed",
                        steps=100_000, val_every=2, batch_size=4, patch_size=32, degradation="gaussian:sigma=1",
                        loader_workers=0))
    assert signal.getsignal(signal.SIGINT) is before
    assert max(_steps(output)) < 100_000


def test_the_fashion_mnist_download_fails_before_ray_and_any_output(tmp_path, monkeypatch):
    """Issue 23: without a network, --data fashion-mnist failed only after Ray had started. (An empty cache
    folder makes it download; from a mirror that refuses connections.)"""
    from tests.conftest import _free_port

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DEBLUR_FASHION_MNIST_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(Exception, match="Cannot connect|refused"):
        fit(TrainConfig(data="fashion-mnist", output=str(tmp_path / "run"), epochs=1))
    assert not (tmp_path / "run").exists()


def test_ray_trains_settings_during_a_fit_unless_the_user_said_otherwise(monkeypatch):
    """Ray's 2 s poll made each run ~4 s longer, and its preemption watcher is a process per run that a local
    cluster has no use for; the settings are propagated from where the trainer is made."""
    import os

    from deblur.train.trainer import NO_PREEMPTION, POLL, _train_settings

    (poll, quick), (watcher, off) = POLL, NO_PREEMPTION
    monkeypatch.delenv(poll, raising=False)
    monkeypatch.delenv(watcher, raising=False)
    with _train_settings(local=True):
        assert os.environ[poll] == quick and os.environ[watcher] == off
    assert poll not in os.environ and watcher not in os.environ
    with _train_settings(local=False):  # a shared cluster's nodes may be drained: Ray's watcher stays
        assert os.environ[poll] == quick and watcher not in os.environ
    monkeypatch.setenv(poll, "3")
    monkeypatch.setenv(watcher, "1")
    with _train_settings(local=True):
        assert os.environ[poll] == "3" and os.environ[watcher] == "1"
    assert os.environ[poll] == "3" and os.environ[watcher] == "1"
