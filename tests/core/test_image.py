import cv2
import numpy as np
import pytest

from deblur.core import image
from deblur.core.config import IMAGE_FORMATS
from tests.conftest import textured


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_encode_decode_round_trip(fmt, channels):
    img = textured(96, 128, channels, seed=channels)
    if fmt == "jpg" and channels == 4:
        pytest.skip("JPEG has no alpha")
    out = image.decode(image.encode(img, fmt))
    if fmt == "webp" and channels == 1:  # WebP has no grey mode: it stores three equal channels
        assert np.array_equal(out[..., 0], out[..., 2])
        out = out[..., 0]
    assert out.shape == img.shape and out.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 6


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_colour_order_is_rgb(fmt):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    out = image.decode(image.encode(red, fmt)).mean((0, 1))
    assert out[0] > 250 and out[1:].max() < 5


def test_single_channel_hwc_encodes_as_grey():
    img = textured(12, 10, 1)
    np.testing.assert_array_equal(image.decode(image.encode(img[..., None], "png")), img)


def test_sixteen_bit_png_keeps_precision():
    img = textured(20, 20, 3, dtype=np.uint16)
    out = image.decode(image.encode(img, "png"))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"not an image at all", "not a supported image")])
def test_decode_errors_are_clear(data, message):
    with pytest.raises(ValueError, match=message):
        image.decode(data)


def test_float_conversions_round_trip():
    img = textured(8, 8, 3)
    np.testing.assert_array_equal(image.from_float(image.to_float(img)), img)
    img16 = textured(8, 8, 3, dtype=np.uint16)
    np.testing.assert_array_equal(image.from_float(image.to_float(img16), np.uint16), img16)




@pytest.mark.parametrize("img", [np.zeros((65_536, 1), np.uint8)])  # over JPEG's 65,500 px
def test_encode_refusal_is_a_clear_error(img):
    with pytest.raises(ValueError, match="could not encode"):
        image.encode(img, "jpg")


def bomb_png(width: int, height: int) -> bytes:
    """A small, valid 1-bit grey PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(bytes((width + 7) // 8 + 1) * height, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.mark.parametrize("limit", [200.0, 0.0])
def test_a_decompression_bomb_is_refused_from_its_header(limit):
    data = bomb_png(20_000, 20_000)  # 400 megapixels in a few tens of kB
    assert len(data) < 200_000
    with pytest.raises(ValueError, match="too large"):
        image.decode(data, limit)


def _frames(fmt: str) -> bytes:
    import io

    from PIL import Image

    a, b = (Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (10, 200))
    buf = io.BytesIO()
    a.save(buf, fmt, save_all=True, append_images=[b])
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP", "PNG"])
def test_multi_frame_images_are_refused_unless_the_first_frame_is_asked_for(fmt):
    data = _frames(fmt)
    with pytest.raises(ValueError, match="2 frames"):
        image.decode(data)
    assert image.decode(data, multi_frame="first").shape == (8, 10, 3)


def test_hdr_and_float_images_are_refused_never_decoded_black():
    hdr = cv2.imencode(".hdr", np.ones((3000, 3000, 3), np.float32))[1].tobytes()
    with pytest.raises(ValueError, match="not a supported image"):  # its size cannot be read first: refused
        image.decode(hdr, max_megapixels=1)
    tif = cv2.imencode(".tiff", np.full((6, 6), 0.5, np.float32))[1].tobytes()
    with pytest.raises(ValueError, match="floating-point"):
        image.decode(tif)
