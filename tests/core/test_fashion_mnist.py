import hashlib
import os

import numpy as np
import pytest

from deblur.core import fashion_mnist


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
        data = fashion_mnist.write_idx(arr)
        (folder / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    return md5


@pytest.mark.parametrize("shape", [(5,), (3, 28, 28), (2, 4, 6, 3)])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(shape, compress):
    arr = np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8)
    np.testing.assert_array_equal(fashion_mnist.read_idx(fashion_mnist.write_idx(arr, compress)), arr)


def test_idx_rejects_garbage_and_truncation():
    with pytest.raises(ValueError, match="not an IDX"):
        fashion_mnist.read_idx(b"hello world")
    data = fashion_mnist.write_idx(np.zeros((4, 28, 28)), compress=False)
    with pytest.raises(ValueError, match="header says"):
        fashion_mnist.read_idx(data[:-10])


def test_fetch_downloads_once_and_verifies(tmp_path):
    md5 = _fake_fashion_mnist(tmp_path / "mirror")
    cache = tmp_path / "cache"
    fashion_mnist.fetch_fashion_mnist(str(cache), base_url=(tmp_path / "mirror").as_uri(), checksums=md5)
    assert sorted(os.listdir(cache)) == sorted(md5)
    (tmp_path / "mirror" / "t10k-images-idx3-ubyte.gz").unlink()  # cached: not fetched again
    fashion_mnist.fetch_fashion_mnist(str(cache), base_url=(tmp_path / "mirror").as_uri(), checksums=md5)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    md5 = _fake_fashion_mnist(tmp_path / "mirror")
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    with pytest.raises(ValueError, match="checksum mismatch for train-images-idx3-ubyte.gz"):
        fashion_mnist.fetch_fashion_mnist(str(tmp_path / "cache"), (tmp_path / "mirror").as_uri(), md5)
    assert not (tmp_path / "cache" / "train-images-idx3-ubyte.gz").exists()


def test_published_checksums_are_the_four_official_files():
    assert sorted(fashion_mnist.FASHION_MNIST_MD5) == sorted(
        f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def test_load_fashion_mnist_from_a_folder_and_a_bucket(tmp_path, bucket):
    _fake_fashion_mnist(tmp_path / "fm")
    train, test = fashion_mnist.load_fashion_mnist(str(tmp_path / "fm"))
    assert train.shape == (20, 28, 28) and test.shape == (8, 28, 28) and train.dtype == np.uint8
    assert fashion_mnist.is_fashion_mnist(str(tmp_path / "fm"))
    import fsspec
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "fm") + "/", bucket.removeprefix("s3://") + "/fm/", recursive=True)
    train_s3, _ = fashion_mnist.load_fashion_mnist(f"{bucket}/fm")
    np.testing.assert_array_equal(train_s3, train)


def test_sprite_tiles_are_row_major():
    sprite = np.zeros((56, 84, 4), np.uint8)
    sprite[28:56, 0:28, :3] = 200  # tile 3: second row, first column
    tiles = fashion_mnist.sprite_tiles(sprite)
    assert tiles.shape == (6, 28, 28)
    assert tiles[3].min() == 200 and tiles[[0, 1, 2, 4, 5]].max() == 0
