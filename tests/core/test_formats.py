"""deblur.core.formats: every registered output format says truly what it writes."""

import numpy as np
import pytest

from deblur.core import image
from deblur.core.config import PIPELINE_FORMATS
from deblur.core.formats import FORMATS, PARQUET

MAGIC = {"png": b"\x89PNG", "jpg": b"\xff\xd8\xff", "webp": b"WEBP"}  # WebP: after "RIFF" and a size


def test_the_registry_holds_the_declared_formats_and_refuses_others():
    assert FORMATS.names() == sorted(PIPELINE_FORMATS) and FORMATS["parquet"] is PARQUET
    with pytest.raises(ValueError, match="unknown output format 'tif'; choose one of: jpg, parquet, png, webp"):
        FORMATS["tif"]


@pytest.mark.parametrize("name", FORMATS.names())
def test_each_format_encodes_in_its_codec_and_keeps_16_bit_only_where_it_says(name):
    form = FORMATS[name]
    ramp = (np.arange(64 * 48 * 3).reshape(48, 64, 3) * 7).astype(np.uint16)  # values past 255: not 8-bit
    data = form.encode(ramp)
    assert data[:12].startswith(MAGIC[form.codec]) or data[8:12] == MAGIC[form.codec]
    decoded = image.decode(data)
    assert decoded.dtype == (np.uint16 if form.keeps_16bit else np.uint8)
    expected = ramp if form.keeps_16bit else (ramp // 257).astype(np.uint8)
    assert np.abs(decoded.astype(int) - expected).mean() < (0.01 if form.codec == "png" else 4)
    assert form.extension == ("" if form.table else name)  # a table's parts are named by the sink
