"""deblur.core.crops: the training stream is the same whatever the loader workers, and resumes exactly."""

import numpy as np
import pytest
import torch

from deblur.core.crops import CropStream, loader
from deblur.core.device_degrade import LoaderBatch
from tests.conftest import textured

SPEC = "real+poisson:a=0.002,sigma=0.002+jpeg:quality=80,p=0.5"


def _images():
    return [textured(60, 70, 3, seed=i) for i in range(4)] + [textured(64, 48, 1, seed=9)]


def _first(batches):
    return [b[0] for b in batches]


def test_batches_do_not_depend_on_the_loader_workers_and_resume_exactly():
    stream = lambda **kw: CropStream(_images(), SPEC, 32, 3, 3, seed=1, flips=True, **kw)
    alone = _first(loader(stream(stop=7), 0, False))
    spawned = _first(loader(stream(stop=7), 2, False))
    resumed = _first(loader(stream(start=4, stop=7), 1, False))
    assert len(alone) == len(spawned) == 7 and len(resumed) == 3
    assert all(torch.equal(a, b) for a, b in zip(alone, spawned))
    assert all(torch.equal(a, b) for a, b in zip(alone[4:], resumed))
    assert not torch.equal(alone[0], alone[1]) and alone[0].shape == (3, 3, 32, 32)


def test_ranks_and_seeds_draw_different_batches():
    make = lambda seed, rank: CropStream(_images(), SPEC, 32, 3, 3, seed=seed, rank=rank).make(0)[0]
    assert not torch.equal(make(0, 0), make(0, 1)) and not torch.equal(make(0, 0), make(1, 0))


def test_mixup_blends_same_sized_images():
    stream = CropStream([np.zeros((40, 40, 3), np.uint8), np.full((40, 40, 3), 255, np.uint8)], "none", 40, 1, 3,
                        seed=0, mixup=1.0)
    rng = np.random.default_rng(0)
    picks = [stream.pick(rng) for _ in range(50)]
    blended = [p for p in picks if p.dtype == np.float32 and 0.02 < p.mean() < 0.98]
    assert len(blended) > 10 and all(np.ptp(p) == 0 for p in blended)  # a uniform blend of black and white
    with pytest.raises(ValueError, match="mixup"):
        from deblur.core.config import TrainConfig

        TrainConfig("d", "o", mixup=1.5)


def test_on_device_batches_are_loader_batches():
    batch = CropStream(_images(), "shake+noise:sigma=0.01", 32, 4, 3, seed=0, on_device=True).make(3)
    assert isinstance(batch, LoaderBatch) and len(batch.index) + len(batch.cpu_index) == 4
