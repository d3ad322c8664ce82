"""The pipeline's data contract: what a row holds after each stage (declared once, here).

  listing -> :class:`InputRow` -> decode -> :class:`DecodedRow` -> model -> :class:`DecodedRow` (pixels
  restored) -> write -> :class:`Record`

Ray Data hands each stage a batch: a dict of columns, one value per row, keyed as below. The manifest's
and the Parquet output's schemas live with their writers in :mod:`deblur.pipeline.sinks`.

Why pixels travel as ``pixels`` (raw bytes) + ``shape`` ("h,w" or "h,w,c") + ``dtype`` (numpy's ``str``,
e.g. "|u1", "<u2"): the images of one batch differ in size, channels (grey, RGB, RGBA) and dtype (8 or 16
bit), which one Ray Data tensor column cannot hold without a ragged extension type; a binary column is a
single Arrow buffer that crosses the object store without pickling, and the two short strings rebuild the
array without a copy (:func:`unpack`).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import numpy as np

STATUSES = ("done", "skipped", "failed")


class InputRow(TypedDict, total=False):
    """A listed input. ``path``: its URL (or a name, for Parquet input); ``output``: where its image file
    goes ("" for Parquet output); ``version``: its size and ETag or modification time (a content hash for
    Parquet input); ``skip``: the manifest records it as done at this version, its output still there;
    ``error``: why it cannot be processed ("" when it can); ``replace``: its output name holds a file the
    manifest records as this input's, which may be replaced (any other file there is kept: the write
    fails); ``name``: the local file's name as the OS gives it, where that is not UTF-8 (``path`` then
    shows its bytes as ``\\xNN``; b"" otherwise); ``bytes``: its encoded content, only for inputs
    workers cannot read themselves (``memory://``, a Parquet column); ``recorded``: only with
    ``--detect-changes content``, the content version the manifest records (its output still there; "" when
    none): the input is read, versioned by its content and skipped when that is unchanged."""

    path: str
    output: str
    version: str
    skip: bool
    error: str
    replace: bool
    name: bytes
    bytes: bytes
    recorded: str


class DecodedRow(TypedDict):
    """An input after decoding (``bytes`` dropped): the image as :func:`pack` stores it (empty when
    skipped or failed), ``sharpness_before`` (variance of the Laplacian, [0, 1] scale), and the source's
    ``exif`` (orientation reset to upright: it is applied to the pixels) and ``icc`` profile (b"": none)."""

    path: str
    output: str
    version: str
    skip: bool
    error: str
    replace: bool
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


def pack(img: np.ndarray) -> dict[str, str | bytes]:
    """The ``pixels``, ``shape`` and ``dtype`` columns of a decoded image (HW/HWC, uint8/uint16)."""
    return {"pixels": img.tobytes(), "shape": ",".join(map(str, img.shape)), "dtype": img.dtype.str}


def unpack(pixels: bytes, shape: str, dtype: str) -> np.ndarray:
    """The image :func:`pack` stored (a read-only view of ``pixels``)."""
    return np.frombuffer(pixels, np.dtype(dtype)).reshape(tuple(int(s) for s in shape.split(",")))


EMPTY = {"pixels": b"", "shape": "", "dtype": ""}
