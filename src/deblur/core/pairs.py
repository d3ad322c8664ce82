"""Real pairs: which degraded file belongs to which sharp one, and crops cut at one place in both.

A *pair* is a sharp image and its degraded partner of the same size (a real blurry photo and its ground truth,
or a blurry input and a teacher's output). Pairs are found in one of these ways (:func:`find_pairs`):

- ``--paired DEGRADED``: the file under DEGRADED with the relative path of each sharp file under ``--data``
  (the extension may differ: ``a.jpg`` pairs with ``a.png``);
- an output of ``deblur run`` (it has ``_manifest/``): each output it wrote pairs with the input it came from;
- a public layout, recognised as it unpacks (:data:`LAYOUTS`): GoPro ``SEQ/blur/N.png`` (or ``blur_gamma``)
  with ``SEQ/sharp/N.png``; RealBlur ``blur/blur_K.png`` with ``gt/gt_K.png``; BasicSR/NAFNet ``input/`` with
  ``target/``;
- a Parquet dataset with two image columns (:data:`SHARP_COLUMNS`, :data:`DEGRADED_COLUMNS`).

A missing or ambiguous partner, or a pair of different sizes, is a :class:`PairingError` naming the first
few: nothing is silently dropped. Images are HWC as stored (uint8/uint16) or float32 [0, 1].
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

from deblur.core.degrade import Degradation, blur_window, degrade_crop, window
from deblur.core.image import probe, to_channels, to_float
from deblur.core.registry import Registry
from deblur.core.choices import PAIR_LAYOUTS
from deblur.core.storage import IMAGE_EXTENSIONS, check_input, filesystem, list_images, relative_path, unstrip

SHARP_COLUMNS = ("sharp", "target", "gt")  # a Parquet pair's sharp image column: the first of these it has
DEGRADED_COLUMNS = ("degraded", "blurred", "blur", "input")  # ... and its degraded one
SHOWN = 5  # names an error lists
HEADER_BLOCK = 1 << 16  # what is read of a file to learn its size


class PairingError(ValueError):
    """Pairs that cannot be made: missing or ambiguous partners, sizes that differ."""


def _few(names: list[str]) -> str:
    more = f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


class PairFiles(NamedTuple):
    """One pair on storage: ``name`` (the sharp file's path under its root: what validation splits and seeds
    by), the sharp file's URL and the degraded file's URL."""

    name: str
    sharp: str
    degraded: str


@dataclass(frozen=True)
class Pairing:
    """The pairs of a dataset: how they were found (``layout``: a :data:`LAYOUTS` name, ``paired``,
    ``manifest`` or ``parquet``), the pairs (file layouts) or Parquet files and columns, and a line for the user."""

    layout: str
    files: tuple[PairFiles, ...] = ()
    parquet: tuple[str, ...] = ()
    columns: tuple[str, str] = ("", "")  # (sharp, degraded) for Parquet
    note: str = ""


@dataclass(frozen=True)
class Layout:
    """A public dataset's layout: degraded files live in a folder named one of ``degraded`` (the first present
    is used) beside a folder ``sharp``; file names differ by a prefix (RealBlur: ``blur_3.png``, ``gt_3.png``)."""

    degraded: tuple[str, ...]
    sharp: str
    degraded_prefix: str = ""
    sharp_prefix: str = ""


LAYOUTS: Registry[Layout] = Registry("pair layout", {
    "gopro": Layout(("blur", "blur_gamma"), "sharp"),
    "realblur": Layout(("blur",), "gt", "blur_", "gt_"),
    "basicsr": Layout(("input",), "target"),
}, PAIR_LAYOUTS)


def _stem(key: str) -> str:
    return posixpath.splitext(key)[0]


def match_by_name(sharp: dict[str, str], degraded: dict[str, str], where: str) -> list[PairFiles]:
    """Pairs of ``sharp`` and ``degraded`` ({relative path: URL}) with the same relative path up to the
    extension; raises :class:`PairingError` for a sharp file without a partner, one with two (``a.jpg`` and
    ``a.png``), or a degraded file without a sharp one."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for key in degraded:
        by_stem[_stem(key)].append(key)
    ambiguous = sorted(k for ks in by_stem.values() if len(ks) > 1 for k in ks)
    missing = sorted(k for k in sharp if _stem(k) not in by_stem)
    sharp_stems = {_stem(k) for k in sharp}
    orphans = sorted(k for k in degraded if _stem(k) not in sharp_stems)
    for problem, names in (("have more than one degraded partner", ambiguous),
                           ("have no degraded partner", missing), ("have no sharp partner", orphans)):
        if names:
            raise PairingError(f"{len(names)} images {problem} ({where}): {_few(names)}")
    return [PairFiles(k, url, degraded[by_stem[_stem(k)][0]]) for k, url in sorted(sharp.items())]


def _unprefixed(files: dict[str, str], prefix: str) -> dict[str, str]:
    """{file name without ``prefix``: key} (RealBlur's ``gt_3.png`` -> ``3.png``)."""
    return {f[len(prefix):] if f.startswith(prefix) else f: k for f, k in files.items()}


def _layout_pairs(name: str, layout: Layout, keys: dict[str, str]) -> tuple[list[PairFiles], list[str]]:
    """(pairs, keys left unused) of ``layout`` among ``keys`` ({relative path: URL})."""
    folders = defaultdict(lambda: defaultdict(dict))  # parent -> folder name -> {stem without prefix: key}
    for key in keys:
        parent, folder, file = *posixpath.split(posixpath.dirname(key)), posixpath.basename(key)
        folders[parent][folder][file] = key
    pairs, unused = [], []
    for parent, by_folder in sorted(folders.items()):
        deg_folder = next((d for d in layout.degraded if d in by_folder), None)
        if layout.sharp not in by_folder or deg_folder is None:
            continue
        sharp = {k: keys[v] for k, v in _unprefixed(by_folder[layout.sharp], layout.sharp_prefix).items()}
        degraded = {k: keys[v] for k, v in _unprefixed(by_folder[deg_folder], layout.degraded_prefix).items()}
        where = f"{name} layout: {posixpath.join(parent, deg_folder)} and {posixpath.join(parent, layout.sharp)}"
        for p in match_by_name(sharp, degraded, where):
            pairs.append(p._replace(name=posixpath.join(parent, layout.sharp, posixpath.basename(p.sharp))))
        unused += [k for d in layout.degraded if d != deg_folder for k in by_folder.get(d, {}).values()]
    return pairs, unused


def recognise(keys: dict[str, str]) -> tuple[str, list[PairFiles], list[str]] | None:
    """(layout name, pairs, keys not used) of the one public layout ``keys`` ({relative path: URL}) hold, or
    None when they hold none; two layouts at once is a :class:`PairingError`."""
    found = {}
    for name, layout in LAYOUTS.items():
        pairs, unused = _layout_pairs(name, layout, keys)
        if pairs:
            found[name] = (pairs, unused)
    if len(found) > 1:
        raise PairingError(f"pairs in more than one layout ({', '.join(found)}): give each its own --data, or "
                           "name the degraded folder with --paired")
    if not found:
        return None
    (name, (pairs, unused)), = found.items()
    return name, pairs, unused


def find_pairs(data: str, paired: str | None = None, manifest: dict[str, str] | None = None) -> Pairing | None:
    """How the images under ``data`` pair (see the module docstring), or None for a folder of sharp images
    alone (training degrades them synthetically). ``manifest``: {output URL: input URL} of a ``deblur run``
    output at ``data`` (read by the caller, which knows the manifest)."""
    check_input(data)
    fs, root = filesystem(data)
    paths = [p for p in ([root] if fs.isfile(root) else fs.find(root)) if "/_manifest/" not in p]  # one listing
    parquet = sorted(p for p in paths if p.endswith(".parquet"))
    urls = sorted(unstrip(fs, p) for p in paths if p.lower().endswith(IMAGE_EXTENSIONS))
    keys = {relative_path(data, u): u for u in urls}
    if manifest:
        return _from_manifest(data, paired, keys, manifest)
    if paired:
        degraded = {relative_path(paired, u): u for u in list_images(paired)}
        pairs = match_by_name(keys, degraded, f"{data} and {paired}")
        return Pairing("paired", tuple(pairs), note=f"{len(pairs)} pairs: {paired} -> {data}")
    if not urls and parquet:
        return _parquet_pairing(fs, parquet)
    found = recognise(keys)
    if found is None:
        return None
    name, pairs, unused = found
    extra = sorted(set(keys) - {relative_path(data, u) for p in pairs for u in (p.sharp, p.degraded)} - set(unused))
    if extra:
        raise PairingError(f"{len(extra)} images under {data} are in no pair of its {name} layout: {_few(extra)}")
    skipped = f"; {len(unused)} images of the other degraded folders not used" if unused else ""
    return Pairing(name, tuple(pairs), note=f"{name} layout: {len(pairs)} pairs under {data}{skipped}")


def _from_manifest(data: str, paired: str | None, keys: dict[str, str], manifest: dict[str, str]) -> Pairing:
    """Pairs of a ``deblur run`` output: each output it wrote with its input (under ``paired`` when given)."""
    by_url = {url: key for key, url in keys.items()}
    pairs = [PairFiles(by_url[out], out, src) for out, src in sorted(manifest.items()) if out in by_url]
    outside = [p.degraded for p in pairs if paired and not _under(paired, p.degraded)]
    if outside:
        raise PairingError(f"{len(outside)} inputs of the run that wrote {data} are not under {paired}: {_few(outside)}")
    strays = sorted(set(keys) - {p.name for p in pairs})
    if strays:
        raise PairingError(f"{len(strays)} images under {data} are not in its run's manifest: {_few(strays)}")
    return Pairing("manifest", tuple(pairs), note=f"{len(pairs)} pairs from the manifest of {data}")


def _under(root: str, url: str) -> bool:
    (_, base), (_, path) = filesystem(root), filesystem(url)
    return path.startswith(base.rstrip("/") + "/")


def _parquet_pairing(fs, files: list[str]) -> Pairing:
    import pyarrow.parquet as pq

    with fs.open(files[0], "rb") as f:
        names = pq.read_schema(f).names
    sharp = next((c for c in SHARP_COLUMNS if c in names), None)
    degraded = next((c for c in DEGRADED_COLUMNS if c in names), None)
    if not (sharp and degraded):
        raise PairingError(f"a Parquet pair dataset needs a sharp image column ({', '.join(SHARP_COLUMNS)}) and a "
                           f"degraded one ({', '.join(DEGRADED_COLUMNS)}); {files[0]} has: {', '.join(names)}")
    urls = tuple(fs.unstrip_protocol(p) for p in files)
    return Pairing("parquet", parquet=urls, columns=(sharp, degraded),
                   note=f"parquet pairs: {len(urls)} files, columns {degraded} -> {sharp}")


def _size(url: str) -> tuple[int, int] | None:
    fs, path = filesystem(url)
    with fs.open(path, "rb", block_size=HEADER_BLOCK) as f:  # an object store reads this much, not megabytes
        header = probe(f)
    return None if header is None else (header.width, header.height)


def check_sizes(pairs: tuple[PairFiles, ...], threads: int = 16) -> None:
    """Raise :class:`PairingError` naming the pairs whose images differ in size (read from their headers)."""
    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(lambda p: (_size(p.sharp), _size(p.degraded)), pairs))
    bad = [f"{p.name} ({a[0]}x{a[1]} vs {b[0]}x{b[1]})" for p, (a, b) in zip(pairs, sizes) if a and b and a != b]
    if bad:
        raise PairingError(f"{len(bad)} pairs differ in size: {_few(bad)}")


@dataclass(frozen=True)
class PairedImage:
    """A sharp image and its real degraded partner: HWC, the same shape, uint8/uint16 or float32 [0, 1]."""

    sharp: np.ndarray
    degraded: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.sharp.shape


Example = Union[np.ndarray, PairedImage]  # a training image: sharp alone (degraded synthetically), or a pair


def with_channels(item: Example, channels: int) -> Example:
    """``item`` with ``channels`` channels (both images of a pair)."""
    if isinstance(item, PairedImage):
        return PairedImage(to_channels(item.sharp, channels), to_channels(item.degraded, channels))
    return to_channels(item, channels)


def blend(a: Example, b: Example, t: float) -> Example:
    """``t a + (1 - t) b`` (float32 [0, 1]) of two examples of one shape and kind: both sides of pairs."""
    mix = lambda x, y: (t * to_float(x) + (1 - t) * to_float(y)).astype(np.float32)
    if isinstance(a, PairedImage) and isinstance(b, PairedImage):
        return PairedImage(mix(a.sharp, b.sharp), mix(a.degraded, b.degraded))
    return a if isinstance(a, PairedImage) or isinstance(b, PairedImage) else mix(a, b)


def crop(item: Example, deg: Degradation, size: int, rng: np.random.Generator, synthetic: float = 0.0,
         center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, degraded) float32 [0, 1] ``size`` x ``size`` windows of ``item``.

    A sharp image is blurred and corrupted by ``deg``. A pair is cut at one place in both images; its degraded
    side gets ``deg``'s corruptions (noise, JPEG) only, or, with probability ``synthetic``, the sharp side is
    degraded by all of ``deg`` instead (a share of synthetic blur mixed into real pairs)."""
    if not isinstance(item, PairedImage):
        return degrade_crop(item, deg, size, rng, center)
    use_synthetic = rng.random() < synthetic
    y, x = window(item.shape, size, rng, center)
    if use_synthetic:
        sharp, blurred = blur_window(item.sharp, deg.draw_blur(rng), y, x, size)
        return sharp, deg.finish(blurred, rng)
    sharp = to_float(item.sharp[y : y + size, x : x + size])
    return np.ascontiguousarray(sharp), deg.finish(to_float(item.degraded[y : y + size, x : x + size]), rng)
