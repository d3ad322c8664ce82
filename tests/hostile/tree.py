"""What the hostile tests compare: a tree as the filesystem holds it (links not followed), and one run."""

from __future__ import annotations

import os
import stat

from deblur.core.config import PipelineConfig
from deblur.pipeline import sinks
from deblur.pipeline.run import Summary, run


def snapshot(root) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``root`` (relative path -> (kind, content or link target)), links not followed;
    ``_manifest`` and deblur's outputs are the caller's to leave out."""
    out = {}
    root = os.fspath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.fsencode(os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    out[rel] = ("file", f.read())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("special", b"")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return out


def deblur_run(src, out, ckpt: str, fmt: str = "png", **kw) -> Summary:
    """One run with one model actor and small batches."""
    return run(PipelineConfig(input=str(src), output=str(out), model=ckpt, format=fmt,
                              **{"workers": 1, "batch_size": 4, **kw}))


def records(out) -> dict[str, dict]:
    """The manifest's latest record per source."""
    return {r["source"]: r for r in sinks.read_manifest(str(out)).to_pylist()}
