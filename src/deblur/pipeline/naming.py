"""Output names: one function (:func:`output_keys`) gives every listed input its output key, never the same
key twice, whatever the inputs are called. Free of Ray.

The rules, in order (every comparison folds case and Unicode forms as case-insensitive stores do:
:func:`fold`, ``casefold()`` of the NFC form, so ``straße``/``STRASSE`` and ``σ``/``ς`` meet):

1. A *clean* input path (each folder and file name already safe, :func:`deblur.core.storage.safe_key`;
   short enough; its stem not ending like a tag ``-<10 hex>``) keeps its path, with the output format's
   extension: ``a/photo.jpg`` -> ``a/photo.png``.
2. Any other path gets its safe form plus a tag, a hash of the whole original path:
   ``photo#1.png`` -> ``photo_1-3f9c0b12aa.png``; ``../x.png`` -> ``x-<tag>.png``. A clean name can never
   end in a tag, so a tagged name cannot meet a clean one.
3. A key wanted by two inputs (``a.jpg`` and ``a.png``), a key that is a folder of other outputs (an input
   folder ``x.png/`` beside ``x.jpg``), or a key the manifest records for another source: the input keeps its
   extension (``a.jpg.png``) if that is free, else it is tagged.
4. Whatever is still not unique (only a hash collision could do it) gets no key: the caller records it as a
   failed row.

Clean keys of one output folder all come from one input folder, and tagged keys are unique by their tag,
so listing sub-folders separately (:mod:`deblur.pipeline.listing` does, in parallel) gives the same
guarantee as one call over everything, as long as each call sees whole folders (``tests/pipeline/
test_naming.py`` checks both, over generated names).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from deblur.core.storage import safe_key

TAG = re.compile(r"-[0-9a-f]{10}$")
MAX_NAME = 180  # longest output file name kept as it is (bytes); longer ones are cut and tagged


def fold(key: str) -> str:
    """``key`` as a case-insensitive, Unicode-normalising store compares it: NFC, then ``casefold()``."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", key).casefold())


def tag(text: str) -> str:
    """A short hash of ``text``: the ``-<10 hex>`` that makes a changed name unique."""
    return "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _split(rel: str) -> tuple[str, str, str]:
    """(folder, stem, extension) of a relative path, as given."""
    folder, name = posixpath.split(rel)
    stem, ext = posixpath.splitext(name)
    return folder, stem, ext


def is_clean(rel: str) -> bool:
    """True when ``rel`` needs no change to be an output key (rule 1 of the module's docstring)."""
    try:
        if safe_key(rel) != rel:
            return False
    except ValueError:
        return False
    _, stem, _ = _split(rel)
    return not TAG.search(stem) and len(posixpath.basename(rel).encode()) <= MAX_NAME


def _safe(rel: str) -> tuple[str, str, str]:
    """(folder, stem, extension) of ``rel`` made safe; a path with nothing usable becomes ``unnamed``."""
    try:
        key = safe_key(rel)
    except ValueError:
        key = "unnamed"
    folder, stem, ext = _split(key)
    if not stem:  # ".png" alone
        stem, ext = ext or "unnamed", ""
    stem = stem.encode()[:MAX_NAME - 40].decode(errors="ignore")
    return folder, stem, ext


def candidates(rel: str, fmt: str) -> tuple[str, str, str]:
    """The keys ``rel`` may get, in order of preference: its stem, its whole name, its name tagged."""
    folder, stem, ext = _safe(rel)
    if not is_clean(rel):
        tagged = posixpath.join(folder, stem + tag(rel) + "." + fmt)
        return tagged, tagged, tagged
    keep = posixpath.join(folder, stem + ext + "." + fmt) if ext.lower() != "." + fmt else \
        posixpath.join(folder, stem + ext)
    return posixpath.join(folder, stem + "." + fmt), keep, posixpath.join(folder, stem + ext + tag(rel) + "." + fmt)


def output_keys(rels: list[str], fmt: str, taken: dict[str, str] | None = None,
                sources: list[str] | None = None, folders: Iterable[str] = ()) -> list[str | None]:
    """The output key of each relative input path in ``rels`` (None: no unique key could be given).

    ``taken``: keys already held (folded key -> owning source, from the manifest, or a foreign file's owner); ``sources``: the
    sources ``rels`` stand for (so that a key owned by the same source is not counted as taken);
    ``folders``: output folders that other calls fill (the safe names of sub-folders listed elsewhere).
    """
    taken = taken or {}
    sources = sources or list(rels)
    options = [candidates(r, fmt) for r in rels]
    folders = _folders(o[0] for o in options) | {fold(f) for f in folders}

    def free(key: str, source: str, others: Counter) -> bool:
        low = fold(key)
        return others[low] == 1 and low not in folders and taken.get(low, source) == source

    keys: list[str | None] = [None] * len(rels)
    first = Counter(fold(o[0]) for o in options)
    for i, (o, s) in enumerate(zip(options, sources)):
        if free(o[0], s, first):
            keys[i] = o[0]
    for level in (1, 2):
        wanted = Counter([fold(k) for k in keys if k] + [fold(options[i][level]) for i, k in enumerate(keys)
                                                          if k is None])
        for i, (o, s) in enumerate(zip(options, sources)):
            if keys[i] is None and free(o[level], s, wanted):
                keys[i] = o[level]
    return keys


def _folders(keys: Iterable[str]) -> set[str]:
    """Every folder (folded) that holds one of ``keys``."""
    out = set()
    for k in keys:
        parts = fold(k).split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out
