"""Real pairs: each layout recognised from a small tree, bad pairs refused naming them, crops cut at one place."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deblur.core import pairs
from deblur.core.degrade import parse_degradation
from deblur.core.image import encode
from deblur.core.pairs import LAYOUTS, PairedImage, PairingError, check_sizes, crop, find_pairs
from deblur.core.training import degrade_batch
from tests.conftest import textured, write_image

TREES = {  # layout -> (degraded file, sharp file) of two pairs, as each dataset unpacks
    "gopro": [("train/GOPR0372_07_00/blur/000047.png", "train/GOPR0372_07_00/sharp/000047.png"),
              ("train/GOPR0372_07_01/blur/000100.png", "train/GOPR0372_07_01/sharp/000100.png")],
    "realblur": [("RealBlur-J/scene230/blur/blur_1.png", "RealBlur-J/scene230/gt/gt_1.png"),
                 ("RealBlur-J/scene230/blur/blur_2.png", "RealBlur-J/scene230/gt/gt_2.png")],
    "basicsr": [("GoPro/train/input/a.png", "GoPro/train/target/a.png"),
                ("GoPro/train/input/b.png", "GoPro/train/target/b.png")],
}


def _tree(root, files, size=(24, 32)) -> None:
    for i, name in enumerate(files):
        write_image(root / name, textured(*size, seed=i))


@pytest.mark.parametrize("layout", LAYOUTS.names())
def test_every_layout_is_recognised_from_a_small_tree(tmp_path, layout):
    _tree(tmp_path, [f for pair in TREES[layout] for f in pair])
    found = find_pairs(str(tmp_path))
    assert found.layout == layout
    got = sorted((p.degraded.split(str(tmp_path) + "/")[1], p.sharp.split(str(tmp_path) + "/")[1]) for p in found.files)
    assert got == sorted(TREES[layout])
    check_sizes(found.files)


def test_gopro_prefers_blur_to_blur_gamma_and_says_what_it_left(tmp_path):
    _tree(tmp_path, ["s/blur/1.png", "s/blur_gamma/1.png", "s/sharp/1.png"])
    found = find_pairs(str(tmp_path))
    assert [p.degraded.endswith("s/blur/1.png") for p in found.files] == [True]
    assert "1 images of the other degraded folders not used" in found.note
    _tree(tmp_path / "g", ["s/blur_gamma/1.png", "s/sharp/1.png"])
    assert find_pairs(str(tmp_path / "g")).files[0].degraded.endswith("blur_gamma/1.png")


def test_a_plain_folder_has_no_pairs_and_paired_folders_match_by_name_across_extensions(tmp_path):
    _tree(tmp_path / "sharp", ["a.png", "sub/b.png"])
    _tree(tmp_path / "blurry", ["a.jpg", "sub/b.png"])
    assert find_pairs(str(tmp_path / "sharp")) is None
    found = find_pairs(str(tmp_path / "sharp"), str(tmp_path / "blurry"))
    assert [(p.name, p.degraded.rsplit("/", 1)[1]) for p in found.files] == [("a.png", "a.jpg"), ("sub/b.png", "b.png")]


@pytest.mark.parametrize("degraded, message", [
    (["a.png"], "1 images have no degraded partner .*: b.png"),
    (["a.png", "b.png", "c.png"], "1 images have no sharp partner .*: c.png"),
    (["a.png", "b.png", "b.jpg"], "2 images have more than one degraded partner .*: b.jpg, b.png"),
])
def test_missing_orphaned_and_ambiguous_partners_are_refused_naming_them(tmp_path, degraded, message):
    _tree(tmp_path / "sharp", ["a.png", "b.png"])
    _tree(tmp_path / "blurry", degraded)
    with pytest.raises(PairingError, match=message):
        find_pairs(str(tmp_path / "sharp"), str(tmp_path / "blurry"))


def test_more_than_five_problems_are_counted_not_listed(tmp_path):
    _tree(tmp_path / "sharp", [f"{i}.png" for i in range(8)])
    _tree(tmp_path / "blurry", ["0.png"])
    with pytest.raises(PairingError, match=r"7 images have no degraded partner .*: 1.png, 2.png, 3.png, 4.png, "
                                           r"5.png \(and 2 more\)"):
        find_pairs(str(tmp_path / "sharp"), str(tmp_path / "blurry"))


def test_pairs_of_different_sizes_and_strays_in_a_layout_are_refused(tmp_path):
    write_image(tmp_path / "s/blur/1.png", textured(24, 32))
    write_image(tmp_path / "s/sharp/1.png", textured(24, 30))
    with pytest.raises(PairingError, match=r"1 pairs differ in size: s/sharp/1.png \(30x24 vs 32x24\)"):
        check_sizes(find_pairs(str(tmp_path)).files)
    write_image(tmp_path / "s/readme.png", textured(8, 8))
    with pytest.raises(PairingError, match="1 images .* are in no pair of its gopro layout: s/readme.png"):
        find_pairs(str(tmp_path))


def test_two_layouts_in_one_tree_are_refused(tmp_path):
    _tree(tmp_path, [f for layout in ("gopro", "basicsr") for pair in TREES[layout] for f in pair])
    with pytest.raises(PairingError, match="more than one layout"):
        find_pairs(str(tmp_path))


def test_a_parquet_dataset_with_two_image_columns(tmp_path):
    png = encode(textured(16, 16), "png")
    pq.write_table(pa.table({"target": [png], "blurred": [png], "id": [1]}), tmp_path / "pairs.parquet")
    found = find_pairs(str(tmp_path))
    assert (found.layout, found.columns, len(found.parquet)) == ("parquet", ("target", "blurred"), 1)
    pq.write_table(pa.table({"image": [png]}), tmp_path / "pairs.parquet")
    with pytest.raises(PairingError, match="has: image"):
        find_pairs(str(tmp_path))


def test_a_pairs_crops_are_cut_at_one_place_with_one_flip():
    """The partner is the sharp image itself: any crop cut elsewhere, or flipped otherwise, differs."""
    img = textured(40, 52)
    pair = PairedImage(img, img.copy())
    none = parse_degradation("none")
    for seed in range(20):
        degraded, sharp = degrade_batch([pair, pair], none, 16, np.random.default_rng(seed), flips=True)
        assert degraded.shape == (2, 16, 16, 3) and np.array_equal(degraded, sharp)
    a, b = crop(pair, none, 16, np.random.default_rng(0)), crop(pair, none, 16, np.random.default_rng(1))
    assert not np.array_equal(a[0], b[0])  # the places are random


def test_the_synthetic_share_degrades_the_sharp_side_and_corruptions_apply_to_the_partner():
    img, flat = textured(32, 32), np.full((32, 32, 3), 128, np.uint8)
    pair = PairedImage(img, flat)
    noisy = parse_degradation("gaussian:sigma=2+noise:sigma=0.05")
    sharp, degraded = crop(pair, noisy, 16, np.random.default_rng(0), synthetic=0.0)
    assert abs(degraded.mean() - 128 / 255) < 0.02 and degraded.std() > 0.03  # the partner, with noise
    sharp, degraded = crop(pair, noisy, 16, np.random.default_rng(0), synthetic=1.0)
    assert degraded.std() > 0.1  # the sharp side blurred (textured), not the flat partner
    share = np.mean([crop(pair, noisy, 8, np.random.default_rng(s), synthetic=0.3)[1].std() > 0.1 for s in range(200)])
    assert 0.2 < share < 0.4


def test_mixup_blends_both_sides_of_pairs():
    a, b = PairedImage(textured(8, 8, seed=1), textured(8, 8, seed=2)), PairedImage(textured(8, 8, seed=3),
                                                                                    textured(8, 8, seed=4))
    mixed = pairs.blend(a, b, 0.25)
    assert np.allclose(mixed.sharp, 0.25 * a.sharp / 255 + 0.75 * b.sharp / 255, atol=1e-6)
    assert np.allclose(mixed.degraded, 0.25 * a.degraded / 255 + 0.75 * b.degraded / 255, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS.names())
def test_eval_scores_the_pairs_of_every_layout(tmp_path, seed_checkpoint, layout):
    import json

    from deblur.core.config import EvalConfig
    from deblur.core.evaluate import evaluate

    _tree(tmp_path / "data", [f for pair in TREES[layout] for f in pair])
    line = evaluate(EvalConfig(data=str(tmp_path / "data"), model=seed_checkpoint, output=str(tmp_path / "eval")))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["degradation"] == "paired" and summary["images"] == 2 and "0 failed" in line
