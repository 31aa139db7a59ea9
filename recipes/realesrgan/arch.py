"""Real-ESRGAN generators: BasicSR ``RRDBNet`` (``basicsr/archs/rrdbnet_arch.py``), rebuilt.

``RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4|2|1)``
with the published state_dict keys in the published order (``conv_first``, ``body.<i>.rdb<j>
.conv<k>``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``; no buffers).

Input ``N x 3 x H x W`` RGB in [0, 1]; output ``N x 3 x sH x sW`` RGB, nominally [0, 1] and
not clamped. Scale 2 (and 1) first folds 2x2 (4x4) pixel blocks into channels, so H and W must
be multiples of 2 (4) there; the network itself always upsamples 4x (two nearest 2x steps).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Scale -> the pixel_unshuffle factor in front of ``conv_first`` (1: none).
UNSHUFFLE = {4: 1, 2: 2, 1: 4}

LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, zero padding 1, with bias (every conv of RRDBNet)."""
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


def space_to_channels(x: torch.Tensor, factor: int) -> torch.Tensor:
    """BasicSR ``pixel_unshuffle``: ``N x C x H x W`` -> ``N x C*f*f x H/f x W/f`` with
    ``out[:, c*f*f + dy*f + dx, i, j] = x[:, c, f*i + dy, f*j + dx]`` (torch's
    ``pixel_unshuffle`` order, not ONNX ``SpaceToDepth``'s, which puts the offset first).

    Written as reshape/permute of sizes read from the tensor at run time, so an ONNX export keeps
    H and W dynamic. H and W must be multiples of ``factor``."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // factor, factor, w // factor, factor)
    return blocks.permute(0, 1, 3, 5, 2, 4).reshape(n, c * factor * factor, h // factor, w // factor)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; ``x + 0.2 * conv5(cat(x, x1, x2, x3, x4))``."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        for k in range(1, 5):
            self.add_module(f"conv{k}", conv3x3(num_feat + (k - 1) * num_grow_ch, num_grow_ch))
        self.conv5 = conv3x3(num_feat + 4 * num_grow_ch, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), LEAKY_SLOPE))
        return self.conv5(torch.cat(features, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual in residual dense block: ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN generator as Real-ESRGAN ships it (see the module docstring for shapes)."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be one of {sorted(UNSHUFFLE)}, got {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = conv3x3(num_in_ch * self.unshuffle ** 2, num_feat)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = conv3x3(num_feat, num_feat)
        self.conv_up1 = conv3x3(num_feat, num_feat)
        self.conv_up2 = conv3x3(num_feat, num_feat)
        self.conv_hr = conv3x3(num_feat, num_feat)
        self.conv_last = conv3x3(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N x 3 x H x W`` RGB [0, 1] -> ``N x 3 x scale*H x scale*W`` RGB (unclamped)."""
        feat = space_to_channels(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2.0, mode="nearest")), LEAKY_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))


def build_rrdbnet(scale: int = 4) -> RRDBNet:
    """Real-ESRGAN's ``RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23,
    num_grow_ch=32, scale=scale)`` (RealESRGAN_x4plus: 4; RealESRGAN_x2plus: 2)."""
    return RRDBNet(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=64, num_block=23, num_grow_ch=32)
