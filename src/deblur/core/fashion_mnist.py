"""Fashion-MNIST: the IDX file format, the verified one-time download, and the sprite shipped in shared/.

Arrays are uint8, N x 28 x 28 (grey).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import posixpath
import struct

import numpy as np

from deblur.core.catalog import cache_root
from deblur.core.storage import filesystem, read_bytes

log = logging.getLogger(__name__)

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST = "fashion-mnist"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- IDX (the MNIST file format) ---------------------------------------------------------------

def read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into an array of its shape and dtype."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError("not an IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"IDX body has {len(body)} bytes, header says shape {shape}")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(array: np.ndarray, compress: bool = True) -> bytes:
    """Serialise a uint8 array as an IDX file (gzipped by default)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    return gzip.compress(data, mtime=0) if compress else data


def fetch_fashion_mnist(cache_dir: str, base_url: str | None = None,
                        checksums: dict[str, str] = FASHION_MNIST_MD5) -> str:
    """Download the Fashion-MNIST IDX files from ``base_url`` (default: ``$DEBLUR_FASHION_MNIST_URL``, a
    mirror, else :data:`FASHION_MNIST_URL`) once into ``cache_dir``; verify MD5s.

    Files already in the cache are verified, not fetched again. Raises ValueError on a mismatch.
    """
    base_url = base_url or os.environ.get("DEBLUR_FASHION_MNIST_URL", FASHION_MNIST_URL)
    os.makedirs(cache_dir, exist_ok=True)
    for name, md5 in checksums.items():
        target = os.path.join(cache_dir, name)
        if not os.path.exists(target):
            log.info("downloading %s/%s", base_url, name)
            data = read_bytes(f"{base_url}/{name}")
            _verify(name, data, md5)
            with open(target + ".part", "wb") as f:
                f.write(data)
            os.replace(target + ".part", target)
        else:
            with open(target, "rb") as f:
                _verify(name, f.read(), md5)
    return cache_dir


def _verify(name: str, data: bytes, md5: str) -> None:
    got = hashlib.md5(data).hexdigest()
    if got != md5:
        raise ValueError(f"checksum mismatch for {name}: expected md5 {md5}, got {got}")


def default_cache() -> str:
    """Where the download is kept: ``fashion-mnist`` in deblur's cache (``$DEBLUR_CACHE``, else ``~/.cache/deblur``)."""
    return os.path.join(cache_root(), "fashion-mnist")


def load_fashion_mnist(source: str | None, cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) uint8 image arrays, N x 28 x 28, from a folder/bucket of the four IDX files, or
    downloaded into ``cache_dir`` (default :func:`default_cache`) when ``source`` is None."""
    if source is None:
        source = fetch_fashion_mnist(cache_dir or default_cache())
    fs, root = filesystem(source)
    out = []
    for split in ("train", "t10k"):
        name = f"{split}-images-idx3-ubyte.gz"
        path = posixpath.join(root, name)
        if not fs.exists(path):
            path = path[: -len(".gz")]
        out.append(read_idx(fs.cat_file(path)))
    return out[0], out[1]


def is_fashion_mnist(uri: str) -> bool:
    """True for ``fashion-mnist[:URI]`` or a folder holding the Fashion-MNIST IDX files."""
    if uri == FASHION_MNIST or uri.startswith(FASHION_MNIST + ":"):
        return True
    fs, root = filesystem(uri)
    return any(fs.exists(posixpath.join(root, n)) for n in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"))


# --- The Fashion-MNIST sprite shipped in shared/ -------------------------------------------------

def sprite_tiles(sprite: np.ndarray, tile: int = 28) -> np.ndarray:
    """Cut a grid sprite (H x W [x C]) into row-major tiles, N x tile x tile (grey: mean of RGB)."""
    if sprite.ndim == 3:
        sprite = sprite[..., :3].mean(axis=2).round().astype(sprite.dtype)
    rows, cols = sprite.shape[0] // tile, sprite.shape[1] // tile
    t = sprite[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile).swapaxes(1, 2)
    return t.reshape(rows * cols, tile, tile)
