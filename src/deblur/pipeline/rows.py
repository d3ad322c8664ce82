"""The pipeline's data contract: what a row holds after each stage (declared once, here).

  listing -> :class:`InputRow` -> decode -> :class:`DecodedRow` -> model -> :class:`DecodedRow` (pixels
  restored) -> write -> :class:`Record`, and on the way out a :class:`ManifestRow` for each input (the
  manifest under ``OUTPUT/_manifest``) and, with ``--format parquet``, a :class:`ParquetRow`

Ray Data hands each stage a :data:`Batch`: a dict of columns, one value per row, keyed as below. The two
tables' Arrow schemas sit beside their row types (:data:`MANIFEST_SCHEMA`, :data:`PARQUET_SCHEMA`; a test
holds each to its type's fields), and each has one constructor (:func:`manifest_row`, :func:`parquet_row`).

Why pixels travel as ``pixels`` (raw bytes) + ``shape`` ("h,w" or "h,w,c") + ``dtype`` (numpy's ``str``,
e.g. "|u1", "<u2"): the images of one batch differ in size, channels (grey, RGB, RGBA) and dtype (8 or 16
bit), which one Ray Data tensor column cannot hold without a ragged extension type; a binary column is a
single Arrow buffer that crosses the object store without pickling, and the two short strings rebuild the
array without a copy (:func:`unpack`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

import numpy as np
import pyarrow as pa

STATUSES = ("done", "skipped", "failed")
Batch = dict[str, list[Any]]  # a Ray Data batch: a row type's field -> one value per row


class Listed(TypedDict):
    """What every row carries from listing to writing. ``path``: the input's URL (or a name, for Parquet
    input); ``output``: where its image file goes ("" for a table format); ``version``: its size and ETag or
    modification time (a content hash for Parquet input); ``skip``: the manifest records it as done at this
    version, its output still there; ``error``: why it cannot be processed ("" when it can); ``replace``:
    its output name holds a file the manifest records as this input's, which may be replaced (any other
    file there is kept: the write fails)."""

    path: str
    output: str
    version: str
    skip: bool
    error: str
    replace: bool


class InputRow(Listed, total=False):
    """A listed input. ``name``: the local file's name as the OS gives it, where that is not UTF-8 (``path``
    then shows its bytes as ``\\xNN``; b"" otherwise); ``bytes``: its encoded content, only for inputs
    workers cannot read themselves (``memory://``, a Parquet column); ``recorded``: only with
    ``--detect-changes content``, the content version the manifest records (its output still there; "" when
    none): the input is read, versioned by its content and skipped when that is unchanged."""

    name: bytes
    bytes: bytes
    recorded: str


class DecodedRow(Listed):
    """An input after decoding (``bytes`` dropped): the image as :func:`pack` stores it (empty when
    skipped or failed), ``sharpness_before`` (variance of the Laplacian, [0, 1] scale; measured for a table
    output only, else 0.0), and the source's
    ``exif`` (orientation reset to upright: it is applied to the pixels) and ``icc`` profile (b"": none)."""

    pixels: bytes
    shape: str
    dtype: str
    sharpness_before: float
    exif: bytes
    icc: bytes
    precision: NotRequired[str]  # set by the model stage: the numeric precision and engine it ran in


class Record(TypedDict):
    """What happened to one input: ``status`` is one of :data:`STATUSES`; ``megapixels`` and
    ``precision`` (the model's numeric precision and engine, e.g. "bf16 (openvino)") are set for done ones; ``written``: when its
    batch's manifest rows were written (seconds since the epoch; their ``time``)."""

    path: str
    status: str
    error: str
    megapixels: float
    precision: str
    written: float


RECORD_KEYS = tuple(Record.__annotations__)


class ManifestRow(TypedDict):
    """One row of the manifest: what happened to ``source`` in run ``run`` at ``time`` (UTC, to the ms).
    ``status``: one of :data:`STATUSES`, or ``writing`` (announced before its file is written); ``version``:
    the source's version then; ``format``: the output format it was done in (null in older manifests)."""

    source: str
    output: str
    status: str
    error: str
    model: str
    run: str
    time: datetime
    version: str
    format: str


MANIFEST_SCHEMA = pa.schema([
    ("source", pa.string()), ("output", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("model", pa.string()), ("run", pa.string()), ("time", pa.timestamp("ms", tz="UTC")),
    ("version", pa.string()), ("format", pa.string()),
])


def manifest_row(source: str, output: str, status: str, error: str, version: Any, model: str, run: str,
                 time: datetime, fmt: str) -> ManifestRow:
    """The manifest's row for ``source``."""
    return ManifestRow(source=source, output=output, status=status, error=error, model=model, run=run, time=time,
                       version=str(version), format=fmt)


class ParquetRow(TypedDict):
    """One row of ``--format parquet``'s output: the restored image encoded (``format``: its codec) with its
    size, the model and run that made it, its sharpness before and after (variance of the Laplacian, [0, 1]
    scale) and the source's ICC profile (None: none; it is inside ``image`` too)."""

    path: str
    image: bytes
    format: str
    width: int
    height: int
    channels: int
    model: str
    sharpness_before: float
    sharpness_after: float
    run: str
    icc_profile: bytes | None


PARQUET_SCHEMA = pa.schema([
    ("path", pa.string()), ("image", pa.binary()), ("format", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("channels", pa.int32()), ("model", pa.string()),
    ("sharpness_before", pa.float64()), ("sharpness_after", pa.float64()), ("run", pa.string()),
    ("icc_profile", pa.binary()),
])


def parquet_row(path: str, image: bytes, codec: str, shape: tuple[int, ...], model: str, sharpness_before: float,
                sharpness_after: float, run: str, icc: bytes) -> ParquetRow:
    """The output row of ``path``'s restored image, encoded as ``image`` in ``codec``, of ``shape`` (HW/HWC)."""
    return ParquetRow(path=path, image=image, format=codec, width=shape[1], height=shape[0],
                      channels=1 if len(shape) == 2 else shape[2], model=model, sharpness_before=sharpness_before,
                      sharpness_after=sharpness_after, run=run, icc_profile=icc or None)


def pack(img: np.ndarray) -> dict[str, str | bytes]:
    """The ``pixels``, ``shape`` and ``dtype`` columns of a decoded image (HW/HWC, uint8/uint16)."""
    return {"pixels": img.tobytes(), "shape": ",".join(map(str, img.shape)), "dtype": img.dtype.str}


def unpack(pixels: bytes, shape: str, dtype: str) -> np.ndarray:
    """The image :func:`pack` stored (a read-only view of ``pixels``)."""
    return np.frombuffer(pixels, np.dtype(dtype)).reshape(tuple(int(s) for s in shape.split(",")))


EMPTY = {"pixels": b"", "shape": "", "dtype": ""}
