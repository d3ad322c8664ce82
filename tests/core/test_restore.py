"""deblur.core.restore: tiles, the self-ensemble, precision, and the public Restorer / BatchRestorer."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import deblur
from deblur.core import checkpoint, flips, models, tiles
from deblur.core.restore import BatchRestorer, restore_images, self_ensemble
from tests.conftest import random_model, textured



def tiled(fn, x: torch.Tensor, tile: int, pad: int) -> torch.Tensor:
    """``fn`` (NCHW -> NCHW) on ``x`` (1 x C x H x W float32 [0, 1]) in windows of at most ``tile`` pixels with
    ``pad`` of context, as restore_images runs a model; 1 x C x H x W float32 [0, 1]."""
    src = x[0].permute(1, 2, 0).cpu().numpy()
    out = np.empty_like(src)
    tiles.run(fn, [tiles.Plane(src, out, 1.0)], tile, pad, x.device, 0, models.memory_format(fn))
    return torch.from_numpy(out).permute(2, 0, 1)[None].to(x.device)


def restore_image(model, img: np.ndarray, channels: int, device: torch.device, tile: int, pad: int) -> np.ndarray:
    return restore_images(model, [img], channels, device, tile, pad)[0]

# What the README says of tiles against the whole image, per model: exact where the padding covers the
# receptive field (seed: radius 8), else a PSNR floor measured with the shipped weights (the U-Net sees
# well over 100 px; tiles of 256 with 32 of padding: 69.8-73.5 dB on the three demo photos).
TILING_PSNR = {"seed": None, "unet": 65.0}  # None: exact


def test_every_model_has_a_documented_tiling_bound():
    assert sorted(TILING_PSNR) == models.names()


@pytest.mark.parametrize("name", models.names())
def test_tiles_meet_the_documented_bound(name):
    if TILING_PSNR[name] is None:
        model, x, tile, pad = random_model(name), torch.rand(1, 3, 300, 233), 96, 16
    else:  # the shipped weights: random ones saturate a deep network and say nothing of a real one
        assert checkpoint.load(checkpoint.BUNDLED)[1]["model"] == name
        model, x, tile, pad = checkpoint.load(checkpoint.BUNDLED)[0].eval(), _photo(), 256, 32
    with torch.no_grad():
        whole, tiles = model(x), tiled(model, x, tile=tile, pad=pad)
    assert (whole - x).abs().mean() > 1e-3  # not the identity
    if TILING_PSNR[name] is None:
        torch.testing.assert_close(tiles, whole, atol=1e-5, rtol=0)
    else:
        assert not torch.equal(tiles, whole)  # the bound is not vacuous: tiles do differ
        assert 10 * torch.log10(1 / ((tiles - whole) ** 2).mean()) > TILING_PSNR[name]


def _photo() -> torch.Tensor:
    """kodim23 (a demo photo, 256x384): float32 [0, 1], NCHW."""
    img = np.asarray(Image.open(f"{checkpoint.BUNDLED}/../samples/photos/kodim23.png").convert("RGB"))
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255


def test_restore_image_keeps_alpha_and_uses_the_model(seed_checkpoint):
    model, _ = checkpoint.load(seed_checkpoint)
    img = textured(20, 24, 4)
    out = restore_image(model, img, 1, torch.device("cpu"), 512, 32)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    assert not np.array_equal(out[..., :3], img[..., :3])


def _conv(kernel: torch.Tensor):
    return lambda x: F.conv2d(x, kernel[None, None], padding=kernel.shape[-1] // 2)


def test_self_ensemble_of_the_identity_is_the_identity():
    x = torch.rand(2, 3, 9, 14)
    torch.testing.assert_close(self_ensemble(lambda t: t)(x), x)


def test_self_ensemble_leaves_a_flip_equivariant_convolution_unchanged():
    symmetric = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16  # the same under all 8 flips
    x = torch.rand(1, 1, 11, 8)
    torch.testing.assert_close(self_ensemble(_conv(symmetric))(x), _conv(symmetric)(x))


def test_self_ensemble_of_a_convolution_is_the_convolution_with_its_flip_averaged_kernel():
    kernel = torch.arange(9, dtype=torch.float32).reshape(3, 3)  # no symmetry at all
    averaged = sum(flips.flip_tensor(kernel[None, None], k) for k in range(flips.COUNT))[0, 0] / flips.COUNT
    x = torch.rand(1, 1, 10, 13)
    torch.testing.assert_close(self_ensemble(_conv(kernel))(x), _conv(averaged)(x))
    assert not torch.allclose(_conv(kernel)(x), _conv(averaged)(x))


@pytest.fixture(scope="module")
def restorer():
    return deblur.load(device="cpu")


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_the_shipped_restorer_keeps_shape_dtype_and_range(restorer, channels, dtype):
    img = textured(37, 45, channels, dtype=np.uint16 if dtype == np.uint16 else np.uint8)
    if dtype == np.float32:
        img = img.astype(np.float32) / 255
    out = restorer(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert out.min() >= 0 and (out.max() <= 1 if dtype == np.float32 else True)


def test_a_loaded_model_is_in_the_layout_it_runs_fastest_in(restorer):
    weights = [p for p in restorer.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def test_the_restorer_takes_pil_images_and_tiles_large_ones(restorer):
    img = textured(70, 90, 3)
    out = restorer(Image.fromarray(img))
    assert isinstance(out, Image.Image) and out.size == (90, 70) and out.mode == "RGB"
    in_tiles = deblur.load(device="cpu", tile=64, tile_pad=16)(img)  # 6 tiles, less context than the model's reach
    assert in_tiles.shape == img.shape and np.abs(in_tiles.astype(int) - np.asarray(out).astype(int)).mean() < 3
    with pytest.raises(TypeError, match="numpy array or a PIL image"):
        restorer([[0, 1]])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precision_is_close_to_fp32(restorer, precision):
    img = textured(40, 40, 3)
    low = deblur.load(device="cpu", precision=precision)(img)
    assert np.abs(low.astype(int) - restorer(img).astype(int)).mean() < 2


@pytest.mark.parametrize("options, message", [({"precision": "fp8"}, "unknown precision"),
                                              ({"tile": 64, "tile_pad": 32}, "must exceed twice the padding")])
def test_bad_restore_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        deblur.load(device="cpu", **options)


def test_batch_restorer_is_a_plain_callable_over_columns(seed_checkpoint):
    fn = BatchRestorer(seed_checkpoint, device="cpu", output_column="sharp")
    same = np.stack([textured(16, 20, 3, seed=i) for i in range(2)])
    out = fn({"image": same, "id": np.array([1, 2])})
    assert out["sharp"].shape == same.shape and out["id"].tolist() == [1, 2] and out["image"] is same
    ragged = np.empty(2, dtype=object)
    ragged[:] = [textured(16, 20, 1), textured(9, 30, 3)]
    out = BatchRestorer(seed_checkpoint, device="cpu")({"image": ragged})
    assert [o.shape for o in out["image"]] == [(16, 20), (9, 30, 3)]
