"""RetinaFace (biubug6/Pytorch_Retinaface, phase='test') rebuilt with the published key names.

Input: ``N x 3 x H x W`` float32 BGR minus (104, 117, 123). Outputs, with
``A = 2 * sum(ceil(H/s) * ceil(W/s) for s in (8, 16, 32))`` anchors:
``loc`` (N, A, 4) box deltas, ``conf`` (N, A, 2) softmax [background, face],
``landms`` (N, A, 10) landmark deltas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.resnet import ResNet50Body


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, relu: bool = True, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ LeakyReLU): keys ``0.weight``, ``1.*``."""
    layers: list[nn.Module] = [
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
    ]
    if relu:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + BN + LeakyReLU, pointwise 1x1 + BN + LeakyReLU (keys 0,1,3,4)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1Body(nn.Module):
    """MobileNet-0.25 stages 1-3 (the avgpool/fc head is dropped, as IntermediateLayerGetter does)."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
            conv_dw(32, 64, 2), conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        return [s1, s2, self.stage3(s2)]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn(in_channel, out_channel // 2, relu=False)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn(out_channel // 4, out_channel // 4, relu=False)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn(out_channel // 4, out_channel // 4, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7_2 = self.conv7X7_2(c5_1)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], dim=1))


class FPN(nn.Module):
    """Top-down feature pyramid with nearest upsampling to the finer map's exact size."""

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn(in_channels[0], out_channels, leaky=leaky, kernel=1)
        self.output2 = conv_bn(in_channels[1], out_channels, leaky=leaky, kernel=1)
        self.output3 = conv_bn(in_channels[2], out_channels, leaky=leaky, kernel=1)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=[o2.size(2), o2.size(3)], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=[o1.size(2), o1.size(3)], mode="nearest"))
        return [o1, o2, o3]


class Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor, flattened to (N, H*W*anchors, values)."""

    def __init__(self, in_channels: int, values: int, anchors: int = 2):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace in test phase: returns ``(loc, softmax(conf), landms)``."""

    def __init__(self, backbone: str):
        super().__init__()
        if backbone == "mobilenet0.25":
            self.body, stage_channels, out_channels = MobileNetV1Body(), [64, 128, 256], 64
        elif backbone == "resnet50":
            self.body, stage_channels, out_channels = ResNet50Body(), [512, 1024, 2048], 256
        else:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}")
        self.fpn = FPN(stage_channels, out_channels)
        self.ssh1 = SSH(out_channels, out_channels)
        self.ssh2 = SSH(out_channels, out_channels)
        self.ssh3 = SSH(out_channels, out_channels)
        self.ClassHead = nn.ModuleList([Head(out_channels, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([Head(out_channels, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([Head(out_channels, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.fpn(self.body(x))
        feats = [self.ssh1(p[0]), self.ssh2(p[1]), self.ssh3(p[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landms = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), landms


def build_retinaface(backbone: str) -> RetinaFace:
    """RetinaFace with a ``mobilenet0.25`` or ``resnet50`` backbone (random init, eval mode)."""
    return RetinaFace(backbone).eval()
