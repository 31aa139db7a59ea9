"""SimSwap's identity encoder ``netArc``: foamliu/InsightFace-v2's IR-SE ResNet-101 (SE-LResNet101E-IR).

Rebuilds ``ResNet(IRBlock, [3, 4, 23, 3], use_se=True)`` of neuralchen/SimSwap
``models/arcface_models.py`` (``conv3x3`` as foamliu/InsightFace-v2 ``models.py`` defines it:
3x3, padding 1, no bias), with the same module names, so ``state_dict()`` has the published
keys in the published order.

Input ``N x 3 x 112 x 112`` float32, RGB, ImageNet-normalised
(``(pixel/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``); output ``N x 512``, the raw
feature of the last BatchNorm1d (not L2-normalised). Spatial sizes: stem conv 3x3 without padding
112 -> 110, max-pool 2 -> 55, then 55, 28, 14, 7 through ``layer1..layer4``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IR_SE_101", "IRBlock", "IRSEResNet", "SEBlock", "build_simswap_arcface"]

#: Blocks per stage of the published network (foamliu's ``resnet101``).
IR_SE_101 = (3, 4, 23, 3)
_STAGE_WIDTHS = (64, 128, 256, 512)


def conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (foamliu/InsightFace-v2's ``conv3x3``)."""
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation gate: ``x * sigmoid(fc(mean over H x W of x))``, ``N x C x H x W`` in and out.

    ``fc`` is Linear(C, C/16) -> PReLU (one slope) -> Linear(C/16, C) -> Sigmoid (keys ``fc.0``,
    ``fc.1``, ``fc.2``); the pooling is a GlobalAveragePool in ONNX, so any batch size traces.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.PReLU(),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(torch.flatten(self.avg_pool(x), 1))
        return x * gate[:, :, None, None]


class IRBlock(nn.Module):
    """Improved residual block with SE: ``prelu(se(bn2(conv2(prelu(bn1(conv1(bn0(x))))))) + shortcut(x))``.

    One PReLU module (one slope) serves inside the branch and after the addition, as in the
    original. ``conv1`` keeps ``inplanes`` channels at stride 1; ``conv2`` goes to ``planes`` at
    ``stride``; ``downsample`` (1x1 conv + BN) is the shortcut of a stage's first block.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.se = SEBlock(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        branch = self.se(self.bn2(self.conv2(branch)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(branch + shortcut)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` IRBlocks; the first changes width/resolution and carries the 1x1 shortcut."""
    shortcut = None
    if stride != 1 or inplanes != planes:
        shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes))
    rest = [IRBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(IRBlock(inplanes, planes, stride, shortcut), *rest)


class IRSEResNet(nn.Module):
    """SimSwap's ``ResNet``: stem (3x3 conv without padding, BN, PReLU, 2x2 max-pool), four IR-SE
    stages of widths 64/128/256/512 (strides 1, 2, 2, 2), then BN2d -> Dropout (identity in eval)
    -> flatten (C, H, W order, 512*7*7) -> Linear(25088, 512) -> BatchNorm1d.

    ``N x 3 x 112 x 112`` ImageNet-normalised RGB -> ``N x 512`` raw embedding.
    """

    def __init__(self, layers: tuple[int, int, int, int] = IR_SE_101):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip(_STAGE_WIDTHS, layers)):
            self.add_module(f"layer{index + 1}", _stage(inplanes, planes, blocks, 1 if index == 0 else 2))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.bn3 = nn.BatchNorm1d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        x = torch.flatten(self.dropout(self.bn2(x)), 1)
        return self.bn3(self.fc(x))


def build_simswap_arcface(layers: tuple[int, int, int, int] = IR_SE_101) -> IRSEResNet:
    """SimSwap's netArc (IR-SE-101 by default), random init, eval mode."""
    return IRSEResNet(tuple(layers)).eval()
