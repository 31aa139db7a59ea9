"""inswapper_128-compatible swapper (ReSwapper ``StyleTransferModel``) in plain PyTorch.

Rebuilds somanchiu/ReSwapper ``StyleTransferModel_128.py``: a convolutional
encoder of the target face (128 -> 32 px, 1024 channels), six AdaIN style
blocks driven by the 512-d source latent, and a bilinear-upsampling decoder.
Module names equal the original, so ``reswapper-*.pth`` checkpoints load with
``load_state_dict(strict=True)``. The I/O convention is that of insightface's
``inswapper_128.onnx`` (inputs ``target``, ``source``; output ``output``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.adain import adain_modulate, instance_norm

__all__ = ["InSwapperStyleBlock", "InSwapper", "build_inswapper_128"]

_LATENT = 512
_WIDTH = 1024
_N_STYLE_BLOCKS = 6
_SLOPE = 0.2


def _reflect(x: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(x, (pad, pad, pad, pad), mode="reflect")


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(_SLOPE)


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class InSwapperStyleBlock(nn.Module):
    """ReSwapper ``StyleBlock``: AdaIN residual block with reflection padding.

    forward(x, latent): ``x`` is ``N x C x H x W`` (C = channels), ``latent`` is
    ``N x latent_size``; returns ``x + mod2(norm(conv2(pad(relu(mod1(norm(conv1(pad(x)))))))))``,
    same shape as ``x``, where ``mod(y) = y * scale + shift`` (no ``+1`` on
    the scale, unlike SimSwap).
    """

    def __init__(self, channels: int = _WIDTH, latent_size: int = _LATENT) -> None:
        super().__init__()
        # Registration order = the original's state_dict order.
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=0)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=0)
        self.style1 = nn.Linear(latent_size, 2 * channels)
        self.style2 = nn.Linear(latent_size, 2 * channels)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        y = instance_norm(self.conv1(_reflect(x, 1)))
        y = F.relu(adain_modulate(y, self.style1(latent)))
        y = instance_norm(self.conv2(_reflect(y, 1)))
        y = adain_modulate(y, self.style2(latent))
        return x + y


class InSwapper(nn.Module):
    """ReSwapper ``StyleTransferModel`` (the 128 px inswapper replacement).

    forward(target, source):
        target: ``N x 3 x S x S`` float32 RGB in [0, 1] (insightface
            ``norm_crop2`` aligned face, pixel / 255, no mean/std); S = 128
            for the published 128 checkpoints (any multiple of 4 works).
        source: ``N x 512`` float32 latent: ArcFace w600k_r50 normed embedding
            times inswapper's ``emap`` matrix, then L2-normalised per row (done
            by the caller).
        returns: ``N x 3 x S x S`` float32 RGB in [0, 1] (``(tanh + 1) / 2``).
    """

    def __init__(self) -> None:
        super().__init__()
        # The 7x7 stem convs have padding=0; forward() reflection-pads by 3 first.
        self.target_encoder = nn.Sequential(
            nn.Conv2d(3, 128, kernel_size=7, stride=1, padding=0),
            _lrelu(),
            nn.Conv2d(128, 256, kernel_size=3, stride=1, padding=1),
            _lrelu(),
            nn.Conv2d(256, 512, kernel_size=3, stride=2, padding=1),
            _lrelu(),
            nn.Conv2d(512, _WIDTH, kernel_size=3, stride=2, padding=1),
            _lrelu(),
        )
        self.style_blocks = nn.ModuleList([InSwapperStyleBlock() for _ in range(_N_STYLE_BLOCKS)])
        self.decoder = nn.Sequential(
            nn.Conv2d(_WIDTH, 512, kernel_size=3, stride=1, padding=1),
            _lrelu(),
        )
        self.decoderPart1 = nn.Sequential(
            nn.Conv2d(512, 256, kernel_size=3, stride=1, padding=1),
            _lrelu(),
            nn.Conv2d(256, 128, kernel_size=3, stride=1, padding=1),
            _lrelu(),
        )
        self.decoderPart2 = nn.Sequential(
            nn.Conv2d(128, 3, kernel_size=7, stride=1, padding=0),
            nn.Tanh(),
        )

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        x = self.target_encoder(_reflect(target, 3))
        for block in self.style_blocks:
            x = block(x, source)
        x = self.decoder(_upsample2x(x))
        x = self.decoderPart1(_upsample2x(x))
        x = self.decoderPart2(_reflect(x, 3))
        return (x + 1) / 2


def build_inswapper_128() -> InSwapper:
    """Build the 128 px inswapper (ReSwapper ``StyleTransferModel``) in eval mode.

    Load a ``reswapper-*.pth`` checkpoint (plain state_dict, no prefix) with
    ``model.load_state_dict(sd, strict=True)``. See :class:`InSwapper` for the
    forward contract.
    """
    return InSwapper().eval()
