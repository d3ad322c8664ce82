import numpy as np

from deblur.core.image import encode
from deblur.train import datasets
from tests.core.test_fashion_mnist import _fake_fashion_mnist


def test_validation_split_is_deterministic_and_about_the_fraction():
    paths = [f"s3://b/img{i}.png" for i in range(2000)]
    val = [p for p in paths if datasets.validation_split(p, 0.1)]
    assert val == [p for p in paths if datasets.validation_split(p, 0.1)]
    assert 150 < len(val) < 250


def test_image_folder_reads_local_memory_and_s3(ray_cluster, photo_folder, bucket):
    import fsspec

    local = datasets.image_folder(str(photo_folder)).take_all()
    assert len(local) == 6
    assert sorted(r["image"].shape[2] for r in local) == [1, 1, 3, 3, 3, 3]  # always HWC
    mem = fsspec.filesystem("memory")
    s3 = fsspec.filesystem("s3")
    for i, row in enumerate(local):
        data = encode(row["image"], "png")
        mem.pipe(f"/photos-test/{i}.png", data)
        s3.pipe(f"{bucket.removeprefix('s3://')}/p/{i}.png", data)
    mem.pipe("/photos-test/broken.png", b"\x89PNG broken")  # skipped with a warning, not fatal
    for uri in ("memory://photos-test", f"{bucket}/p"):
        rows = datasets.image_folder(uri).take_all()
        assert sorted(r["image"].shape for r in rows) == sorted(r["image"].shape for r in local)


def test_fashion_mnist_training_datasets(ray_cluster, tmp_path):
    _fake_fashion_mnist(tmp_path / "fm")
    train, val = datasets.training_datasets(f"fashion-mnist:{tmp_path / 'fm'}", None, 0.1)
    assert train.count() == 20 and val.count() == 8


def test_the_split_and_validation_draws_are_the_same_wherever_the_dataset_lies(ray_cluster, tmp_path, bucket):
    """A folder and its copy in a bucket split alike and give identical
    validation crops: they were seeded by the full path, so the validation set of one dataset changed with
    its location (and with pytest's temporary folder, which made a training test flaky)."""
    import fsspec

    from deblur.core.degrade import parse_degradation
    from deblur.train.datasets import validation_pairs
    from tests.conftest import textured, write_image

    s3 = fsspec.filesystem("s3")
    for i in range(24):
        img = textured(24, 28, 3, seed=i)
        write_image(tmp_path / "a" / f"d{i % 3}" / f"p{i}.png", img)
        s3.pipe(f"{bucket.removeprefix('s3://')}/copy/d{i % 3}/p{i}.png", encode(img, "png"))
    splits, draws = [], []
    for uri in (str(tmp_path / "a"), f"{bucket}/copy"):
        rows = sorted(datasets.training_datasets(uri, None, 0.3)[1].take_all(), key=lambda r: r["name"])
        splits.append([r["name"] for r in rows])
        pairs = validation_pairs(ray_cluster.data.from_items(rows).iterator(), parse_degradation("blind"), 16, 3, seed=0)
        draws.append(np.stack([blurred for blurred, _ in pairs]))
    assert 3 <= len(draws[0]) <= 15 and splits[0] == splits[1]
    np.testing.assert_array_equal(draws[0], draws[1])
