"""deblur.core.tiles: windows that cover every pixel once, batches by shape and budget, integer pixels in
and out, results equal to whole-image processing, no whole-image float copy."""

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn as nn

from deblur.core import tiles
from deblur.core.restore import restore_images
from tests.conftest import textured


def _net(channels: int = 3) -> nn.Module:
    """Two random 3x3 convolutions (receptive-field radius 2): far from the identity."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                        nn.Conv2d(8, channels, 3, padding=1, padding_mode="reflect"), nn.Sigmoid())
    return net.eval()


@pytest.mark.parametrize("h, w, tile, pad", [(300, 233, 96, 16), (96, 96, 96, 16), (97, 40, 64, 8), (1, 500, 64, 4)])
def test_windows_write_every_pixel_exactly_once(h, w, tile, pad):
    seen = np.zeros((h, w), int)
    for win in tiles.windows(0, h, w, tile, pad):
        assert max(win.shape) <= tile
        seen[win.write] += 1
        rows, cols = win.keep
        assert (rows.stop - rows.start, cols.stop - cols.start) == (win.write[0].stop - win.write[0].start,
                                                                    win.write[1].stop - win.write[1].start)
    assert (seen == 1).all()


def test_batches_group_by_shape_within_the_budget():
    src = np.zeros((64, 64, 3), np.uint8)
    planes = [tiles.Plane(src, src, 255.0), tiles.Plane(src[:32], src[:32], 255.0)]
    found = [tiles.Window(p, (slice(0, 32), slice(0, 32)), (slice(0, 32),) * 2, (slice(0, 32),) * 2)
             for p in (0, 1, 0, 1, 0)]
    groups = list(tiles.batches(found, planes, budget=2 * 32 * 32))
    assert [len(g) for g in groups] == [2, 2, 1] and all(w.shape == (32, 32) for g in groups for w in g)
    big = [tiles.Window(0, (slice(0, 64), slice(0, 64)), (slice(0, 64),) * 2, (slice(0, 64),) * 2)] * 2
    assert [len(g) for g in tiles.batches(big, planes, budget=16)] == [1, 1]  # over budget: one at a time


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiles_equal_the_whole_image_when_the_padding_covers_the_model(dtype):
    img = textured(150, 170, 3, dtype=np.uint16 if dtype == np.uint16 else np.uint8)
    img = img.astype(np.float32) / 255 if dtype == np.float32 else img
    net = _net()
    whole = restore_images(net, [img], 3, torch.device("cpu"), tile=1024, pad=0)[0]
    tiled = restore_images(net, [img], 3, torch.device("cpu"), tile=64, pad=4)[0]
    assert not np.array_equal(whole, img)  # the model is far from the identity
    if dtype == np.float32:
        np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0)
    else:  # the same float result, rounded: equal but where it lands within rounding noise of a half step
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1 and (tiled == whole).mean() > 0.999


def test_many_small_images_share_calls_and_equal_one_by_one():
    images = [textured(24, 32, 3, seed=i) for i in range(6)] + [textured(40, 16, 1, seed=9), textured(24, 32, 4)]
    net, calls = _net(), []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    together = restore_images(net, images, 3, torch.device("cpu"), tile=512, pad=32)
    assert sorted(calls, reverse=True)[0] == 7  # the six RGB images and the RGBA one's colour in one call
    calls.clear()
    alone = [restore_images(net, [img], 3, torch.device("cpu"), tile=512, pad=32)[0] for img in images]
    assert calls == [1] * len(images)
    for a, b, img in zip(together, alone, images):
        assert a.shape == img.shape and a.dtype == img.dtype
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


class _Layout(nn.Module):
    """A model that records the layout of each input it gets (and returns it)."""

    def __init__(self, memory_format: torch.memory_format) -> None:
        super().__init__()
        self.memory_format, self.seen = memory_format, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.is_contiguous(memory_format=self.memory_format))
        return x


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("ensemble", [False, True])
def test_the_model_gets_its_input_in_the_layout_it_declares(memory_format, ensemble):
    img = textured(70, 90, 3, seed=4)
    model = _Layout(memory_format)
    out = restore_images(model, [img], 3, torch.device("cpu"), tile=48, pad=4, ensemble=ensemble)[0]
    assert model.seen and all(model.seen) and np.array_equal(out, img)


def test_a_large_image_makes_no_whole_image_float_copy():
    img = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)  # 9 MB; float32 would be 36
    net = _net()
    tracemalloc.start()
    try:
        out = restore_images(net, [img], 3, torch.device("cpu"), tile=256, pad=8)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == img.shape and out.dtype == np.uint8
    assert peak < img.nbytes + 8e6, f"numpy peak {peak / 1e6:.1f} MB for a {img.nbytes / 1e6:.0f} MB image"
