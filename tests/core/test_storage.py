import fsspec
import fsspec.implementations.memory
import pytest

from deblur.core import image, storage
from tests.conftest import textured, write_image


@pytest.mark.parametrize("rel, expected", [
    ("a/b.png", "a/b.png"),
    ("../../etc/passwd", "etc/passwd"),
    ("/abs/x.png", "abs/x.png"),
    ("a/./b/../c.png", "a/b/c.png"),
    ("we:ird*na?me<>.png", "we_ird_na_me__.png"),
    ("dir\\..\\x.png", "dir/x.png"),
])
def test_safe_key_never_escapes(rel, expected):
    assert storage.safe_key(rel) == expected


def test_safe_key_rejects_nothing_left():
    with pytest.raises(ValueError):
        storage.safe_key("../..")


def test_list_images_recursive_and_filtered(tmp_path):
    write_image(tmp_path / "a.png", textured(8, 8))
    write_image(tmp_path / "d" / "b.jpg", textured(8, 8))
    (tmp_path / "notes.txt").write_text("x")
    urls = storage.list_images(str(tmp_path))
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["a.png", "b.jpg"]
    with pytest.raises(FileNotFoundError):
        storage.list_images(str(tmp_path / "missing"))


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    fs = fsspec.filesystem("file")
    storage.write_atomic(fs, str(tmp_path / "x" / "y.bin"), b"data")
    assert (tmp_path / "x" / "y.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["y.bin"]


def test_s3_listing_and_atomic_write(bucket):
    fs, root = storage.filesystem(bucket)
    fs.pipe(f"{root}/in/a.png", image.encode(textured(8, 8), "png"))
    storage.write_atomic(fs, f"{root}/out/b.png", b"xyz")
    fs.invalidate_cache()
    assert storage.list_images(bucket) == [f"{bucket}/in/a.png", f"{bucket}/out/b.png"]
    assert fs.find(f"{root}/out") == [f"{root}/out/b.png"]
    # one PUT on an object store (atomic there): no temporary, and a stranger's object is kept
    assert storage.is_object_store(fs) and not storage.is_object_store(fsspec.filesystem("file"))
    with pytest.raises(FileExistsError, match="a file deblur did not write is at"):
        storage.write_atomic(fs, f"{root}/out/b.png", b"other", replace=False)
    storage.write_atomic(fs, f"{root}/out/b.png", b"ours again")
    assert fs.cat(f"{root}/out/b.png") == b"ours again"


def test_a_new_object_is_one_conditional_put_and_a_taken_name_is_refused_by_the_store(bucket):
    fs, root = storage.filesystem(f"{bucket}/out")
    assert storage.refuses_taken_names(fs, root)  # moto honours If-None-Match, as AWS S3 does
    calls = []
    fs.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    storage.write_atomic(fs, f"{root}/a.png", b"new", root=root, replace=False)
    fs.pipe_file(f"{root}/b.png", b"a stranger's")
    calls.clear()
    with pytest.raises(FileExistsError, match="a file deblur did not write is at s3://"):
        storage.write_atomic(fs, f"{root}/b.png", b"ours", root=root, replace=False)
    assert calls == ["PutObject"]  # no HEAD, no listing: the store refused the taken name
    fs.invalidate_cache()
    assert fs.cat(f"{root}/a.png") == b"new" and fs.cat(f"{root}/b.png") == b"a stranger's"
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/a.png", f"{root}/b.png"]  # the probe is gone


class IgnoresTheCondition(fsspec.implementations.memory.MemoryFileSystem):
    """An object store that ignores ``If-None-Match`` (as some S3 servers do): a create overwrites."""

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        super().pipe_file(path, value, **kwargs)


def test_a_store_that_ignores_the_condition_has_the_name_checked_first():
    fs = IgnoresTheCondition()
    assert storage.is_object_store(fs) and not storage.refuses_taken_names(fs, "/ignores")
    fs.pipe_file("/ignores/b.png", b"a stranger's")
    with pytest.raises(FileExistsError, match="a file deblur did not write is at"):
        storage.write_atomic(fs, "/ignores/b.png", b"ours", root="/ignores", replace=False)
    storage.write_atomic(fs, "/ignores/a.png", b"new", root="/ignores", replace=False)
    assert fs.cat("/ignores/b.png") == b"a stranger's" and fs.cat("/ignores/a.png") == b"new"
    assert sorted(fs.ls("/ignores", detail=False)) == ["/ignores/a.png", "/ignores/b.png"]
    fs.rm("/ignores", recursive=True)


def test_read_bytes_reads_local_and_s3(tmp_path, bucket):
    (tmp_path / "a.bin").write_bytes(b"local")
    fsspec.filesystem("s3").pipe(f"{bucket}/b.bin", b"remote")
    assert storage.read_bytes(str(tmp_path / "a.bin")) == b"local"
    assert storage.read_bytes(f"{bucket}/b.bin") == b"remote"


def test_check_output_refuses_a_missing_bucket_and_never_creates_it(s3_endpoint):
    s3 = fsspec.filesystem("s3")
    with pytest.raises(FileNotFoundError, match="output bucket 'no-such-bucket-x' does not exist"):
        storage.check_output("s3://no-such-bucket-x/out")
    s3.invalidate_cache()
    assert not s3.exists("no-such-bucket-x")


def test_check_output_accepts_a_bucket_and_leaves_nothing_behind(bucket):
    storage.check_output(f"{bucket}/runs/out")
    s3 = fsspec.filesystem("s3")
    s3.invalidate_cache()
    assert s3.find(bucket.removeprefix("s3://")) == []


def test_check_output_refuses_a_path_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="lies under one"):
        storage.check_output(str(tmp_path / "file" / "out"))
    storage.check_output(str(tmp_path / "new" / "out"))
    assert (tmp_path / "new" / "out").is_dir() and list((tmp_path / "new" / "out").iterdir()) == []
