"""Storage and codecs: URIs to filesystems, image decode/encode, safe output keys, atomic writes.

Any fsspec URL works (local paths, ``file://``, ``s3://``, ``gs://``, ``memory://``). Endpoints and
credentials come from the standard places (``AWS_ENDPOINT_URL``, the AWS credential chain, Google
application credentials), never from code. Decoded images are numpy arrays in RGB(A) channel order,
HW (grey) or HWC, uint8 or uint16 as stored.
"""

from __future__ import annotations

import io as _io
import posixpath
import re
import uuid

import cv2
import fsspec
import numpy as np
import pyarrow.fs as pafs
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUT_FORMATS = ("png", "jpg", "webp")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem serving ``uri`` and the path inside it."""
    return fsspec.core.url_to_fs(uri)


def to_pyarrow(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """A pyarrow filesystem over ``fs`` (for Ray Data and Ray Train storage)."""
    if is_local(fs):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in _protocols(fs)


def is_process_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for filesystems other processes cannot see (``memory://``): read those in the driver."""
    return "memory" in _protocols(fs)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The full URL of ``path`` on ``fs`` (inverse of :func:`filesystem`)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def list_images(uri: str) -> list[str]:
    """Full URLs of every image file under ``uri`` (recursive, sorted); ``uri`` may name one file.

    Raises FileNotFoundError when ``uri`` does not exist.
    """
    fs, root = filesystem(uri)
    if not fs.exists(root):
        raise FileNotFoundError(f"input not found: {uri}")
    paths = [root] if fs.isfile(root) else fs.find(root)
    return sorted(unstrip(fs, p) for p in paths if p.lower().endswith(IMAGE_EXTENSIONS))


def probe(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation 1..8) from the header alone, or None when Pillow cannot tell."""
    try:
        with Image.open(_io.BytesIO(data)) as im:
            orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            return im.width, im.height, int(orientation) if orientation in range(1, 9) else 1
    except Exception:  # Pillow knows fewer formats than OpenCV: let the decoder have its say
        return None


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip a decoded HW/HWC image upright for EXIF ``orientation`` (as Pillow's exif_transpose)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def decode(data: bytes, max_megapixels: float = 0.0) -> np.ndarray:
    """Decode an encoded image, upright per its EXIF orientation, to HW or HWC (RGB/RGBA order), uint8 or
    uint16. Raises ValueError if empty, unreadable, or larger than ``max_megapixels`` (0: no limit),
    which is checked from the header before decoding."""
    if not data:
        raise ValueError("empty file")
    head = probe(data)
    if head and max_megapixels and head[0] * head[1] > max_megapixels * 1e6:
        raise ValueError(f"image too large: {head[0]}x{head[1]} is over {max_megapixels:g} megapixels")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # never rotates: EXIF is applied below
    if img is None:
        raise ValueError("not a decodable image")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return apply_orientation(img, head[2]) if head else img


def encode(img: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """Encode HW/HWC (C = 1, 3 or 4; RGB(A) order) uint8/uint16 ``img`` as ``fmt`` (png, jpg, webp)."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], "webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}
    ok, buf = cv2.imencode("." + fmt, img, params.get(fmt, []))
    if not ok:
        raise ValueError(f"could not encode image as {fmt}")
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


def safe_key(relative: str) -> str:
    """A relative output key that cannot escape its root: no absolute part, no ``..``, tame characters."""
    parts = []
    for part in relative.replace("\\", "/").split("/"):
        part = re.sub(r"[^\w.\- ]", "_", part).strip()
        if part in ("", ".", ".."):
            continue
        parts.append(part)
    if not parts:
        raise ValueError(f"no usable output name in {relative!r}")
    return "/".join(parts)


def relative_key(root: str, path: str) -> str:
    """``path`` relative to ``root`` (both URLs or paths on one filesystem), made safe."""
    if not root:
        return safe_key(path.split("://", 1)[-1])
    _, root_path = filesystem(root)
    _, file_path = filesystem(path)
    rel = posixpath.relpath(file_path, root_path) if file_path != root_path else posixpath.basename(file_path)
    return safe_key(rel)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a move, so readers never see half a file."""
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)
