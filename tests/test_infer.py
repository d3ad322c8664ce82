import os

import numpy as np
import pytest
import torch

from deblur import checkpoint, infer, models
from deblur.config import DeblurConfig
from deblur.io import OUTPUT_FORMATS, decode
from tests.conftest import textured, write_image


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "seed"
    torch.manual_seed(0)
    checkpoint.save(str(path), models.build("seed"), "seed", {"epoch": 1, "metrics": {"val_psnr": 1.0}})
    return str(path)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_run_writes_one_output_per_input_with_its_size(ray_cluster, photo_folder, tmp_path, seed_checkpoint, fmt):
    write_image(photo_folder / "rgba.png", textured(30, 26, 4))
    write_image(photo_folder / "deep.png", textured(22, 34, 3, dtype=np.uint16))
    out = tmp_path / "out"
    summary = infer.run(DeblurConfig(input=str(photo_folder), output=str(out), model=seed_checkpoint, format=fmt,
                                     workers=2, batch_size=2))
    assert (summary.done, summary.failed) == (8, 0)
    for root, _, files in os.walk(photo_folder):
        for name in files:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, photo_folder)
            dst = out / (os.path.splitext(rel)[0] + "." + fmt)
            with open(src, "rb") as f:
                a = decode(f.read())
            with open(dst, "rb") as f:
                b = decode(f.read())
            assert b.shape[:2] == a.shape[:2]
            if fmt == "png":  # webp has no grey and jpg no alpha; png keeps everything
                assert b.shape == a.shape and b.dtype == a.dtype


def test_restore_image_keeps_alpha_and_uses_the_model(seed_checkpoint):
    model, _ = checkpoint.load(seed_checkpoint)
    img = textured(20, 24, 4)
    out = infer.restore_image(model, img, 1, torch.device("cpu"))
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    assert not np.array_equal(out[..., :3], img[..., :3])


def test_colliding_output_names_are_kept_apart():
    keys = infer.output_keys("/in", ["/in/a.jpg", "/in/a.png", "/in/../../x/b.png"], "png")
    assert keys == ["a.png", "a.png.png", "x/b.png"]
