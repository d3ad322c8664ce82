"""deblur.pipeline.rows: each table's Arrow schema holds exactly its row type's fields, and its constructor
makes rows the schema takes."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from deblur.pipeline import rows

TABLES = {"manifest": (rows.ManifestRow, rows.MANIFEST_SCHEMA), "parquet": (rows.ParquetRow, rows.PARQUET_SCHEMA)}


@pytest.mark.parametrize("table", TABLES)
def test_a_schema_has_its_row_types_fields_in_order(table):
    kind, schema = TABLES[table]
    assert list(kind.__annotations__) == schema.names


def test_the_constructors_rows_round_trip_through_their_schemas():
    now = datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=timezone.utc)
    entry = rows.manifest_row("s3://b/in/a.png", "s3://b/out/a.png", "done", "", 1234, "unet@ab12", "r1", now, "png")
    grey = rows.parquet_row("in/g.png", b"\x89PNG", "png", (48, 64), "unet@ab12", 0.5, 0.7, "r1", b"")
    colour = rows.parquet_row("in/c.png", b"\x89PNG", "png", np.zeros((48, 64, 4)).shape, "m", 0.1, 0.2, "r1", b"icc")
    assert pa.Table.from_pylist([entry], schema=rows.MANIFEST_SCHEMA).to_pylist() == [{**entry, "version": "1234"}]
    back = pa.Table.from_pylist([grey, colour], schema=rows.PARQUET_SCHEMA).to_pylist()
    assert [(r["width"], r["height"], r["channels"], r["icc_profile"]) for r in back] == [(64, 48, 1, None),
                                                                                        (64, 48, 4, b"icc")]


def test_every_row_after_listing_carries_the_listed_fields():
    listed = set(rows.Listed.__annotations__)
    assert listed == {"path", "output", "version", "skip", "error", "replace"}
    assert listed <= set(rows.InputRow.__annotations__) and listed <= set(rows.DecodedRow.__annotations__)
