import numpy as np
import pytest
import torch

from deblur.core.flips import COUNT, flip_array, flip_tensor, unflip_tensor


def test_eight_distinct_invertible_views():
    img = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    views = [flip_array(img, k) for k in range(COUNT)]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == COUNT
    np.testing.assert_array_equal(views[0], img)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_flip_array_is_numpys_rotation_then_mirror(shape, dtype):
    img = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    for k in range(COUNT):
        want = np.rot90(img, k % 4)
        want = want[:, ::-1] if k >= 4 else want
        got = flip_array(img, k)
        assert got.dtype == img.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", range(COUNT))
def test_tensor_flips_are_the_array_flips_and_unflip_undoes_them(k):
    img = np.random.default_rng(k).random((5, 7, 3)).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    flipped = flip_tensor(x, k)
    np.testing.assert_array_equal(flipped[0].permute(1, 2, 0).numpy(), flip_array(img, k))
    assert torch.equal(unflip_tensor(flipped, k), x)


def test_a_flip_index_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="0..7"):
        flip_array(np.zeros((2, 2)), 8)
