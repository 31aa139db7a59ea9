"""Adaptive instance normalisation pieces shared by the face swappers.

SimSwap (``ResnetBlock_Adain``) and ReSwapper/inswapper (``StyleBlock``) both
condition a residual bottleneck on an identity latent in the same way:

1. the conv output is normalised per sample and per channel over H x W
   (mean removed, divided by the root mean square, epsilon 1e-8, no affine
   parameters), and
2. a linear projection of the latent gives ``2*C`` numbers per sample, the
   first ``C`` a per-channel scale and the last ``C`` a per-channel shift.

The two models differ in one detail only: SimSwap multiplies by ``1 + scale``
while ReSwapper multiplies by ``scale``. :func:`adain_modulate` takes that
offset as an argument.

Nothing in this module owns parameters, so using it never changes a model's
``state_dict`` keys. Everything is written without Python-side batch sizes,
so it traces to ONNX with a dynamic batch dimension.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["instance_norm", "InstanceNorm", "adain_modulate"]

#: Epsilon both reference implementations add to the variance.
ADAIN_EPS = 1e-8


def instance_norm(x: torch.Tensor, eps: float = ADAIN_EPS) -> torch.Tensor:
    """Parameter-free instance normalisation over the spatial axes.

    Args:
        x: ``N x C x H x W`` float tensor (any range).
        eps: added to the per-channel variance before the square root.

    Returns:
        ``N x C x H x W``: ``(x - mean) / sqrt(var + eps)`` where ``mean`` and
        the biased ``var`` are taken over H and W for each sample and channel.
    """
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred * torch.rsqrt(var + eps)


class InstanceNorm(nn.Module):
    """Module form of :func:`instance_norm` (no parameters, no buffers).

    Input and output: ``N x C x H x W`` float tensors.
    """

    def __init__(self, eps: float = ADAIN_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def adain_modulate(x: torch.Tensor, style: torch.Tensor, scale_offset: float = 0.0) -> torch.Tensor:
    """Apply a per-sample, per-channel affine style to a feature map.

    Args:
        x: ``N x C x H x W`` feature map (normally the output of
            :func:`instance_norm`).
        style: ``N x 2C`` projection of the latent; ``style[:, :C]`` is the
            scale and ``style[:, C:]`` the shift.
        scale_offset: added to the scale before multiplying; ``1.0`` for
            SimSwap (``x * (1 + scale) + shift``), ``0.0`` for ReSwapper
            (``x * scale + shift``).

    Returns:
        ``N x C x H x W`` tensor ``x * (scale + scale_offset) + shift``.
    """
    scale, shift = torch.chunk(style, 2, dim=1)
    scale = scale[:, :, None, None]
    shift = shift[:, :, None, None]
    if scale_offset != 0.0:
        scale = scale + scale_offset
    return x * scale + shift
