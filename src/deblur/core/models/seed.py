"""The article's convolutional autoencoder, reproduced exactly (22,057 parameters for 1 channel).

Keras layout: Conv2D 64, 32, 16 (2x2, stride 1, 'same') -> Conv2D 8 (2x2, latent) ->
Conv2DTranspose 16, 32, 64 (2x2, 'same') -> Conv2DTranspose C (1x1) -> sigmoid; no activations between.
Keras 'same' padding for an even kernel puts the extra row/column after the data (bottom, right);
for a stride-1 transposed convolution it is the adjoint: a full transposed convolution cropped at the end.
Initialisation follows Keras: Glorot-uniform kernels, zero biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from deblur.core.models.base import Model, Settings


class SameConv2d(nn.Conv2d):
    """Conv2d, stride 1, with TensorFlow/Keras 'same' padding (extra padding bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = F.pad(x, (left, kw - 1 - left, top, kh - 1 - top))
        return F.conv2d(x, self.weight, self.bias)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d, stride 1, with Keras 'same' output size (crop of the full result)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        top, left = (kh - 1) // 2, (kw - 1) // 2
        y = F.conv_transpose2d(x, self.weight, self.bias)
        return y[..., top : top + x.shape[-2], left : left + x.shape[-1]]


def _keras_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class SeedSettings(Settings):
    """``channels`` (1 in the article), encoder ``widths`` (decoder mirrors them), ``latent`` channels."""

    channels: int = 1
    widths: tuple[int, ...] = (64, 32, 16)
    latent: int = 8


class SeedAutoencoder(Model):
    """The article's de-blurring autoencoder.

    Input and output: float32 in [0, 1], NCHW with C == ``channels``, any H and W; output has the input's size.
    """

    Settings = SeedSettings

    def __init__(self, settings: SeedSettings = SeedSettings()) -> None:
        super().__init__(settings)
        channels, widths, latent = settings.channels, settings.widths, settings.latent
        enc, dec, c = [], [], channels
        for w in (*widths, latent):
            enc.append(SameConv2d(c, w, 2))
            c = w
        for w in reversed(widths):
            dec.append(SameConvTranspose2d(c, w, 2))
            c = w
        dec.append(nn.ConvTranspose2d(c, channels, 1))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        _keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))
