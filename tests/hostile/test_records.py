"""Issue 36, cases 16-22: one canonical key per input, every entry exactly one record, "done" means done in
this format."""

import io
import os

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageOps

from deblur.core.image import decode, encode
from deblur.pipeline.naming import fold, output_keys
from tests.conftest import textured, write_image
from tests.hostile.tree import deblur_run, records


def test_16_bucket_keys_with_dot_or_empty_segments_get_one_record_each_and_no_shared_output(
        ray_cluster, bucket, seed_checkpoint):
    fs = fsspec.filesystem("s3")
    keys = ["in/c.png", "in/./c.png", "in//x.png", "in/sub/y.png"]
    for i, key in enumerate(keys):
        fs.pipe_file(f"{bucket[5:]}/{key}", encode(textured(20, 24, 3, seed=i), "png"))
    s = deblur_run(f"{bucket}/in", f"{bucket}/out", seed_checkpoint)
    got = records(f"{bucket}/out")
    assert sorted(got) == sorted(f"{bucket}/{k}" for k in keys) and s.done + s.failed == 4  # listed once
    dup = got[f"{bucket}/in/./c.png"]
    assert dup["status"] == "failed" and "spelled another way" in dup["error"]
    done = [r["output"] for r in got.values() if r["status"] == "done"]
    assert len(done) == 3 and len({fold(o) for o in done}) == 3


def test_17_a_file_name_that_is_not_utf8_gets_a_record_and_the_run_completes(ray_cluster, tmp_path,
                                                                             seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", textured(20, 24, 3))
    with open(os.path.join(os.fsencode(src), b"b\xff.png"), "wb") as f:
        f.write(encode(textured(20, 24, 3, seed=1), "png"))
    s = deblur_run(src, out, seed_checkpoint)
    got = records(out)
    assert s.done == 2 and len(got) == 2 and f"{src}/b\\xff.png" in got
    assert [p.name for p in (out / "_manifest").glob("part-*")] == []  # compacted
    assert decode(open(got[f"{src}/b\\xff.png"]["output"], "rb").read()).shape == (20, 24, 3)
    assert deblur_run(src, out, seed_checkpoint).skipped == 2


def test_18_a_parquet_image_column_of_strings_fails_its_rows_and_the_rest_is_done(ray_cluster, tmp_path,
                                                                                  seed_checkpoint):
    ds, out = tmp_path / "ds", tmp_path / "out"
    ds.mkdir()
    pq.write_table(pa.table({"path": ["s1.png", "s2.png"], "image": ["not", "bytes"]}), ds / "a.parquet")
    pq.write_table(pa.table({"path": ["g.png"], "image": [encode(textured(20, 24, 3), "png")]}), ds / "b.parquet")
    s = deblur_run(ds, out, seed_checkpoint, input_column="image")
    got = records(out)
    assert s.done == 1 and s.failed == 2 and sorted(got) == ["g.png", "s1.png", "s2.png"]
    assert "str, not an encoded image" in got["s1.png"]["error"]


def test_19_a_rerun_in_another_format_does_the_work_in_that_format(ray_cluster, tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_image(src / f"p{i}.png", textured(20, 24, 3, seed=i))
    assert deblur_run(src, out, seed_checkpoint, "png").done == 3
    assert deblur_run(src, out, seed_checkpoint, "jpg").done == 3  # was: 0 done, 3 skipped
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert deblur_run(src, out, seed_checkpoint, "parquet").done == 3  # was: exit 2 at the commit
    assert sorted(pq.read_table([str(p) for p in out.glob("deblur-part-*.parquet")])["path"].to_pylist()) == \
        sorted(str(p) for p in src.glob("*.png"))
    assert all(decode(p.read_bytes()).shape == (20, 24, 3) for p in out.glob("*.png"))  # png outputs kept


def test_20_hidden_files_are_inputs_like_any_other(ray_cluster, tmp_path, seed_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a.png", ".x.png", ".hidden/h.png"):
        write_image(src / name, textured(20, 24, 3))
    s = deblur_run(src, out, seed_checkpoint)
    assert s.done == 3 and sorted(os.path.relpath(k, src) for k in records(out)) == [".hidden/h.png", ".x.png",
                                                                                      "a.png"]


def test_21_an_exif_rotated_tiff_is_turned_upright_once():
    stored = textured(20, 40, 3)
    stored[:5, :10] = 255
    for orientation in range(1, 9):
        im = Image.fromarray(stored)
        exif = im.getexif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, "TIFF", exif=exif.tobytes())
        upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        assert np.array_equal(decode(buf.getvalue()), upright), orientation


def test_22_names_equal_under_unicode_case_folding_never_share_an_output():
    names = ["straße.png", "STRASSE.png", "σ.png", "ς.png", "Σ.png", "e\u0301.png", "\u00e9.png", "É.png"]
    keys = output_keys(names, "png")
    assert all(keys) and len({fold(k) for k in keys}) == len(names)
    assert fold("straße.png") == fold("STRASSE.png") and fold("e\u0301") == fold("\u00c9")
