import hashlib
import os

import numpy as np
import pytest

from deblur import datasets
from deblur.io import encode


def _fake_fashion_mnist(folder, n_train=20, n_test=8) -> dict[str, str]:
    """Write small, valid Fashion-MNIST-shaped IDX files; return their MD5s."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    md5 = {}
    for name, arr in arrays.items():
        data = datasets.write_idx(arr)
        (folder / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    return md5


@pytest.mark.parametrize("shape", [(5,), (3, 28, 28), (2, 4, 6, 3)])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(shape, compress):
    arr = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
    np.testing.assert_array_equal(datasets.read_idx(datasets.write_idx(arr, compress)), arr)


def test_idx_rejects_garbage_and_truncation():
    with pytest.raises(ValueError, match="not an IDX"):
        datasets.read_idx(b"hello world")
    data = datasets.write_idx(np.zeros((4, 28, 28)), compress=False)
    with pytest.raises(ValueError, match="header says"):
        datasets.read_idx(data[:-10])


def test_fetch_downloads_once_and_verifies(tmp_path):
    md5 = _fake_fashion_mnist(tmp_path / "mirror")
    cache = tmp_path / "cache"
    datasets.fetch_fashion_mnist(str(cache), base_url=(tmp_path / "mirror").as_uri(), checksums=md5)
    assert sorted(os.listdir(cache)) == sorted(md5)
    (tmp_path / "mirror" / "t10k-images-idx3-ubyte.gz").unlink()  # cached: not fetched again
    datasets.fetch_fashion_mnist(str(cache), base_url=(tmp_path / "mirror").as_uri(), checksums=md5)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    md5 = _fake_fashion_mnist(tmp_path / "mirror")
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    with pytest.raises(ValueError, match="checksum mismatch for train-images-idx3-ubyte.gz"):
        datasets.fetch_fashion_mnist(str(tmp_path / "cache"), (tmp_path / "mirror").as_uri(), md5)
    assert not (tmp_path / "cache" / "train-images-idx3-ubyte.gz").exists()


def test_published_checksums_are_the_four_official_files():
    assert sorted(datasets.FASHION_MNIST_MD5) == sorted(
        f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def test_load_fashion_mnist_from_a_folder_and_a_bucket(tmp_path, bucket):
    _fake_fashion_mnist(tmp_path / "fm")
    train, test = datasets.load_fashion_mnist(str(tmp_path / "fm"))
    assert train.shape == (20, 28, 28) and test.shape == (8, 28, 28) and train.dtype == np.uint8
    assert datasets.is_fashion_mnist(str(tmp_path / "fm"))
    import fsspec
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "fm") + "/", bucket.removeprefix("s3://") + "/fm/", recursive=True)
    train_s3, _ = datasets.load_fashion_mnist(f"{bucket}/fm")
    np.testing.assert_array_equal(train_s3, train)


def test_sprite_tiles_are_row_major():
    sprite = np.zeros((56, 84, 4), np.uint8)
    sprite[28:56, 0:28, :3] = 200  # tile 3: second row, first column
    tiles = datasets.sprite_tiles(sprite)
    assert tiles.shape == (6, 28, 28)
    assert tiles[3].min() == 200 and tiles[[0, 1, 2, 4, 5]].max() == 0


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
