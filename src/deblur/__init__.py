"""deblur: de-blurring networks trained with Ray Train and applied to image buckets with Ray Data.

The Python API (Ray-free; importing ``deblur`` loads nothing until a name below is used)::

    import deblur

    model = deblur.load()      # the shipped model; or deblur.load("s3://bucket/runs/r1", device="cuda")
    sharp = model(img)         # numpy HW/HWC uint8/uint16/float32 [0, 1], or a PIL image; any size
    ds.map_batches(deblur.BatchRestorer, compute=ray.data.ActorPoolStrategy(size=2), batch_size=8)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["BatchRestorer", "Restorer", "load", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("BatchRestorer", "Restorer", "load"):
        from deblur.core import restore

        return getattr(restore, name)
    raise AttributeError(f"module 'deblur' has no attribute {name!r}")
