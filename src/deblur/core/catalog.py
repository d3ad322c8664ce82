"""Public models by name: entries with their sources, licences and sha256; a verified, atomic download cache.

``--model NAME`` (run, eval, ``train --init``, :func:`deblur.load`) names an entry of :func:`entries`: the built-in
ones (:data:`BUILTIN`) and an organisation's own, from the JSON file ``$DEBLUR_MODELS`` (a list of objects with
at least ``name``, ``urls``, ``sha256`` and ``licence``). The file is fetched once into the cache
(``$DEBLUR_CACHE`` or ``~/.cache/deblur``, under ``models/``), its sha256 checked before any use and on every
later use, written atomically; a file whose hash differs is deleted and nothing is cached. Offline, the cache
serves. A file fetched by hand (e.g. from Google Drive) enters the cache with :func:`add`, checked the same way.

URLs may be http(s) (torch.hub's download, with progress) or any fsspec URL (``s3://``, ``gs://``, a path): an
organisation's bucket mirror.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import tempfile
from dataclasses import dataclass

from deblur.core.storage import filesystem

ENV_MODELS = "DEBLUR_MODELS"  # a JSON file of an organisation's own entries
ENV_CACHE = "DEBLUR_CACHE"  # the cache's folder (default ~/.cache/deblur)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """A public model: its ``name`` (what ``--model`` takes), the file's ``sha256`` and download ``urls`` (the
    authors' first, then mirrors), ``licence``, and what a user weighs it by: ``architecture``, ``task``,
    ``data`` (what it was trained on), ``score`` (the authors' published figure) and ``sources`` (where the
    figure, the URLs and the hash are stated), ``size`` (bytes; 0: not stated)."""

    name: str
    sha256: str
    urls: tuple[str, ...]
    licence: str
    architecture: str = ""
    task: str = ""
    data: str = ""
    score: str = ""
    sources: tuple[str, ...] = ()
    size: int = 0
    file: str = ""  # the cached file's name (default: the first URL's, or NAME.pth)

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"model {self.name!r}: sha256 must be 64 lower-case hex digits")
        if not self.urls:
            raise ValueError(f"model {self.name!r}: no urls")

    @property
    def filename(self) -> str:
        if self.file:
            return self.file
        base = posixpath.basename(self.urls[0].split("?")[0])
        return base if base.lower().endswith((".pth", ".pt", ".ckpt", ".safetensors")) else f"{self.name}.pth"


_NAFNET = "https://github.com/megvii-research/NAFNet"
_MIRROR = "https://huggingface.co/nyanko7/nafnet-models/resolve/main"
BUILTIN = (
    Entry("nafnet-gopro-width32", "19394e6155d12ef6371d1d57496f87f0ec88f92bdffa27c0792690722d5d1a5c",
          ("https://drive.usercontent.google.com/download?id=1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj&export=download&confirm=t",
           f"{_MIRROR}/NAFNet-GoPro-width32.pth"),
          "MIT", "NAFNet (width 32; spandrel)", "motion deblurring", "GoPro (2,103 real pairs)",
          "32.87 dB PSNR / 0.9606 SSIM on GoPro test (authors)",
          (f"{_NAFNET} (readme: results and pre-trained models; docs/GoPro.md: the Google Drive file)",
           "sha256 and size as pinned by several public projects that download this file (found by code search)"),
          68_671_121, "NAFNet-GoPro-width32.pth"),
    Entry("nafnet-gopro-width64", "329d3ab4077b8d6b7ff61de376e483714667960bf85be027bf4335cda701196f",
          ("https://drive.usercontent.google.com/download?id=1S0PVRbyTakYY9a82kujgZLbMihfNBLfC&export=download&confirm=t",
           f"{_MIRROR}/NAFNet-GoPro-width64.pth"),
          "MIT", "NAFNet (width 64; spandrel)", "motion deblurring", "GoPro (2,103 real pairs)",
          "33.71 dB PSNR / 0.9668 SSIM on GoPro test (authors; MMagic measured 33.72)",
          (f"{_NAFNET} (readme: results and pre-trained models; docs/GoPro.md: the Google Drive file)",
           "sha256 as pinned by several public projects that download this file (found by code search)"),
          0, "NAFNet-GoPro-width64.pth"),
)


def _user_entries() -> list[Entry]:
    path = os.environ.get(ENV_MODELS)
    if not path:
        return []
    fields = {f.name for f in dataclasses.fields(Entry)}
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
        return [Entry(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items() if k in fields})
                for item in items]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{ENV_MODELS}={path}: not a JSON list of model entries (name, urls, sha256, licence): "
                         f"{e}") from None


def entries() -> dict[str, Entry]:
    """Every model known by name: the built-in ones, then ``$DEBLUR_MODELS``' (a name given twice is an error)."""
    out: dict[str, Entry] = {}
    for entry in (*BUILTIN, *_user_entries()):
        if entry.name in out:
            raise ValueError(f"model {entry.name!r} is named twice (built in, or in ${ENV_MODELS})")
        out[entry.name] = entry
    return out


def entry(name: str) -> Entry:
    """The entry ``name``; ValueError naming the known ones otherwise."""
    known = entries()
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(known))} (`deblur models`)")
    return known[name]


def is_name(uri: str | None) -> bool:
    """True when ``uri`` is a model's name rather than a path or URL (no ``/``, and no file of that name here)."""
    return bool(uri) and "/" not in uri and "\\" not in uri and not os.path.exists(uri) and uri in entries()


def cache_root() -> str:
    """deblur's cache folder: ``$DEBLUR_CACHE``, else ``~/.cache/deblur`` (public models, converted models)."""
    return os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "deblur")


def cache_dir() -> str:
    """Where public models' files are kept."""
    return os.path.join(cache_root(), "models")


def cached_path(e: Entry) -> str:
    """Where ``e``'s file lives in the cache (a folder per hash: two entries of one file share it)."""
    return os.path.join(cache_dir(), e.sha256[:16], e.filename)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashMismatch(ValueError):
    """A file whose sha256 is not its entry's: refused, deleted, nothing cached."""


def _verified(e: Entry, path: str, where: str) -> str:
    got = sha256_of(path)
    if got != e.sha256:
        os.unlink(path)
        raise HashMismatch(f"model {e.name}: {where} has sha256 {got}, not the entry's {e.sha256}: refused, "
                           "nothing cached")
    return path


def _copy(url: str, dst: str, show: bool) -> None:
    """``url`` to the local file ``dst``: http(s) through torch.hub (progress on a terminal), else fsspec."""
    if url.startswith(("http://", "https://")):
        from torch.hub import download_url_to_file

        download_url_to_file(url, dst, progress=show)
        return
    fs, path = filesystem(url)
    with fs.open(path, "rb") as src, open(dst, "wb") as out:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            out.write(chunk)


def _install(e: Entry, source: str, show: bool) -> str:
    """Copy ``source`` into the cache as ``e``'s file, atomically and only when its hash matches."""
    final = cached_path(e)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(final), prefix=".fetch-", suffix=".part")
    os.close(fd)
    try:
        _copy(source, tmp, show)
        _verified(e, tmp, source)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def fetch(name: str, show: bool = False) -> str:
    """The local path of model ``name``'s file: from the cache when its hash holds, else downloaded from its
    URLs in order. Raises :class:`HashMismatch` when a URL served another file, ConnectionError (one line: the
    URLs tried and why, and ``deblur models add``) when none could be reached."""
    e = entry(name)
    path = cached_path(e)
    if os.path.isfile(path):
        return _verified(e, path, "the cached file")
    tried = []
    for url in e.urls:
        try:
            return _install(e, url, show)
        except HashMismatch:
            raise
        except Exception as err:  # noqa: BLE001 - urllib, fsspec and botocore each raise their own; all mean "not here"
            tried.append(f"{url.split('?')[0]} ({type(err).__name__})")
    raise ConnectionError(f"cannot fetch model {name} (fetch the file by hand, then `deblur models add {name} FILE`); "
                          f"tried {', '.join(tried)}")


def add(name: str, source: str) -> str:
    """Put a file fetched by hand (a path or any URL) into the cache as model ``name``'s, checked against its
    sha256; returns its cached path."""
    return _install(entry(name), source, show=False)


def describe() -> list[dict]:
    """Every entry as a dict, with ``cached``: whether its file is in the cache."""
    return [{**dataclasses.asdict(e), "cached": os.path.isfile(cached_path(e))} for e in entries().values()]
