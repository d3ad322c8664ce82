"""Images in memory: codecs (decode with EXIF orientation, encode), dtype conversion, channel and tensor
layout.

Decoded images are numpy arrays in RGB(A) channel order, HW (grey) or HWC, uint8 or uint16 as stored.
Model inputs and outputs are float32 in [0, 1]: HWC numpy arrays, or NCHW torch tensors.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch  # only the two tensor helpers need it: decoding in a Ray task does not pay torch's import

READ_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP")  # Pillow's names of the formats read (MPO: a camera
# JPEG with previews after the photo, which is its first frame)


class Header(NamedTuple):
    """What Pillow reads from an image's header: its stored size, EXIF orientation (1..8), the EXIF itself,
    the ICC profile (b"": none), the format, Pillow's mode (e.g. "RGB", "I;16", "F") and the frames."""

    width: int
    height: int
    orientation: int
    exif: Image.Exif
    icc: bytes
    format: str = ""
    mode: str = ""
    frames: int = 1


def probe(data: bytes | BinaryIO) -> Header | None:
    """The :class:`Header` of an encoded image (its bytes, or a seekable file, of which only the header is
    read), or None when Pillow cannot tell.

    Raises ValueError for a header that declares more pixels than Pillow will open (a decompression bomb)."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data) as im:
            exif = im.getexif()
            orientation = exif.get(0x0112, 1)
            return Header(im.width, im.height, int(orientation) if orientation in range(1, 9) else 1, exif,
                          im.info.get("icc_profile") or b"", im.format or "", im.mode,
                          int(getattr(im, "n_frames", 1) or 1))
    except Image.DecompressionBombError as e:
        raise ValueError(f"image too large to decode safely ({e})") from None
    except Exception:  # Pillow knows fewer formats than OpenCV: let the decoder have its say
        return None


BOMB_MEGAPIXELS = 16.0  # images above this many megapixels must bring enough bytes (see admit)
METADATA_BYTES = 64 << 20  # what a file may hold beyond its pixels: EXIF, ICC, previews, thumbnails


def admit(data: bytes | BinaryIO, size: int, max_megapixels: float = 0.0, max_pixels_per_byte: float = 0.0) -> bool:
    """Whether an encoded image of ``size`` bytes is worth reading whole, judged from its header (``data``:
    its first bytes, or the seekable file). Raises ValueError, saying why, for: more than ``max_megapixels``
    (0: no limit); more bytes than its pixels could need (twice their raw size, plus
    :data:`METADATA_BYTES`); over :data:`BOMB_MEGAPIXELS` and more than ``max_pixels_per_byte`` pixels
    for each byte of the file (0: no limit), the shape of a decompression bomb. Returns False when the
    header cannot be read from ``data`` (the decoder then has its say), True when admitted."""
    head = probe(data)
    if head is None:
        return False
    pixels = head.width * head.height
    if max_megapixels and pixels > max_megapixels * 1e6:
        raise ValueError(f"image too large: {head.width}x{head.height} is over {max_megapixels:g} megapixels")
    raw = pixels * 4 * (2 if "16" in head.mode else 1)
    if size > 2 * raw + METADATA_BYTES:
        raise ValueError(f"{size} bytes for a {head.width}x{head.height} image, more than its pixels could need: "
                         "not read")
    if max_pixels_per_byte and pixels > BOMB_MEGAPIXELS * 1e6 and pixels > max_pixels_per_byte * max(size, 1):
        raise ValueError(f"a {head.width}x{head.height} image in {size} bytes ({pixels / max(size, 1):.0f} pixels a "
                         f"byte, over {max_pixels_per_byte:g}): refused as a decompression bomb; "
                         "--max-pixels-per-byte 0 lifts the limit")
    return True


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip a decoded HW/HWC image upright for EXIF ``orientation`` (as Pillow's exif_transpose)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def decode(data: bytes, max_megapixels: float = 0.0, multi_frame: str = "refuse") -> np.ndarray:
    """Decode an encoded image, upright per its EXIF orientation, to HW or HWC (RGB/RGBA order), uint8 or
    uint16. Raises ValueError if empty, unreadable, not one of :data:`READ_FORMATS` (its size must be read from
    its header before it is decoded), larger than ``max_megapixels`` (0: no limit), floating-point (HDR,
    float TIFF: never written black), or of several frames unless ``multi_frame`` is "first"."""
    return _decode(data, max_megapixels, multi_frame)[0]


def decode_with_metadata(data: bytes, max_megapixels: float = 0.0,
                         multi_frame: str = "refuse") -> tuple[np.ndarray, bytes, bytes]:
    """(image, EXIF, ICC profile): :func:`decode`, and the metadata read from the same header (each b""
    when absent). The EXIF's orientation is set to 1 (upright), because the pixels are already turned."""
    img, head = _decode(data, max_megapixels, multi_frame)
    if not head.exif:
        return img, b"", head.icc
    if 0x0112 in head.exif:
        head.exif[0x0112] = 1
    try:
        return img, head.exif.tobytes(), head.icc
    except Exception:  # an EXIF block Pillow reads but cannot write back: drop it, keep the image
        return img, b"", head.icc


def _decode(data: bytes, max_megapixels: float, multi_frame: str = "refuse") -> tuple[np.ndarray, Header]:
    """:func:`decode`, and the header it read."""
    if not data:
        raise ValueError("empty file")
    head = probe(data)
    if head is None or head.format not in READ_FORMATS:
        what = f"{head.format} images are" if head and head.format else "an unrecognised format is"
        raise ValueError(f"not a supported image: {what} not read (PNG, JPEG, BMP, TIFF and WebP are; their size "
                         "is read from the header before decoding)")
    if max_megapixels and head.width * head.height > max_megapixels * 1e6:
        raise ValueError(f"image too large: {head.width}x{head.height} is over {max_megapixels:g} megapixels")
    if head.mode == "F" or head.mode.startswith("F;"):
        raise ValueError(f"floating-point {head.format} image: not supported (8- and 16-bit images are); "
                         "convert it first")
    if head.frames > 1 and head.format != "MPO" and multi_frame != "first":
        raise ValueError(f"{head.format} of {head.frames} frames (pages or animation): refused; --multi-frame "
                         "first takes the first frame only")
    try:  # never rotates: EXIF is applied below
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. over OpenCV's own pixel limit
        raise ValueError(f"not a decodable image ({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        raise ValueError("not a decodable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{img.dtype} pixels: not supported (8- and 16-bit images are); convert it first")
    # OpenCV turns a TIFF upright itself (its orientation tag is the EXIF one): turned once, never twice
    orientation = 1 if head.format == "TIFF" else head.orientation
    # (Pillow gives a turned TIFF's size upright, or as stored, by version)
    sizes = {(head.height, head.width)} | ({(head.width, head.height)} if head.format == "TIFF" else set())
    if img.shape[:2] not in sizes:
        raise ValueError(f"decoded size {img.shape[1]}x{img.shape[0]} differs from the header's "
                         f"{head.width}x{head.height}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return apply_orientation(img, orientation), head


def encode(img: np.ndarray, fmt: str, quality: int = 95, exif: bytes = b"", icc: bytes = b"") -> bytes:
    """Encode HW/HWC (C = 1, 3 or 4; RGB(A) order) uint8/uint16 ``img`` as ``fmt`` (png, jpg, webp), with
    ``exif`` and ``icc`` (an ICC profile) embedded when given (8-bit images; Pillow writes them)."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if (exif or icc) and img.dtype == np.uint8:
        return _encode_with_metadata(img, fmt, quality, exif, icc)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], "webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}
    return imencode(fmt, img, params.get(fmt, []))


def _encode_with_metadata(img: np.ndarray, fmt: str, quality: int, exif: bytes, icc: bytes) -> bytes:
    pil = Image.fromarray(img)
    if fmt == "jpg" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    options = {"png": {"format": "PNG", "compress_level": 1}, "jpg": {"format": "JPEG", "quality": quality},
               "webp": {"format": "WEBP", "quality": quality}}[fmt]
    buf = io.BytesIO()
    pil.save(buf, **options, **({"exif": exif} if exif else {}), **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def imencode(fmt: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    """``cv2.imencode`` with its result checked: the encoded bytes, or ValueError when OpenCV refuses."""
    try:
        ok, buf = cv2.imencode("." + fmt, img, params or [])
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"could not encode a {img.dtype} {'x'.join(map(str, img.shape))} image as {fmt}")
    return buf.tobytes()


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16/float image -> float32 in [0, 1], same layout."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def from_float(img: np.ndarray, dtype: np.dtype = np.uint8) -> np.ndarray:
    """float image in [0, 1] -> ``dtype`` (uint8 or uint16), rounded."""
    top = 65535.0 if np.dtype(dtype) == np.uint16 else 255.0
    return np.rint(np.clip(img, 0.0, 1.0) * top).astype(dtype)



def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HW/HWC image (any dtype) -> HWC with ``channels`` (1 or 3); alpha is dropped, RGB->grey by luma."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == channels:
        return np.ascontiguousarray(img)
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(img[..., :1], channels, axis=2)


def to_hwc(img: np.ndarray) -> np.ndarray:
    """HW/HWC image (any dtype) -> HWC with 1 or 3 channels: grey gains a channel axis, alpha is dropped."""
    img = img[..., None] if img.ndim == 2 else img
    return img[..., :3] if img.shape[2] == 4 else img


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``min(size, H)`` x ``min(size, W)`` window of ``img``."""
    h, w = min(size, img.shape[0]), min(size, img.shape[1])
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y : y + h, x : x + w]


def to_tensor(images: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Same-sized HWC float32 images -> NCHW float32 tensor on ``device``."""
    import torch

    arr = np.stack(images) if isinstance(images, list) else images
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).to(device)


def to_numpy(batch: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> N x H x W x C float32 numpy array in [0, 1]."""
    return batch.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
