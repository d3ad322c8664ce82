"""The default de-blurring network: a residual U-Net built for CPU as well as GPU inference.

Plain 3x3 convolutions with ReLU (fast in oneDNN and cuDNN alike, no normalisation, so any image size and
batch size behave the same), residual blocks at every scale, 2x2 strided convolutions down and 2x2
transposed convolutions up, skip connections added (not concatenated), and a global residual: the
network predicts the correction to its input. Receptive field is well over 100 px at the deepest scale,
enough for 15 px motion. Inputs of any size are reflect-padded to a multiple of ``2 ** len(depths)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from deblur.core.models.base import Model, Settings, pad_to_multiple


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3, ``width`` channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


def _stage(width: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(width) for _ in range(depth)))


@dataclass(frozen=True)
class UNetSettings(Settings):
    """``width`` channels at full resolution, doubling at each scale; ``depths``: residual blocks per
    encoder scale; ``middle``: blocks at the deepest scale."""

    channels: int = 3
    width: int = 24
    depths: tuple[int, ...] = (1, 1, 2)
    middle: int = 2

    def __post_init__(self) -> None:
        """Bounds, checked before anything is allocated (a checkpoint's config.json is input too)."""
        _bounded("channels", self.channels, 1, 4)
        _bounded("width", self.width, 1, 512)
        depths = self.depths
        if not isinstance(depths, tuple) or not 1 <= len(depths) <= MAX_SCALES:
            raise ValueError(f"unet depths must be a list of 1 to {MAX_SCALES} block counts, got {str(depths)[:60]}")
        for d in depths:
            _bounded("a depth", d, 0, MAX_BLOCKS)
        _bounded("middle", self.middle, 0, MAX_BLOCKS)
        if self.parameters() > MAX_PARAMETERS:
            raise ValueError(f"unet of {self.parameters():,} parameters: over {MAX_PARAMETERS:,}; width {self.width}, "
                             f"depths {list(depths)[:8]}")

    def parameters(self) -> int:
        """The network's parameter count, from the settings alone (nothing allocated)."""
        c, widths = self.channels, [self.width * 2**i for i in range(len(self.depths) + 1)]
        block = [2 * (9 * w * w + w) for w in widths]
        return (9 * c * widths[0] + widths[0] + 9 * widths[0] * c + c
                + sum(d * block[i] for i, d in enumerate(self.depths)) + self.middle * block[-1]
                + sum(2 * (4 * 2 * w * w) + 3 * w for w in widths[:-1]) + sum(block[:-1]))


MAX_SCALES, MAX_BLOCKS, MAX_PARAMETERS = 8, 64, 500_000_000


def _bounded(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"unet {name} must be an integer from {low} to {high}, got {str(value)[:40]}")


class UNet(Model):
    """Residual U-Net: ``width`` channels at full resolution, doubling at each of ``len(depths)`` scales.

    Input and output: float32 [0, 1], NCHW with C == ``channels``, any H and W; output has the input's
    size. In training mode the output is not clamped (so gradients flow); in eval mode it is clamped to [0, 1].
    """

    Settings = UNetSettings

    def __init__(self, settings: UNetSettings = UNetSettings()) -> None:
        super().__init__(settings)
        channels, width, depths, middle = settings.channels, settings.width, settings.depths, settings.middle
        widths = [width * 2**i for i in range(len(depths) + 1)]
        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.encoders = nn.ModuleList(_stage(w, d) for w, d in zip(widths, depths))
        self.downs = nn.ModuleList(nn.Conv2d(w, 2 * w, 2, stride=2) for w in widths[:-1])
        self.middle = _stage(widths[-1], middle)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * w, w, 2, stride=2) for w in widths[:-1])
        self.decoders = nn.ModuleList(_stage(w, 1) for w in widths[:-1])
        self.outro = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.outro.weight)  # starts as the identity: output == input
        nn.init.zeros_(self.outro.bias)

    @property
    def multiple(self) -> int:
        return 2 ** len(self.encoders)  # one halving per encoder scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, self.multiple)
        feat = self.intro(y)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle(feat)
        for up, dec, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            feat = dec(up(feat) + skip)
        out = (y + self.outro(feat))[..., :h, :w]
        return out if self.training else out.clamp(0, 1)
