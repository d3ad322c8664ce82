"""Output formats: how ``deblur run`` (and ``deblur degrade``) write a restored image, one descriptor each.

A format is an image file per input (``png``, ``jpg``, ``webp``) or rows of a table (``parquet``: the
encoded PNG with its size and metadata, in Parquet parts committed when the run ends). The pipeline asks
the descriptor (:attr:`OutputFormat.table`, :attr:`OutputFormat.extension`, :meth:`OutputFormat.encode`)
and never compares a format's name; the names are :data:`deblur.core.choices.PIPELINE_FORMATS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblur.core.image import encode
from deblur.core.registry import Registry
from deblur.core.choices import PIPELINE_FORMATS


@dataclass(frozen=True)
class OutputFormat:
    """One output format. ``codec``: the image codec its bytes are in (png, jpg, webp); ``keeps_16bit``: a
    16-bit image stays 16-bit (otherwise it is rounded to 8 bits); ``table``: results are rows of Parquet
    parts under the output root, not one file per input named ``<stem>.<extension>``."""

    name: str
    codec: str
    keeps_16bit: bool
    table: bool = False

    @property
    def extension(self) -> str:
        """The suffix of an output file, without its dot ('' for a table: its parts are named by the sink)."""
        return "" if self.table else self.name

    def encode(self, img: np.ndarray, exif: bytes = b"", icc: bytes = b"") -> bytes:
        """``img`` (HW/HWC RGB(A), uint8 or uint16) encoded in this format's codec, 16-bit pixels rounded to
        8 bits where the codec cannot keep them, with the source's ``exif`` and ``icc`` profile."""
        if img.dtype == np.uint16 and not self.keeps_16bit:
            img = (img // 257).astype(np.uint8)
        return encode(img, self.codec, exif=exif, icc=icc)


PARQUET = OutputFormat("parquet", codec="png", keeps_16bit=True, table=True)
FORMATS: Registry[OutputFormat] = Registry("output format", {f.name: f for f in (
    OutputFormat("png", codec="png", keeps_16bit=True),
    OutputFormat("jpg", codec="jpg", keeps_16bit=False),
    OutputFormat("webp", codec="webp", keeps_16bit=False),
    PARQUET,
)}, PIPELINE_FORMATS)

