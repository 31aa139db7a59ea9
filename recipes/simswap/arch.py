"""SimSwap generator rebuilt in plain PyTorch.

Rebuilds ``Generator_Adain_Upsample(input_nc=3, output_nc=3, latent_size=512,
n_blocks=9, deep=False)`` of neuralchen/SimSwap, in both published sizes:

* 224: ``models/fs_networks.py``: stem with 64 channels, 3 stride-2
  downsamplings (``down1..down3``) and 3 upsamplings (``up3..up1``).
* 512: ``models/fs_networks_512.py``: stem with 32 channels, 4 downsamplings
  (``down0..down3``) and 4 upsamplings (``up3..up0``).

Both have 9 AdaIN residual blocks at 512 channels in the middle and share
this one class; the size only sets the stem width and the number of
resolution steps. Module names equal the originals, so the published
checkpoints load with ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.adain import InstanceNorm, adain_modulate

__all__ = ["SimSwapGenerator", "AdainResBlock", "LatentStyle", "build_simswap", "SIMSWAP_CONFIGS"]

#: crop size -> (index of the first downsampling level, stem channels).
#: Level ``i`` (``down{i}`` / ``up{i}``) works between ``32 << i`` and ``64 << i``
#: channels, so level 3 always meets the 512-channel bottleneck.
SIMSWAP_CONFIGS = {
    224: 1,  # down1..down3, stem 64 channels
    512: 0,  # down0..down3, stem 32 channels
}
_DEEPEST_LEVEL = 3
_BOTTLENECK_CHANNELS = 512


class LatentStyle(nn.Module):
    """Latent -> per-channel scale/shift, applied SimSwap-style (``ApplyStyle``).

    forward(x, latent): ``x`` is ``N x C x H x W``, ``latent`` is
    ``N x latent_size``; returns ``x * (1 + scale) + shift``, ``N x C x H x W``.
    """

    def __init__(self, latent_size: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_size, 2 * channels)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return adain_modulate(x, self.linear(latent), scale_offset=1.0)


def _reflect_conv_norm(channels: int) -> nn.Sequential:
    # Keys "<name>.1.weight/bias", as in the original (pad, conv, norm).
    return nn.Sequential(
        nn.ReflectionPad2d(1),
        nn.Conv2d(channels, channels, kernel_size=3, padding=0),
        InstanceNorm(),
    )


class AdainResBlock(nn.Module):
    """SimSwap ``ResnetBlock_Adain`` (reflection padding, ReLU).

    forward(x, latent): ``x`` is ``N x dim x H x W``, ``latent`` is
    ``N x latent_size``; returns ``x + style2(norm(conv2(relu(style1(norm(conv1(x)))))))``
    with the same shape as ``x``.
    """

    def __init__(self, dim: int, latent_size: int) -> None:
        super().__init__()
        self.conv1 = _reflect_conv_norm(dim)
        self.style1 = LatentStyle(latent_size, dim)
        self.conv2 = _reflect_conv_norm(dim)
        self.style2 = LatentStyle(latent_size, dim)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.style1(self.conv1(x), latent))
        y = self.style2(self.conv2(y), latent)
        return x + y


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def _up(c_in: int, c_out: int) -> nn.Sequential:
    # Index 0 is the parameter-free upsampler, keys are "<name>.1.*" / "<name>.2.*".
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class SimSwapGenerator(nn.Module):
    """SimSwap ``Generator_Adain_Upsample`` with ``deep=False``.

    Args:
        first_level: index of the shallowest resolution level: 1 for the 224
            model (``down1..down3``), 0 for the 512 model (``down0..down3``).
            The stem has ``32 << first_level`` channels.
        in_channels / out_channels: image channels (3).
        latent_size: identity latent length (512).
        n_blocks: number of AdaIN residual blocks (9).

    forward(target, source_latent):
        target: ``N x 3 x S x S`` float32 RGB in [0, 1] (aligned face crop,
            pixel / 255, no mean/std normalisation); S must be divisible by
            ``2 ** (4 - first_level)``.
        source_latent: ``N x latent_size`` float32 identity embedding of the
            source face, L2-normalised per row by the caller.
        returns: ``N x 3 x S x S`` float32 RGB in [0, 1] (``(tanh + 1) / 2``).
    """

    def __init__(
        self,
        first_level: int,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_size: int = 512,
        n_blocks: int = 9,
    ) -> None:
        super().__init__()
        if not 0 <= first_level <= _DEEPEST_LEVEL:
            raise ValueError(f"first_level must be in 0..{_DEEPEST_LEVEL}, got {first_level}")
        levels = list(range(first_level, _DEEPEST_LEVEL + 1))
        stem = 32 << first_level

        # Registration order = state_dict order: first_layer, downs (shallow to
        # deep), BottleNeck, ups (deep to shallow), last_layer.
        self.first_layer = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, stem, kernel_size=7, padding=0),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        )
        self._down_names = tuple(f"down{i}" for i in levels)
        for i in levels:
            self.add_module(f"down{i}", _down(32 << i, 64 << i))
        self.BottleNeck = nn.Sequential(
            *[AdainResBlock(_BOTTLENECK_CHANNELS, latent_size) for _ in range(n_blocks)]
        )
        self._up_names = tuple(f"up{i}" for i in reversed(levels))
        for i in reversed(levels):
            self.add_module(f"up{i}", _up(64 << i, 32 << i))
        self.last_layer = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(stem, out_channels, kernel_size=7, padding=0),
            nn.Tanh(),
        )

    def forward(self, target: torch.Tensor, source_latent: torch.Tensor) -> torch.Tensor:
        x = self.first_layer(target)
        for name in self._down_names:
            x = getattr(self, name)(x)
        for block in self.BottleNeck:
            x = block(x, source_latent)
        for name in self._up_names:
            x = getattr(self, name)(x)
        x = self.last_layer(x)
        return (x + 1) / 2


def build_simswap(crop_size: int) -> SimSwapGenerator:
    """Build the SimSwap generator for ``crop_size`` 224 or 512, in eval mode.

    Weights are uninitialised-default; load a published checkpoint (a plain
    state_dict, no prefix) with ``model.load_state_dict(sd, strict=True)``.
    See :class:`SimSwapGenerator` for the forward contract.
    """
    try:
        first_level = SIMSWAP_CONFIGS[int(crop_size)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"SimSwap crop_size must be one of {sorted(SIMSWAP_CONFIGS)}, got {crop_size!r}") from None
    return SimSwapGenerator(first_level=first_level).eval()
