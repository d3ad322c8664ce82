"""Training data as Ray Datasets: folders/buckets of sharp images, of real pairs, and Fashion-MNIST; and how a
training worker reads its shard (:class:`ShardImages`, :func:`validation_pairs`).

Rows carry ``path`` (a URL or a synthetic id), ``name`` (its path under the dataset's root) and ``image``:
the sharp image as stored, always HWC (grey is H x W x 1; Ray Data would otherwise mix 2-D and 3-D arrays),
RGB order, uint8 or uint16. Blur is applied later, on the fly, so any folder of photos is training data.
Rows of real pairs (:mod:`deblur.core.pairs`) add ``degraded``: the partner, same shape and dtype.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
import zlib
from typing import Any, Iterator

import numpy as np
import ray.data

from deblur.core.config import TrainConfig
from deblur.core.fashion_mnist import FASHION_MNIST, is_fashion_mnist, load_fashion_mnist
from deblur.core.formats import PARQUET
from deblur.core.image import decode
from deblur.core.degrade import Degradation
from deblur.core.pairs import (Example, PairedImage, Pairing, PairingError, check_sizes, crop, find_pairs,
                                 with_channels)
from deblur.core.storage import filesystem, is_process_local, list_images, read_bytes, relative_path, to_pyarrow
from deblur.pipeline.sinks import read_manifest

log = logging.getLogger(__name__)


def validation_split(name: str, fraction: float) -> bool:
    """Deterministic split: True when the image ``name`` (its path under the dataset's root) belongs to the
    validation share; stable as files are added, and wherever the dataset lies (a copy in a bucket splits
    as the local folder did)."""
    return (zlib.crc32(name.encode()) % 10_000) < fraction * 10_000


def _read_row(row: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        data = row["bytes"] if "bytes" in row else read_bytes(row["path"])
        img = decode(data)
        return [{"path": row["path"], "name": row["name"], "image": img[..., None] if img.ndim == 2 else img}]
    except (OSError, ValueError) as e:
        log.warning("skipping unreadable training image %s: %s", row["path"], e)
        return []


def image_folder(uri: str) -> ray.data.Dataset:
    """Every image under ``uri`` (recursively), decoded per row (``path``: its URL, ``name``: its path under
    ``uri``, ``image``: HWC uint8/uint16); unreadable files are skipped with a warning."""
    urls = list_images(uri)
    if not urls:
        raise FileNotFoundError(f"no images (png, jpg, bmp, tiff, webp) under {uri}")
    if is_process_local(filesystem(uri)[0]):  # memory:// lives in this process only
        items = [{"path": u, "name": relative_path(uri, u), "bytes": read_bytes(u)} for u in urls]
    else:
        items = [{"path": u, "name": relative_path(uri, u)} for u in urls]
    return ray.data.from_items(items, override_num_blocks=min(len(items), 64)).flat_map(_read_row)


def _read_pair(row: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        sharp, degraded = (_hwc(decode(read_bytes(row[k]))) for k in ("path", "degraded_path"))
    except (OSError, ValueError) as e:
        log.warning("skipping unreadable training pair %s: %s", row["path"], e)
        return []
    if sharp.shape != degraded.shape:  # checked from headers before; a file changed since, or a channel count
        raise PairingError(f"pair {row['name']}: sharp {sharp.shape} and degraded {degraded.shape} differ")
    return [{"path": row["path"], "name": row["name"], "image": sharp, "degraded": degraded}]


def _hwc(img: np.ndarray) -> np.ndarray:
    return img[..., None] if img.ndim == 2 else img


def _read_parquet_pair(row: dict[str, Any], sharp: str, degraded: str) -> dict[str, Any]:
    a, b = _hwc(decode(row[sharp])), _hwc(decode(row[degraded]))
    name = f"{row['path']}#{zlib.crc32(row[sharp]):08x}"  # stable wherever the dataset lies
    if a.shape != b.shape:
        raise PairingError(f"pair {name}: sharp {a.shape} and degraded {b.shape} differ")
    return {"path": name, "name": name, "image": a, "degraded": b}


def paired_dataset(pairing: Pairing) -> ray.data.Dataset:
    """The pairs ``pairing`` found, decoded per row (``image``: sharp, ``degraded``: its partner)."""
    if pairing.parquet:
        sharp, degraded = pairing.columns
        fs = filesystem(pairing.parquet[0])[0]
        ds = ray.data.read_parquet([filesystem(u)[1] for u in pairing.parquet], filesystem=to_pyarrow(fs),
                                   columns=[sharp, degraded], include_paths=True)
        return ds.map(_read_parquet_pair, fn_kwargs={"sharp": sharp, "degraded": degraded})
    items = [{"path": p.sharp, "name": p.name, "degraded_path": p.degraded} for p in pairing.files]
    return ray.data.from_items(items, override_num_blocks=min(len(items), 64)).flat_map(_read_pair)


def from_arrays(images: np.ndarray, prefix: str) -> ray.data.Dataset:
    """A dataset of in-memory images (N x H x W[x C]) with synthetic paths and names ``prefix/i``."""
    images = images[..., None] if images.ndim == 3 else images
    return ray.data.from_items([{"path": f"{prefix}/{i}", "name": f"{prefix}/{i}", "image": im}
                                for i, im in enumerate(images)])


def training_datasets(data: str, val_data: str | None, val_fraction: float, pairing: Pairing | None = None,
                      val_pairing: Pairing | None = None) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """(train, validation) datasets for the URI ``data`` (its pairs: ``pairing``; ``val_data``'s: ``val_pairing``).

    Fashion-MNIST uses its own train/test split; a folder is split by :func:`validation_split` unless
    ``val_data`` names a separate folder.
    """
    if is_fashion_mnist(data):
        source = data.partition(":")[2] or None if data.startswith(FASHION_MNIST) else data
        train, test = load_fashion_mnist(source)
        return from_arrays(train, "fashion-mnist/train"), from_arrays(test, "fashion-mnist/test")
    ds = paired_dataset(pairing) if pairing else image_folder(data)
    if val_data:
        return ds, paired_dataset(val_pairing) if val_pairing else image_folder(val_data)
    with warnings.catch_warnings():  # a hash of the path is no Ray Data expression: the row function it is
        warnings.filterwarnings("ignore", message="Use 'expr' instead of 'fn'")
        return (ds.filter(lambda r: not validation_split(r["name"], val_fraction)),
                ds.filter(lambda r: validation_split(r["name"], val_fraction)))


def training_pairs(cfg: TrainConfig) -> tuple[TrainConfig, Pairing | None, Pairing | None]:
    """(``cfg`` with pairs' defaults, the pairs of ``--data``, those of ``--val-data``), found and checked
    (names, then sizes from the headers) before Ray starts. With pairs, ``--degradation`` defaults to ``none``:
    the real partner is the input, with only the corruptions a spec names added."""
    if cfg.data.startswith(FASHION_MNIST):
        return cfg, None, None
    pairing = find_pairs(cfg.data, cfg.paired, manifest_pairs(cfg.data))
    if pairing is None:
        if cfg.synthetic_share > 0:
            raise ValueError(f"--synthetic-share needs real pairs; none found under {cfg.data} (use --paired)")
        return cfg, None, None
    if cfg.degrade_on == "device":
        raise ValueError("--degrade-on device blurs sharp crops on the device; real pairs are cut on the loader: "
                         "leave --degrade-on at loader")
    val_pairing = find_pairs(cfg.val_data, None, manifest_pairs(cfg.val_data)) if cfg.val_data else None
    for found in filter(None, (pairing, val_pairing)):
        if found.files:
            check_sizes(found.files)
        print(found.note, flush=True)
    return dataclasses.replace(cfg, degradation=cfg.degradation or "none"), pairing, val_pairing


def manifest_pairs(output: str) -> dict[str, str]:
    """{output URL: input URL} of every image a ``deblur run`` wrote under ``output`` (empty for other folders)."""
    table = read_manifest(output)
    return {r["output"]: r["source"] for r in table.to_pylist()
            if r["status"] == "done" and r["output"] and r["format"] != PARQUET.name}


class ShardImages:
    """This worker's sharp training images, streamed from Ray Data each epoch or cached after the first."""

    def __init__(self, shard: ray.data.DataIterator, cache: bool, repeat: int = 1) -> None:
        self.shard, self.cache, self.repeat = shard, cache, repeat
        self.images: list[np.ndarray] | None = None

    def _stream(self) -> Iterator[Example]:
        for _, item in named_examples(self.shard):
            yield item

    def all(self) -> list[Example]:
        """Every image of this worker's shard (read once, then cached), in the order of their names: Ray Data
        delivers blocks in whatever order their tasks finish, and a batch ``k`` drawn from the list must be the
        same in a resumed run (under load the order did change, and a resumed step 4 with it)."""
        if self.images is None:
            self.images = [item for _, item in sorted(named_examples(self.shard), key=lambda pair: pair[0])]
        return self.images

    def epoch(self, rng: np.random.Generator) -> Iterator[Example]:
        """Images (or pairs) for one epoch (uint8/uint16, HWC), each ``repeat`` times; shuffled when cached."""
        if not self.cache:
            for img in self._stream():
                yield from [img] * self.repeat
            return
        images = self.all()
        for i in rng.permutation(len(images) * self.repeat):
            yield images[i % len(images)]


def validation_pairs(shard: ray.data.DataIterator, degradation: Degradation, patch: int, channels: int,
                     seed: int, crops: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed (degraded, sharp) crops of this worker's validation images, HWC float32 [0, 1]: the centre
    crop, then ``crops - 1`` more at seeded places, each with its own draw of the degradation.

    Each crop's place and degradation are seeded by its image's name (its path under the dataset's root) and
    its number, so validation is identical every time, every run and wherever the dataset lies; more crops
    make a steadier signal (a blind family's draws vary).
    """
    pairs = []
    for name, item in named_examples(shard):
        item = with_channels(item, channels)
        for k in range(crops):
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())] + ([k] if k else []))
            sharp, blurred = crop(item, degradation, min(patch, *item.shape[:2]), rng, center=k == 0)
            pairs.append((blurred, sharp))
    return pairs


def named_examples(shard: ray.data.DataIterator) -> Iterator[tuple[str, Example]]:
    """(name: the path under the dataset's root, example) of each row of ``shard``, in Ray Data's order."""
    for batch in shard.iter_batches(batch_size=256, batch_format="numpy"):
        yield from zip(map(str, batch["name"]), examples(batch))


def examples(batch: dict[str, np.ndarray]) -> list[Example]:
    """The training examples of a batch of rows: sharp images, or real pairs where rows have ``degraded``."""
    if "degraded" in batch:
        return [PairedImage(s, d) for s, d in zip(batch["image"], batch["degraded"])]
    return list(batch["image"])
