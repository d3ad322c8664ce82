"""Places: where a command reads and writes, told apart by the filesystem's identity, not by spelling.

A path string has many spellings (``..``, links, a bind mount, ``//`` in a bucket key) and a folder has
many paths, so nothing here compares strings alone:

- :func:`place` resolves a root once (absolute, ``.``/``..``/empty segments folded, links resolved) and, on
  local disks, records the (device, inode) of every folder from ``/`` down to it; :func:`overlap` says
  whether two places are one or nest, by those identities (a bind mount of the input is the input);
  :func:`refuse_overlap` is the one check every writing command runs.
- :func:`write_local` writes under a local root without following a link or crossing a mount point on the
  way (each folder opened relative to its parent with ``O_NOFOLLOW``), through a temporary it creates
  exclusively, and replaces an existing file only when told the file is ours; otherwise a file already at
  the name is kept (``FileExistsError``).
- :func:`open_local` opens an input under a local root the same way, and only a regular file: a FIFO, a
  device or a socket is refused before it is opened, so nothing blocks.

Free of Ray and of torch.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from fsspec.core import split_protocol

Identity = tuple[int, int]  # (st_dev, st_ino)
_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Place:
    """A root as the filesystem knows it. ``url``: canonical (absolute, folded, links resolved locally);
    ``chain``: on local disks, the identity of each existing folder from ``/`` down to ``url`` (shorter
    when ``url`` does not exist yet); ``exists``: the whole path exists."""

    url: str
    local: bool
    chain: tuple[Identity, ...] = ()
    exists: bool = False

    def contains(self, other: "Place") -> bool:
        """True when ``other`` is this place or lies under it (by identity where both are local)."""
        if self.local and other.local and self.exists and self.chain:
            if self.chain[-1] in other.chain:
                return True
        if self.local != other.local:
            return False
        return (other.url.rstrip("/") + "/").startswith(self.url.rstrip("/") + "/")


def is_local_uri(uri: str) -> bool:
    """True for a local path or a ``file://`` URL."""
    return split_protocol(uri)[0] in (None, "file", "local")


def canonical(uri: str) -> str:
    """``uri`` absolute and folded: links resolved on local disks; ``.``, ``..`` and empty segments folded
    elsewhere (``s3://b/a/./c//d`` -> ``s3://b/a/c/d``)."""
    protocol, path = split_protocol(uri)
    if protocol in (None, "file", "local"):
        return os.path.realpath(path)
    return f"{protocol}://" + posixpath.normpath("/" + path).lstrip("/")


def place(uri: str) -> Place:
    """The :class:`Place` of ``uri``."""
    url = canonical(uri)
    if not is_local_uri(uri):
        return Place(url, False)
    chain, path, exists = [], "/", True
    for part in [""] + [p for p in url.split("/") if p]:
        path = posixpath.join(path, part) if part else path
        try:
            st = os.stat(path)
        except OSError:
            exists = False
            break
        chain.append((st.st_dev, st.st_ino))
    return Place(url, True, tuple(chain), exists)


def overlap(input_uri: str, output_uri: str) -> str:
    """How an input and an output overlap ("the same folder", "the input is inside the output", "the output
    is inside the input"), or "" when they do not: by identity, so a link or a bind mount to the input is
    the input."""
    source, output = place(input_uri), place(output_uri)
    inside, around = output.contains(source), source.contains(output)
    if inside and around:
        return "the same folder"
    if inside:
        return "the input is inside the output"
    return "the output is inside the input" if around else ""


def refuse_overlap(inputs: Iterable[str], output: str, what: str = "output") -> None:
    """Raise ValueError when ``output`` overlaps any of ``inputs`` (:func:`overlap`): a command would read its
    own results, or write among its inputs. Every command that writes runs this, before any work."""
    for source in inputs:
        how = overlap(source, output)
        if how:
            raise ValueError(f"the {what} {output} and the input {source} overlap ({how}): a run would read its own "
                             f"results or write among its inputs; choose an {what} outside the input")


def mount_points() -> frozenset[str]:
    """The mount points of this process's mount namespace (Linux ``/proc/self/mountinfo``; empty elsewhere)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()
    out = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:  # the mount point is field 5, with spaces and the like as octal escapes (\040)
            out.add(fields[4].encode("latin-1", "surrogateescape").decode("unicode_escape"))
    return frozenset(out)


class Escape(OSError, ValueError):
    """A path that would leave its root: a link, or a mount point, on the way. An OSError (a row fails with
    it) and a ValueError (a command that meets it in its own files, e.g. a link named ``_manifest``, exits
    2)."""


def _descend(fd: int, name: str, where: str, dev: int, mounts: frozenset[str], create: bool) -> int:
    """The folder ``name`` under the open folder ``fd`` (made when ``create``), opened without following a
    link and refused when it is a mount point (another device, or a bind mount: ``where`` is its path)."""
    if create:
        try:
            os.mkdir(name, dir_fd=fd)
        except FileExistsError:
            pass
    try:
        sub = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            kind = "a symbolic link" if os.path.islink(where) else "not a folder"
            raise Escape(e.errno, f"{where} is {kind}: not followed") from None
        raise
    if os.fstat(sub).st_dev != dev or where in mounts:
        os.close(sub)
        raise Escape(errno.EXDEV, f"{where} is a mount point inside the root: not crossed")
    return sub


def _folder(root: str, parts: list[str], create: bool) -> int:
    """An open descriptor of ``root/parts...`` reached as :func:`_descend` allows (the caller closes it)."""
    fd = os.open(root, _DIR)
    dev, mounts, where = os.fstat(fd).st_dev, None, root
    try:
        for part in parts:
            mounts = mount_points() if mounts is None else mounts
            where = posixpath.join(where, part)
            sub = _descend(fd, part, where, dev, mounts, create)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parts(root: str, path: str) -> list[str]:
    rel = posixpath.relpath(path, root)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise Escape(errno.EXDEV, f"{path} does not lie under {root}")
    return parts


def write_local(root: str, path: str, data: bytes, replace: bool, prefix: str = ".deblur-") -> None:
    """Write ``data`` to ``path`` under the local folder ``root`` (both canonical), atomically: a temporary
    (``prefix`` + a random hex + ``.tmp``) made exclusively beside it, then moved into place. No link is
    followed and no mount point crossed on the way (:class:`Escape`). An existing file at ``path`` is
    replaced only when ``replace`` (it is ours); otherwise it is kept and FileExistsError raised."""
    *folders, name = _parts(root, path)
    os.makedirs(root, exist_ok=True)  # the root itself is the caller's choice; below it, nothing is followed
    fd = _folder(root, folders, create=True)
    tmp = f"{prefix}{uuid.uuid4().hex}.tmp"
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
        try:
            with os.fdopen(out, "wb", closefd=False) as f:
                f.write(data)
        finally:
            os.close(out)
        try:
            _place_file(fd, tmp, name, replace, path)
        finally:
            try:
                os.unlink(tmp, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)


def _place_file(fd: int, tmp: str, name: str, replace: bool, path: str) -> None:
    """Move ``tmp`` to ``name`` in the folder ``fd``: over what is there when ``replace``; otherwise only where
    nothing is (a hard link, which never replaces; where links are not supported, a check, then a move)."""
    if replace:
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        return
    try:
        os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"a file deblur did not write is at {path}: kept") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            return
        raise FileExistsError(errno.EEXIST, f"a file deblur did not write is at {path}: kept") from None


def lies_under(path: str, root: str) -> bool:
    """True when local ``path``, links resolved, lies strictly under ``root``, links resolved."""
    return os.path.realpath(path).startswith(os.path.realpath(root).rstrip("/") + "/")


def open_local(root: str, path: str, follow: bool = True) -> tuple[int, os.stat_result]:
    """An open descriptor of the regular file ``path`` under the local folder ``root``, and its status.

    No link is followed on the way, except a last one to a file that lies under ``root`` (resolved and
    reached the same way); a FIFO, device or socket is refused before it is opened (nothing blocks). Raises
    :class:`Escape` or OSError saying why."""
    *folders, name = _parts(root, path)
    fd = _folder(root, folders, create=False)
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) and follow:
            if not lies_under(path, root):
                raise Escape(errno.EXDEV, f"a symbolic link to a file outside the input ({os.path.realpath(path)}): "
                             "not followed")
            return open_local(os.path.realpath(root), os.path.realpath(path), follow=False)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, device, pipe or socket): not read")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        f = os.open(name, flags, dir_fd=fd)
        now = os.fstat(f)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            os.close(f)
            raise OSError(errno.EAGAIN, "replaced while being opened: not read")
        return f, now
    finally:
        os.close(fd)
