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

from deblur.core.models.base import Model, Settings


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2 ** len(self.encoders)
        ph, pw = -h % m, -w % m
        mode = "reflect" if ph < h and pw < w else "replicate"
        y = F.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x
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
