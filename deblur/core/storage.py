"""Storage: URIs to filesystems, reading a URL's bytes, listing images, safe output keys, atomic writes.

Any fsspec URL works (local paths, ``file://``, ``s3://``, ``gs://``, ``memory://``). Endpoints and
credentials come from the standard places (``AWS_ENDPOINT_URL``, the AWS credential chain, Google
application credentials), never from code. Image codecs live in :mod:`deblur.core.image`.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid

import fsspec
import pyarrow.fs as pafs

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# S3's timeouts and retries, bounded (s3fs's own defaults wait up to 7 minutes on an endpoint that accepts
# and never answers): botocore's connect/read timeouts, one attempt per call; s3fs retries each call of
# its own accord (5 times, with back-off) on timeouts and dropped connections.
# A refused endpoint fails in about a second, a silent one in under a minute; a transient error is retried.
# Set fsspec's own configuration (``FSSPEC_S3_CONFIG_KWARGS``, an fsspec config file) to change them.
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 4, "retries": {"max_attempts": 1, "mode": "standard"}}
# The checks before any work (input exists, output writable) try each S3 call twice, not s3fs's 5 times: a
# silent endpoint is named in ~17 s instead of ~45 (measured), and a transient error is still retried once.
CHECK_ATTEMPTS = 2


def filesystem(uri: str, check: bool = False) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem serving ``uri`` and the path inside it (S3 with :data:`S3_CONFIG` unless
    fsspec's configuration says otherwise; ``check``: a new one for the checks before work, trying each
    call :data:`CHECK_ATTEMPTS` times)."""
    protocol = fsspec.core.split_protocol(uri)[0]
    if protocol in ("s3", "s3a"):
        user = fsspec.config.conf.get("s3", {}).get("config_kwargs", {})
        fs, path = fsspec.core.url_to_fs(uri, config_kwargs={**S3_CONFIG, **user}, skip_instance_cache=check)
        if check:
            fs.retries = CHECK_ATTEMPTS  # s3fs's attempts per call: a class attribute, set on this instance
        return fs, path
    return fsspec.core.url_to_fs(uri)


class Unreachable(ConnectionError):
    """The storage behind a URI could not be reached (refused, timed out, no credentials): a usage error."""


def _reach(uri: str, check):
    """``check()``, with any storage error other than a missing or forbidden path as :class:`Unreachable`,
    naming the URI and, for S3, its endpoint."""
    try:
        return check()
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError):
        raise
    except Exception as e:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
        where = f" (endpoint {endpoint})" if uri.startswith(("s3://", "s3a://")) else ""
        raise Unreachable(f"cannot reach {uri}{where}: {type(e).__name__}: {e}") from None


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


def absolute(uri: str) -> str:
    """``uri`` with a local path made absolute (other URLs unchanged): workers may run elsewhere."""
    fs, path = filesystem(uri)
    return unstrip(fs, path)


def read_bytes(uri: str) -> bytes:
    """The whole content of the file at ``uri`` (local path or any fsspec URL)."""
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def check_input(*uris: str) -> None:
    """Raise FileNotFoundError (``input not found: URI``) unless each of ``uris`` exists: checked before
    any work."""
    for uri in uris:
        fs, root = filesystem(uri, check=True)
        if not _reach(uri, lambda: fs.exists(root)):
            raise FileNotFoundError(f"input not found: {uri}")


def list_images(uri: str) -> list[str]:
    """Full URLs of every image file under ``uri`` (recursive, sorted); ``uri`` may name one file.

    Raises FileNotFoundError when ``uri`` does not exist.
    """
    check_input(uri)
    fs, root = filesystem(uri)
    paths = [root] if fs.isfile(root) else fs.find(root)
    return sorted(unstrip(fs, p) for p in paths if p.lower().endswith(IMAGE_EXTENSIONS))


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


def relative_path(root: str, path: str) -> str:
    """``path`` relative to ``root`` (both URLs or paths on one filesystem), as it is (not made safe)."""
    if not root:
        return path.split("://", 1)[-1]
    _, root_path = filesystem(root)
    _, file_path = filesystem(path)
    return posixpath.relpath(file_path, root_path) if file_path != root_path else posixpath.basename(file_path)


def relative_key(root: str, path: str) -> str:
    """``path`` relative to ``root`` (both URLs or paths on one filesystem), made safe."""
    return safe_key(relative_path(root, path))


def check_output(uri: str) -> None:
    """Fail now, with the cause, when results cannot be written under ``uri``: a bucket that does not exist
    (it is never created: a typo would make a new one), a path under a regular file, no permission to
    write (a probe object is written and removed), or storage that cannot be reached (:class:`Unreachable`)."""
    _reach(uri, lambda: _check_output(uri))


def _check_output(uri: str) -> None:
    fs, path = filesystem(uri, check=True)
    if not is_local(fs) and not is_process_local(fs):
        bucket = path.strip("/").split("/")[0]
        if not fs.exists(bucket):  # s3fs says False for a bucket it cannot reach: ask for a key to tell
            try:
                fs.info(posixpath.join(bucket, ".deblur-reach-check"))
            except FileNotFoundError:
                pass
            raise FileNotFoundError(f"output bucket {bucket!r} does not exist ({uri}); create it first")
    parts = path.rstrip("/").split("/")
    for i in range(len(parts), 0, -1):
        ancestor = "/".join(parts[:i]) or "/"
        if fs.isfile(ancestor):
            raise NotADirectoryError(f"output {uri} is a file or lies under one ({ancestor})")
        if fs.isdir(ancestor):
            break
    probe = posixpath.join(path, f".deblur-write-check-{uuid.uuid4().hex}")
    try:
        if is_local(fs):
            fs.makedirs(path, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm(probe)
    except PermissionError as e:
        raise PermissionError(f"cannot write under {uri}: {e}") from None


TEMPORARY = re.compile(r"^\.(deblur-[0-9a-f]{32}|.+\.[0-9a-f]{32})\.tmp$")  # this version's, and older ones'


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling (``.deblur-<uuid>.tmp``, named so that a later run
    can sweep it, and short, so that a long name still fits) and a move, so readers never see half a file.
    The temporary is removed when the write fails."""
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".deblur-{uuid.uuid4().hex}.tmp")
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except BaseException:
        try:
            fs.rm(tmp)
        except Exception:  # storage gone: the next run sweeps it (sweep_temporaries)
            pass
        raise


def sweep_temporaries(fs: fsspec.AbstractFileSystem, paths: list[str]) -> int:
    """Remove the temporaries (:data:`TEMPORARY`) among ``paths``, left by a run that was killed or lost its
    storage; returns how many. Call it only while holding the output's lease."""
    stale = [p for p in paths if TEMPORARY.match(posixpath.basename(p))]
    for p in stale:
        try:
            fs.rm(p)
        except FileNotFoundError:
            pass
    return len(stale)


def resolved(uri: str) -> str:
    """``uri`` as a full URL with ``..`` folded away and, on local disks, links resolved."""
    fs, path = filesystem(uri)
    return unstrip(fs, os.path.realpath(path) if is_local(fs) else posixpath.normpath(path))


def within(uri: str, root: str) -> bool:
    """True when ``uri`` is ``root`` or lies under it, both :func:`resolved` (on the same filesystem)."""
    return (resolved(uri).rstrip("/") + "/").startswith(resolved(root).rstrip("/") + "/")


def overlap(input_uri: str, output_uri: str) -> str:
    """How ``input_uri`` and ``output_uri`` overlap ("the same folder", "the input is inside the output",
    "the output is inside the input"), or "" when they do not (:func:`within`, both ways)."""
    inside, around = within(input_uri, output_uri), within(output_uri, input_uri)
    if inside and around:
        return "the same folder"
    if inside:
        return "the input is inside the output"
    return "the output is inside the input" if around else ""
