import os

import fsspec
import numpy as np
import pytest

from deblur import cli
from deblur.core.config import DegradeConfig
from deblur.core.degrade import parse_degradation
from deblur.core.image import decode
from deblur.core.synth import downscale, make_pair, write_degraded
from tests.conftest import textured
from tests.core.test_degrade import SPECS


@pytest.mark.parametrize("name", sorted(SPECS))
def test_pairs_are_reproducible_per_image_and_keep_size(name):
    img = textured(40, 50, 3, seed=1)
    deg = parse_degradation(SPECS[name] + "+noise:sigma=0.01")
    a, b = make_pair(img, deg, "x/a.png", seed=3), make_pair(img, deg, "x/a.png", seed=3)
    other = make_pair(img, deg, "x/b.png", seed=3)
    np.testing.assert_array_equal(a.degraded, b.degraded)
    assert not np.array_equal(a.degraded, other.degraded)  # each image draws its own noise (and kernel)
    assert a.sharp.shape == a.degraded.shape == (40, 50, 3)
    np.testing.assert_array_equal(np.round(a.degraded * 255) / 255, a.degraded)  # 8-bit, as stored


def test_downscale_averages_areas():
    img = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((3, 3), np.uint8))
    small = downscale(img, 3)
    np.testing.assert_array_equal(small, [[0, 255], [255, 0]])
    assert downscale(img, 1) is img


def test_degrade_command_writes_degraded_copies_under_the_same_names(tmp_path, photo_folder):
    (photo_folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "blurred"
    assert cli.main(["degrade", "--input", str(photo_folder), "--output", str(out), "--degradation",
                     "motion:length=7+noise:sigma=0.005", "--downscale", "2"]) == 0
    assert not (out / "broken.png").exists()
    sharp = sorted(p.relative_to(photo_folder) for p in photo_folder.rglob("img*.png"))
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == sharp
    for rel in sharp:
        src = decode((photo_folder / rel).read_bytes())
        dst = decode((out / rel).read_bytes())
        assert dst.shape[:2] == (round(src.shape[0] / 2), round(src.shape[1] / 2))
    again = tmp_path / "again"
    line = write_degraded(DegradeConfig(str(photo_folder), str(again), "motion:length=7+noise:sigma=0.005", downscale=2))
    assert "6 degraded" in line and "1 failed" in line
    for rel in sharp:
        assert (out / rel).read_bytes() == (again / rel).read_bytes()


def test_degrade_command_to_s3(bucket, photo_folder):
    line = write_degraded(DegradeConfig(str(photo_folder), f"{bucket}/blurred", "defocus:radius=2", format="jpg"))
    assert "6 degraded" in line
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    names = sorted(os.path.basename(p) for p in fs.find(bucket.removeprefix("s3://") + "/blurred"))
    assert names == [f"img{i}.jpg" for i in range(6)]
