"""Storage: URIs to filesystems, reading a URL's bytes, listing images, safe output keys, atomic writes.

Any fsspec URL works (local paths, ``file://``, ``s3://``, ``gs://``, ``memory://``). Endpoints and
credentials come from the standard places (``AWS_ENDPOINT_URL``, the AWS credential chain, Google
application credentials), never from code. Image codecs live in :mod:`deblur.core.image`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable
from typing import BinaryIO

import fsspec
import pyarrow.fs as pafs

from deblur.core.places import open_local, write_local

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
    malformed = re.match(r"^([a-z][a-z0-9+.-]+):/(?!/)", uri)
    if malformed:  # s3:/bucket: fsspec would read it as a local path, "not found"
        raise ValueError(f"{uri!r} is not a URL: did you mean {malformed.group(1)}://{uri[malformed.end():]}?")
    protocol = fsspec.core.split_protocol(uri)[0]
    try:
        return _filesystem(uri, protocol, check)
    except ImportError as e:
        extra = BACKENDS.get(protocol)
        hint = f"pip install 'deblur-ray[{extra[1]}]' (it installs {extra[0]})" if extra else str(e)
        raise ValueError(f"{protocol}:// needs a filesystem package that is not installed: {hint}") from None


BACKENDS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}  # extras


def _filesystem(uri: str, protocol: str | None, check: bool) -> tuple[fsspec.AbstractFileSystem, str]:
    if protocol in ("s3", "s3a"):
        user = fsspec.config.conf.get("s3", {}).get("config_kwargs", {})
        bounded = {**S3_CONFIG, "http_session_cls": _bounded_session(deadline(REQUEST_DEADLINE)), **user}
        fs, path = fsspec.core.url_to_fs(uri, config_kwargs=bounded, skip_instance_cache=check)
        if check:
            fs.retries = CHECK_ATTEMPTS  # s3fs's attempts per call: a class attribute, set on this instance
        return fs, path
    return fsspec.core.url_to_fs(uri)


class Unreachable(ConnectionError):
    """The storage behind a URI could not be reached (refused, timed out, no credentials): a usage error."""


CHECK_DEADLINE = 120.0  # seconds a check before work may take in all
REQUEST_DEADLINE = 600.0  # seconds one S3 request may take in all (a whole large object read in one)


def deadline(default: float = CHECK_DEADLINE) -> float:
    """Seconds a storage call may take in all: ``DEBLUR_STORAGE_DEADLINE`` where set, else ``default`` (the
    checks before work: :data:`CHECK_DEADLINE`; each S3 request: :data:`REQUEST_DEADLINE`). A per-read timeout
    alone lets an endpoint that sends a byte now and then hold a run for ever."""
    return float(os.environ.get("DEBLUR_STORAGE_DEADLINE", default))


@functools.lru_cache(maxsize=8)
def _bounded_session(total: float) -> type:
    """aiobotocore's HTTP session with a total ``total``-second deadline on every request (its own timeouts
    are per connect and per read only)."""
    import aiohttp
    from aiobotocore.httpsession import AIOHTTPSession

    class BoundedSession(AIOHTTPSession):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._timeout.sock_connect,
                                                  sock_read=self._timeout.sock_read)

        def _get_request_timeout(self, request):
            found = super()._get_request_timeout(request)
            return found and aiohttp.ClientTimeout(total=total, sock_connect=found.sock_connect,
                                                   sock_read=found.sock_read)

    return BoundedSession


def _reach(uri: str, check):
    """``check()``, with any storage error other than a missing or forbidden path as :class:`Unreachable`,
    naming the URI and, for S3, its endpoint; so is a check that has no answer within :func:`deadline`."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    where = f" (endpoint {endpoint})" if uri.startswith(("s3://", "s3a://")) else ""
    result: dict = {}

    def call() -> None:
        try:
            result["value"] = check()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    worker = threading.Thread(target=call, daemon=True, name="deblur-storage-check")
    worker.start()
    worker.join(deadline())
    if worker.is_alive():
        raise Unreachable(f"cannot reach {uri}{where}: no answer within {deadline():g}s "
                          "(DEBLUR_STORAGE_DEADLINE)")
    error = result.get("error")
    if error is None:
        return result.get("value")
    if isinstance(error, (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, Unreachable)):
        raise error
    if type(error).__name__ == "NoCredentialsError":  # botocore's: reachable, but nobody to sign as
        raise Unreachable(f"no credentials for {uri}{where}: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY, or give the node a role with access to the bucket") from None
    raise Unreachable(f"cannot reach {uri}{where}: {type(error).__name__}: {error}") from None


def to_pyarrow(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """A pyarrow filesystem over ``fs`` (for Ray Data and Ray Train storage)."""
    if is_local(fs):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in _protocols(fs)


OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")  # one PUT writes a whole object


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """True where writing an object is atomic (a reader sees the old object or the new one, never half)."""
    return any(p in OBJECT_STORES for p in _protocols(fs))


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
    """The whole content of the file at ``uri`` (local path or any fsspec URL); on object stores each
    request ends within :func:`deadline`."""
    fs, path = filesystem(uri)
    return fs.cat_file(path, timeout=deadline(REQUEST_DEADLINE)) if fs.async_impl else fs.cat_file(path)


HEAD_BYTES = 1 << 20  # what is read of a remote input before its header admits the rest
WHOLE_BYTES = 256 << 20  # a remote input whose header is not in its first HEAD_BYTES is read whole up to this


def read_input(url: str, root: str, size: int | None, admit: Callable[[bytes | BinaryIO, int], bool]) -> bytes:
    """The content of the input ``url`` listed under ``root`` with ``size`` bytes (None: unknown), read only
    once ``admit(start or file, size)`` has judged its header (it raises ValueError to refuse).

    On local disks the file is opened as :func:`deblur.core.places.open_local` allows (no link out of the
    root, no FIFO or device; nothing blocks) and must still have the listed size; elsewhere every request
    ends within :func:`deadline`."""
    fs, path = filesystem(url)
    if is_local(fs):
        fd, st = open_local(filesystem(root)[1] if root else os.path.dirname(path), path)
        with os.fdopen(fd, "rb") as f:
            if size is not None and st.st_size != size:
                raise OSError(f"changed since it was listed ({size} bytes then, {st.st_size} now): run again")
            admit(f, st.st_size)
            f.seek(0)
            return f.read()
    if not fs.async_impl:  # memory:// and other in-process stores
        data = fs.cat_file(path)
        admit(data, len(data))
        return data
    size = size if size is not None else fs.size(path)
    head = fs.cat_file(path, start=0, end=HEAD_BYTES, timeout=deadline(REQUEST_DEADLINE))
    if len(head) >= size:
        admit(head, size)
        return head
    if not admit(head, size) and size > WHOLE_BYTES:
        raise ValueError(f"no image header in the first {HEAD_BYTES} bytes of {size}: not read")
    return head + fs.cat_file(path, start=len(head), timeout=deadline(REQUEST_DEADLINE))


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
    """A relative output key that cannot escape its root: no absolute part, no ``..``, no empty or ``.``
    segment, tame characters, Unicode in NFC form."""
    parts = []
    for part in unicodedata.normalize("NFC", relative).replace("\\", "/").split("/"):
        part = re.sub(r"[^\w.\- ]", "_", part).strip()
        if part in ("", ".", ".."):
            continue
        parts.append(part)
    if not parts:
        raise ValueError(f"no usable output name in {relative!r}")
    return "/".join(parts)


def printable(path: str) -> str:
    """``path`` as valid UTF-8: the bytes of a name that is not (which Python carries as surrogates) shown as
    ``\\xNN``; any other path unchanged."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
    probe = _probe(path)
    try:
        if is_local(fs):
            fs.makedirs(path, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)  # one DELETE: rm expands the path with a listing
    except PermissionError as e:
        raise PermissionError(f"cannot write under {uri}: {e}") from None


def _probe(root: str) -> str:
    """A fresh name under ``root`` for a probe object, written and removed to learn what the store allows."""
    return posixpath.join(root, f".deblur-write-check-{uuid.uuid4().hex}")


def _kept(fs: fsspec.AbstractFileSystem, path: str) -> FileExistsError:
    """The error of a write refused because a file deblur did not write is at ``path`` (it is kept)."""
    return FileExistsError(f"a file deblur did not write is at {unstrip(fs, path)}: kept")


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes, root: str = "", replace: bool = True,
                 prefix: str = ".deblur-") -> None:
    """Write ``data`` to ``path`` so that readers never see half a file: on an object store in one PUT (atomic
    there); elsewhere via a temporary sibling (``prefix`` + a random hex + ``.tmp``, named so that a later run
    can sweep it, and short, so that a long name still fits) and a move, the temporary removed when the write
    fails. (On S3 the temporary and the move cost a PUT, a copy, a delete and listings: 2,000 requests for
    200 tiny files, against 600 with one PUT each.)

    ``root``: the folder the write must stay in. On local disks no link is followed and no mount point
    crossed below it (:func:`deblur.core.places.write_local`). ``replace``: an existing file at ``path`` is
    ours and may be replaced; when False, a file already there is kept and FileExistsError raised (on object
    stores by the store itself, in one conditional PUT, where it refuses taken names; else checked just
    before the write)."""
    if root and is_local(fs):
        write_local(root, path, data, replace, prefix)
        return
    if is_object_store(fs) and not replace and _put_new(fs, path, data, root):
        return
    if not replace and fs.exists(path):
        raise _kept(fs, path)
    if is_object_store(fs):
        fs.pipe_file(path, data)
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f"{prefix}{uuid.uuid4().hex}.tmp")
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


EXCLUSIVE_PUT = ("s3", "s3a", "memory")  # stores whose pipe_file(mode="create") may refuse a taken name
EXCLUSIVE_BYTES = 64 << 20  # s3fs sends larger objects in parts, which carry no condition


def _put_new(fs: fsspec.AbstractFileSystem, path: str, data: bytes, root: str) -> bool:
    """Write ``data`` to ``path`` on an object store in one conditional PUT that fails where the name is
    taken (S3's ``If-None-Match: *``): True when written, FileExistsError when taken, False (nothing done)
    where the store does not refuse a taken name, or might not (:func:`refuses_taken_names`); the caller then
    checks the name first. One request instead of three, and no listing, which some servers scan whole."""
    if len(data) >= EXCLUSIVE_BYTES or not refuses_taken_names(fs, root or posixpath.dirname(path)):
        return False
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        raise _kept(fs, path) from None
    return True


@functools.lru_cache(maxsize=64)
def refuses_taken_names(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """Whether the object store under ``root`` refuses a conditional PUT at a taken name. AWS S3 and most
    servers honour ``If-None-Match: *``; some S3 servers ignore it and would overwrite, so a probe object is
    written twice under ``root`` (the output, which the run may write) and removed, once per process and
    root. Any failure of the probe answers False: the caller falls back to checking the name first."""
    if not any(p in EXCLUSIVE_PUT for p in _protocols(fs)):
        return False
    probe = _probe(root)
    try:
        fs.pipe_file(probe, b"", mode="create")
    except (OSError, TypeError, ValueError):
        return False
    try:
        fs.pipe_file(probe, b"", mode="create")
        return False
    except FileExistsError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    finally:
        try:
            fs.rm_file(probe)
        except OSError:
            pass


def sweep_temporaries(fs: fsspec.AbstractFileSystem, paths: list[str], prefix: str) -> int:
    """Remove the temporaries among ``paths`` whose names carry ``prefix`` (an output's own, with its nonce:
    a look-alike of another's is never touched), left by a run that was killed or lost its storage; returns
    how many. Call it only while holding the output's lease."""
    shape = re.compile(rf"^{re.escape(prefix)}[0-9a-f]{{32}}\.tmp$")
    stale = [p for p in paths if shape.match(posixpath.basename(p))]
    for p in stale:
        try:
            fs.rm(p)
        except FileNotFoundError:
            pass
    return len(stale)
