"""2D-FAN-4 (Bulat & Tzimiropoulos, "How far are we from solving the 2D & 3D face alignment problem?").

Our rebuild of 1adrianb/face-alignment ``face_alignment/models/fan.py`` ``FAN(num_modules=4)``,
with the same module names in the same registration order, so ``state_dict()`` has the published
keys (``2DFAN4-11f355bf06.pth.tar``) in the published order:

* stem: ``conv1`` (7x7, stride 2, padding 3, bias) -> ``bn1`` -> ReLU -> ``conv2`` (ConvBlock
  64->128) -> 2x2 average pool -> ``conv3`` (128->128) -> ``conv4`` (128->256): 256 -> 64 px;
* four stacks ``i``: hourglass ``m{i}`` (depth 4, 256 features) -> ``top_m_{i}`` (ConvBlock) ->
  ``conv_last{i}`` (1x1, bias) -> ``bn_end{i}`` -> ReLU -> ``l{i}`` (1x1 -> 68 heatmaps, no
  activation); between stacks ``previous + bl{i}(features) + al{i}(heatmaps)`` feeds the next.

Every downsampling is a 2x2 average pool (stride 2) and every upsampling a nearest 2x
interpolation. BatchNorm eps 1e-5; the model is used in ``eval()`` (running statistics).

Input ``N x 3 x 256 x 256`` float32, RGB, pixel/255 in [0, 1]; output ``N x 68 x 64 x 64``,
the LAST stack's raw heatmaps (what face_alignment decodes), not the list of all four.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBlock", "HourGlass", "FAN", "build_fan"]

NUM_LANDMARKS = 68
FEATURES = 256


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation multi-scale residual block, ``N x cin x H x W`` -> ``N x cout x H x W``.

    Three BN -> ReLU -> 3x3 conv (no bias) steps in a chain (``cout/2``, ``cout/4``, ``cout/4``
    channels); their outputs are concatenated along channels and added to the shortcut: ``x``
    itself, or ``downsample`` (BN -> ReLU -> 1x1 conv, no bias) when ``cin != cout``.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False))
                           if cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat((a, b, c), dim=1) + shortcut


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels over ``features`` channels (shape-preserving;
    H and W must be divisible by ``2**depth``).

    Level ``L``: ``b1_L(x) + upsample2x(b3_L(inner(b2_L(avgpool2(x)))))``, where ``inner`` is
    level ``L-1``, or ``b2_plus_1`` at level 1. Modules are registered as the recursion meets
    them (``b1_4, b2_4, b1_3, ..., b2_plus_1, b3_1, ..., b3_4``), the published key order.
    """

    def __init__(self, depth: int = 4, features: int = FEATURES):
        super().__init__()
        self.depth = depth
        self._add_level(depth, features)

    def _add_level(self, level: int, features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._add_level(level - 1, features)
        else:
            self.add_module("b2_plus_1", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Stacked-hourglass face alignment network; ``forward`` returns the last stack's heatmaps.

    Input ``N x 3 x 256 x 256`` float32 RGB in [0, 1]; output ``N x 68 x 64 x 64`` float32.
    """

    def __init__(self, num_stacks: int = 4, num_landmarks: int = NUM_LANDMARKS):
        super().__init__()
        self.num_stacks = num_stacks
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for i in range(num_stacks):
            self.add_module(f"m{i}", HourGlass(4, FEATURES))
            self.add_module(f"top_m_{i}", ConvBlock(FEATURES, FEATURES))
            self.add_module(f"conv_last{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(FEATURES))
            self.add_module(f"l{i}", nn.Conv2d(FEATURES, num_landmarks, kernel_size=1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks, FEATURES, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        heatmaps = previous
        for i in range(self.num_stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)))
            heatmaps = self._modules[f"l{i}"](features)
            if i < self.num_stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return heatmaps


def build_fan(num_stacks: int = 4) -> FAN:
    """``FAN(num_modules=4)`` as face_alignment builds it for ``LandmarksType.TWO_D`` (2DFAN-4)."""
    return FAN(num_stacks)
