import fsspec
import numpy as np
import pytest

from deblur import io
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
    assert io.safe_key(rel) == expected


def test_safe_key_rejects_nothing_left():
    with pytest.raises(ValueError):
        io.safe_key("../..")


@pytest.mark.parametrize("fmt", io.OUTPUT_FORMATS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_encode_decode_round_trip(fmt, channels):
    img = textured(96, 128, channels, seed=channels)
    if fmt == "jpg" and channels == 4:
        pytest.skip("JPEG has no alpha")
    out = io.decode(io.encode(img, fmt))
    if fmt == "webp" and channels == 1:  # WebP has no grey mode: it stores three equal channels
        assert np.array_equal(out[..., 0], out[..., 2])
        out = out[..., 0]
    assert out.shape == img.shape and out.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 6


@pytest.mark.parametrize("fmt", io.OUTPUT_FORMATS)
def test_colour_order_is_rgb(fmt):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    out = io.decode(io.encode(red, fmt)).mean((0, 1))
    assert out[0] > 250 and out[1:].max() < 5


def test_single_channel_hwc_encodes_as_grey():
    img = textured(12, 10, 1)
    np.testing.assert_array_equal(io.decode(io.encode(img[..., None], "png")), img)


def test_sixteen_bit_png_keeps_precision():
    img = textured(20, 20, 3, dtype=np.uint16)
    out = io.decode(io.encode(img, "png"))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"not an image at all", "not a decodable")])
def test_decode_errors_are_clear(data, message):
    with pytest.raises(ValueError, match=message):
        io.decode(data)


def test_float_conversions_round_trip():
    img = textured(8, 8, 3)
    np.testing.assert_array_equal(io.from_float(io.to_float(img)), img)
    img16 = textured(8, 8, 3, dtype=np.uint16)
    np.testing.assert_array_equal(io.from_float(io.to_float(img16), np.uint16), img16)


def test_list_images_recursive_and_filtered(tmp_path):
    write_image(tmp_path / "a.png", textured(8, 8))
    write_image(tmp_path / "d" / "b.jpg", textured(8, 8))
    (tmp_path / "notes.txt").write_text("x")
    urls = io.list_images(str(tmp_path))
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["a.png", "b.jpg"]
    with pytest.raises(FileNotFoundError):
        io.list_images(str(tmp_path / "missing"))


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    fs = fsspec.filesystem("file")
    io.write_atomic(fs, str(tmp_path / "x" / "y.bin"), b"data")
    assert (tmp_path / "x" / "y.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["y.bin"]


def test_s3_listing_and_atomic_write(bucket):
    fs, root = io.filesystem(bucket)
    fs.pipe(f"{root}/in/a.png", io.encode(textured(8, 8), "png"))
    io.write_atomic(fs, f"{root}/out/b.png", b"xyz")
    fs.invalidate_cache()
    assert io.list_images(bucket) == [f"{bucket}/in/a.png", f"{bucket}/out/b.png"]
    assert fs.find(f"{root}/out") == [f"{root}/out/b.png"]
