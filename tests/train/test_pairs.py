"""Training on real pairs through Ray Train: as good as synthetic training of the same recipe, exact resume."""

import json
import os

import pytest

from deblur.core.config import DegradeConfig, TrainConfig
from deblur.core.pairs import PairingError
from deblur.core.synth import write_degraded
from deblur.train.trainer import fit
from tests.conftest import textured, write_image


def _metrics(output, unit: str) -> dict[int, dict]:
    out = {}
    for d in os.listdir(output):
        if d.startswith(unit + "_"):
            with open(os.path.join(output, d, "config.json")) as f:
                out[int(d.split("_")[1])] = json.load(f)["metrics"]
    return out


def test_paired_training_of_the_seed_recipe_matches_synthetic_training(ray_cluster, tmp_path):
    """Pairs made by `deblur degrade` with the article's blur train the article's recipe as far as the same blur
    applied on the fly (within 0.3 dB), and it learns."""
    for i in range(64):
        write_image(tmp_path / "sharp" / f"{i:03d}.png", textured(28, 28, 1, seed=i))
    write_degraded(DegradeConfig(input=str(tmp_path / "sharp"), output=str(tmp_path / "blurred"), degradation="seed"))
    common = dict(data=str(tmp_path / "sharp"), model="seed", loss="mse", lr=3e-3, batch_size=8, epochs=40,
                  patch_size=28, val_fraction=0.2, checkpoint_every=40)
    fit(TrainConfig(output=str(tmp_path / "synthetic"), degradation="seed", **common))
    fit(TrainConfig(output=str(tmp_path / "paired"), paired=str(tmp_path / "blurred"), **common))
    synthetic, paired = _metrics(tmp_path / "synthetic", "epoch")[40], _metrics(tmp_path / "paired", "epoch")[40]
    assert abs(paired["val_psnr"] - synthetic["val_psnr"]) < 0.3, (paired, synthetic)
    assert abs(paired["val_psnr_blurred"] - synthetic["val_psnr_blurred"]) < 0.1  # the same inputs, 8-bit
    assert paired["val_psnr"] > 22, paired  # far from the random start (~6 dB); measured 25.55 (synthetic 25.57)


def test_nafnet_fine_tunes_on_a_gopro_tree_resumes_exactly_and_loads_back(ray_cluster, tmp_path, capfd):
    """--init NAFNet.pth (spandrel, random weights) on real pairs in the GoPro layout, by steps, with a synthetic
    share, flips and mixup: a run whose step-4 checkpoint was cut short resumes after step 2, with another number
    of loader workers, and its step 4 is the uninterrupted run's exactly (optimiser state, schedule and data
    restored); its checkpoints are deblur's (safetensors + config.json naming the architecture), loading back."""
    import torch

    from deblur.core import checkpoint
    from tests.core.test_foreign import nafnet, random_weights, save

    root = tmp_path / "GOPRO_Large" / "train"
    for seq in range(3):
        for n in range(4):
            sharp = textured(40, 48, seed=10 * seq + n)
            write_image(root / f"GOPR{seq:04d}" / "sharp" / f"{n:06d}.png", sharp)
            write_image(root / f"GOPR{seq:04d}" / "blur" / f"{n:06d}.png", (sharp // 2 + 60).astype("uint8"))
    init = save(random_weights(nafnet), tmp_path / "nafnet", "params")
    common = dict(data=str(tmp_path / "GOPRO_Large"), init=init, batch_size=4, patch_size=24, lr=1e-3, flips=True,
                  mixup=0.3, synthetic_share=0.5, degradation="gaussian:sigma=1..2+noise:sigma=0.01", val_every=2,
                  val_fraction=0.25, keep_checkpoints=10)
    run = tmp_path / "run"
    fit(TrainConfig(output=str(run), steps=4, loader_workers=1, **common))
    straight = _metrics(run, "step")
    assert sorted(straight) == [2, 4]
    weights = run / "step_00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a crash while step 4 was being written
    capfd.readouterr()
    best = fit(TrainConfig(output=str(run), steps=4, loader_workers=0, **common))  # resumes after step 2
    said = capfd.readouterr().out
    assert "skipping checkpoint" in said and "resuming after step 2 " in said, said[-2000:]  # not from scratch
    resumed = _metrics(run, "step")
    assert sorted(resumed) == [2, 4]
    assert resumed[4]["train_loss"] == pytest.approx(straight[4]["train_loss"], rel=1e-5)  # steps 3-4 again,
    assert resumed[4]["val_psnr"] == pytest.approx(straight[4]["val_psnr"], abs=1e-4)  # exactly as the first time
    model, config = checkpoint.load(best)
    assert config["model"] == "spandrel" and config["settings"]["architecture"] == "NAFNet"
    assert sorted(os.listdir(best)) == ["config.json", "model.safetensors", "optimizer.pt"]
    before, after = random_weights(nafnet), checkpoint.load_state(best)[0]
    assert sorted(after) == sorted(before) and any(not torch.equal(after[k], before[k]) for k in before)  # trained


def test_bad_pairs_fail_before_ray_and_any_output(tmp_path):
    write_image(tmp_path / "sharp" / "a.png", textured(24, 24))
    write_image(tmp_path / "blurry" / "b.png", textured(24, 24))
    with pytest.raises(PairingError, match="no degraded partner"):
        fit(TrainConfig(data=str(tmp_path / "sharp"), paired=str(tmp_path / "blurry"), output=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="--synthetic-share needs real pairs"):
        fit(TrainConfig(data=str(tmp_path / "sharp"), synthetic_share=0.5, output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_distillation_on_unlabelled_images_brings_the_student_closer_to_the_teacher(ray_cluster, tmp_path):
    """The README's recipe: `deblur run --model TEACHER` over blurry photos (JPEG in, PNG out), then `deblur train
    --data TEACHER_OUTPUT --paired PHOTOS --init` the shipped model, pairing by the run's manifest; the student's
    PSNR against the teacher on held-out photos rises."""
    import torch

    from deblur.core import checkpoint
    from deblur.core.config import EvalConfig, PipelineConfig
    from deblur.core.evaluate import evaluate
    from deblur.pipeline.run import run
    from tests.conftest import random_model

    for i in range(8):
        split = "held-out" if i >= 6 else "photos"
        write_image(tmp_path / split / f"p{i}.jpg", textured(48, 64, seed=i))
    teacher = tmp_path / "teacher"
    with torch.no_grad():
        checkpoint.save(str(teacher), random_model("unet", 3), "unet", {"step": 1, "metrics": {"val_psnr": 0.0}})
    for split in ("photos", "held-out"):
        summary = run(PipelineConfig(input=str(tmp_path / split), output=str(tmp_path / f"taught-{split}"),
                                     model=str(teacher)))
        assert summary.done == len(os.listdir(tmp_path / split))

    def student_vs_teacher(model) -> float:
        out = tmp_path / f"eval-{len(os.listdir(tmp_path))}"
        evaluate(EvalConfig(model=model, data=str(tmp_path / "taught-held-out"), paired=str(tmp_path / "held-out"),
                            output=str(out)))
        return json.loads((out / "summary.json").read_text())["mean"]["model"]["psnr"]

    before = student_vs_teacher(None)  # the shipped model
    student = fit(TrainConfig(data=str(tmp_path / "taught-photos"), paired=str(tmp_path / "photos"),
                              init=checkpoint.BUNDLED, output=str(tmp_path / "student"), steps=30, val_every=30,
                              batch_size=4, patch_size=32, lr=2e-3, val_fraction=0.2, loader_workers=0))
    after = student_vs_teacher(student)
    assert after > before + 1.0, (before, after)


def test_a_run_output_pairs_by_its_manifest_and_refuses_inputs_elsewhere(ray_cluster, tmp_path):
    from deblur.core.config import PipelineConfig
    from deblur.core.pairs import find_pairs
    from deblur.pipeline.run import run
    from deblur.train.datasets import manifest_pairs

    write_image(tmp_path / "in" / "a.jpg", textured(24, 24))
    write_image(tmp_path / "in" / "sub" / "b.png", textured(24, 24, seed=1))
    run(PipelineConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), format="webp"))
    found = find_pairs(str(tmp_path / "out"), str(tmp_path / "in"), manifest_pairs(str(tmp_path / "out")))
    assert found.layout == "manifest"
    assert sorted((p.name, os.path.basename(p.degraded)) for p in found.files) == [("a.webp", "a.jpg"),
                                                                                 ("sub/b.webp", "b.png")]
    write_image(tmp_path / "elsewhere" / "x.png", textured(24, 24))
    with pytest.raises(PairingError, match="not under"):
        find_pairs(str(tmp_path / "out"), str(tmp_path / "elsewhere"), manifest_pairs(str(tmp_path / "out")))
