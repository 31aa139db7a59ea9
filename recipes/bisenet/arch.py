"""BiSeNet face parser (zllrunning/face-parsing.PyTorch ``model.py`` + ``resnet.py``), 19 classes.

Rebuilt with the published module names, so ``79999_iter.pth`` / facexlib's ``parsing_bisenet.pth``
load with strict keys (191 tensors, ``cp.resnet.*`` first). Input ``N x 3 x H x W`` float32, RGB,
ImageNet-normalised; output the ``N x 19 x H x W`` logits ``out`` (the first element of the
original's ``(out, out16, out32)``; the two auxiliary heads are kept for their keys only).

One deliberate change makes H and W dynamic in ONNX: the original's three global average pools
``F.avg_pool2d(x, x.size()[2:])`` need a constant kernel when exported; here they are
``adaptive_avg_pool2d(x, 1)`` (GlobalAveragePool: the same mean, <= 1.4e-6 apart in the
manifest's measurement). Every resize takes its size from the runtime shapes, never a
scale factor, so any H, W >= 32 works (multiples of 32 recommended).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.resnet import ResNet18Body


def global_average(x: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` -> ``N x C x 1 x 1`` mean over H, W (ONNX GlobalAveragePool, any size)."""
    return F.adaptive_avg_pool2d(x, 1)


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding; keys ``conv.*``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    """``f = ConvBNReLU3x3(x)``; ``f * sigmoid(BN(conv1x1(mean_hw(f))))`` (channel attention)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(global_average(feat))))


class ContextPath(nn.Module):
    """ResNet-18 features plus the attention-refined, upsampled stride-32 and stride-16 context.

    ``forward(x)`` returns ``(feat8, feat_cp8, feat_cp16)``: the ResNet layer2 output (128 ch,
    stride 8), and the context at strides 8 and 16 (128 ch each).
    """

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18Body()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        # the original nearest-resizes the 1 x 1 global context to feat32's size: a broadcast
        context = self.conv_avg(global_average(feat32))
        feat32_sum = self.arm32(feat32) + context
        feat_cp16 = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat_cp16
        feat_cp8 = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, feat_cp8, feat_cp16


class FeatureFusion(nn.Module):
    """``f = ConvBNReLU1x1(cat(a, b))``; ``f * s + f`` with ``s = sigmoid(conv(relu(conv(mean_hw(f)))))``
    (``C -> C/4 -> C``, no BatchNorm)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(global_average(feat)))))
        return feat * attention + feat


class SegmentationHead(nn.Module):
    """``ConvBNReLU3x3(in -> mid)`` then a 1x1 conv to the class logits (the original's
    ``BiSeNetOutput``; keys ``conv.*``, ``conv_out.weight``)."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet(n_classes) of face-parsing.PyTorch in eval mode, returning only the main logits.

    ``forward(x)``: ``N x 3 x H x W`` float32 (RGB, ``(p/255 - mean) / std`` with ImageNet's
    mean/std) -> ``N x num_classes x H x W`` logits, bilinearly resized (align_corners=True)
    from stride 8 to the input's H x W. ``conv_out16`` / ``conv_out32`` (training-time auxiliary
    heads) hold published weights but are not run.
    """

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = SegmentationHead(256, 256, num_classes)
        self.conv_out16 = SegmentationHead(128, 64, num_classes)
        self.conv_out32 = SegmentationHead(128, 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat8, feat_cp8, _ = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, feat_cp8))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def build_bisenet(num_classes: int = 19) -> BiSeNet:
    """The face parser with ``num_classes`` outputs (19: CelebAMask-HQ's classes)."""
    return BiSeNet(num_classes)
