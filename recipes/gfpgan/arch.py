"""GFPGAN v1.4 generator (``GFPGANv1Clean``) rebuilt in plain PyTorch.

Reimplements TencentARC/GFPGAN ``gfpgan/archs/gfpganv1_clean_arch.py`` and
``stylegan2_clean_arch.py`` with the arguments GFPGANer uses for v1.4
(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8,
input_is_latent=True, different_w=True, narrow=1, sft_half=True).

The state_dict (parameter names, order, shapes, and the 15 persistent noise
buffers ``stylegan_decoder.noises.noiseN``) matches the published
``GFPGANv1.4.pth`` (``params_ema``), so the checkpoint loads with strict=True.

Inference is deterministic: the decoder always injects its stored noise
buffers (the original's ``randomize_noise=False``) and nothing is random.

Two ways to compute the StyleGAN2 modulated convolutions, with the same
weights:

* faithful (default): as the original, the weights are modulated per
  sample and the batch is folded into conv groups. ONNX export works at a
  fixed batch of 1.
* unfused: the input is scaled by the style, a plain conv runs with the
  static weight, and the output is scaled by the demodulation factor. The
  math is the same, the conv weights stay static (good for INT8), and the
  ONNX graph can take any batch size.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GFPGANv1Clean", "build_gfpgan_v14"]

LRELU_SLOPE = 0.2


def _stylegan_channels(channel_multiplier: float, narrow: float) -> dict:
    """Feature channels per spatial resolution, as in StyleGAN2."""
    cm = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return {res: int(c * narrow) for res, c in base.items()}


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class NormStyleCode(nn.Module):
    """Pixel-norm of style codes (b, c): x / sqrt(mean(x^2) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), stride 1, 'same' padding.

    Input x: (b, in_channels, h, w); style: (b, num_style_feat). Output:
    (b, out_channels, h, w), or (b, out_channels, 2h, 2w) when ``upsample``
    (bilinear x2, align_corners=False, applied to the input before the conv,
    as in the clean arch). ``weight`` has shape (1, out, in, k, k) and already
    includes the 1/sqrt(fan_in) scale, so there is no extra runtime scale.

    ``unfused=False`` modulates the weights per sample and runs one grouped
    conv over the batch. ``unfused=True`` gives the same result with a static
    weight: conv(x * s) * demod with demod[b, o] = rsqrt(sum_i s[b, i]^2 *
    sum_kk w[o, i]^2 + eps), which is sum over (i, k, k) of (w * s)^2.
    """

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat,
                 demodulate=True, upsample=False, unfused=False, eps=1e-8):
        super().__init__()
        self.modulation = nn.Linear(num_style_feat, in_channels)
        nn.init.ones_(self.modulation.bias)
        fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(fan_in))
        self.demodulate = demodulate
        self.upsample = upsample
        self.unfused = unfused
        self.eps = eps
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        style = self.modulation(style)  # (b, in_channels)
        if self.unfused:
            return self._static_weight_conv(x, style)
        return self._grouped_modulated_conv(x, style)

    def _grouped_modulated_conv(self, x, style):
        b, c_in = x.shape[:2]
        weight = self.weight * style.view(b, 1, c_in, 1, 1)  # (b, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + self.eps)
        k = weight.shape[-1]
        weight = weight.view(-1, c_in, k, k)  # (b * out, in, k, k)
        if self.upsample:
            x = _upsample2x(x)
        h, w = x.shape[-2:]
        out = F.conv2d(x.reshape(1, b * c_in, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, -1, *out.shape[-2:])

    def _static_weight_conv(self, x, style):
        weight = self.weight.squeeze(0)  # (out, in, k, k)
        # Per-channel scaling commutes with bilinear upsampling: scale first (4x fewer elements).
        x = x * style[:, :, None, None]
        if self.upsample:
            x = _upsample2x(x)
        out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # (out, in) = sum_kk w^2. Written as a squared L2 norm because the TorchScript
            # exporter constant-folds ReduceL2 (but not ReduceSum), so no weight math stays in the graph.
            kernel_norm = torch.linalg.vector_norm(weight, dim=(2, 3))
            weight_energy = kernel_norm * kernel_norm
            demod = torch.rsqrt(F.linear(style.pow(2), weight_energy) + self.eps)  # (b, out)
            out = out * demod[:, :, None, None]
        return out


class StyleConv(nn.Module):
    """Modulated 3x3 conv * sqrt(2) + weighted noise + bias, then LeakyReLU(0.2).

    x: (b, in, h, w); style: (b, num_style_feat); noise: (1, 1, H, W) with
    H, W the output size (2h, 2w when upsampling). Returns (b, out, H, W).
    """

    def __init__(self, in_channels, out_channels, num_style_feat, upsample=False, unfused=False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat,
                                              demodulate=True, upsample=upsample, unfused=unfused)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x, style, noise):
        out = self.modulated_conv(x, style) * 2**0.5
        out = out + self.weight * noise
        out = out + self.bias
        return F.leaky_relu(out, LRELU_SLOPE)


class ToRGB(nn.Module):
    """Modulated 1x1 conv (no demodulation) to 3 RGB channels, plus bias.

    x: (b, in, h, w); style: (b, num_style_feat). If ``skip`` (b, 3, h/2, w/2)
    is given it is bilinearly upsampled x2 and added. Returns (b, 3, h, w).
    """

    def __init__(self, in_channels, num_style_feat, unfused=False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False, unfused=unfused)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + _upsample2x(skip)
        return out


class ConstantInput(nn.Module):
    """Learned constant (1, c, size, size), expanded to the batch size."""

    def __init__(self, num_channels, size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channels, size, size))

    def forward(self, batch_size):
        return self.weight.expand(batch_size, -1, -1, -1)


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by SFT conditions.

    forward(latent, conditions): latent (b, num_latent, num_style_feat) are
    per-layer w codes (used as is, no style MLP); conditions is one
    (scale, shift) pair per resolution 8..out_size, each (b, c_sft, r, r).
    With ``sft_half`` only the second half of the channels gets
    ``x * scale + shift``. Returns the RGB image (b, 3, out_size, out_size).
    The stored noise buffers are always used (deterministic).
    """

    def __init__(self, out_size, num_style_feat=512, num_mlp=8, channel_multiplier=2, narrow=1,
                 sft_half=True, unfused=False):
        super().__init__()
        channels = _stylegan_channels(channel_multiplier, narrow)
        self.sft_half = sft_half
        self.log_size = int(math.log(out_size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        # Kept for checkpoint compatibility; unused because the encoder outputs w directly.
        mlp = [NormStyleCode()]
        for _ in range(num_mlp):
            mlp += [nn.Linear(num_style_feat, num_style_feat), nn.LeakyReLU(LRELU_SLOPE)]
        self.style_mlp = nn.Sequential(*mlp)

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], num_style_feat, unfused=unfused)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, unfused=unfused)

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(StyleConv(in_channels, out_channels, num_style_feat, upsample=True, unfused=unfused))
            self.style_convs.append(StyleConv(out_channels, out_channels, num_style_feat, unfused=unfused))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, unfused=unfused))
            in_channels = out_channels

        # Registered after style_convs/to_rgbs to keep the checkpoint's key order.
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            res = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise{layer}", torch.zeros(1, 1, res, res))

    def _apply_sft(self, x, scale, shift):
        if self.sft_half:
            kept, modulated = x.chunk(2, dim=1)
            return torch.cat([kept, modulated * scale + shift], dim=1)
        return x * scale + shift

    def forward(self, latent: torch.Tensor, conditions) -> torch.Tensor:
        noises = [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]
        out = self.constant_input(latent.shape[0])
        out = self.style_conv1(out, latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, (scale, shift) in enumerate(conditions):
            i = 2 * level + 1
            out = self.style_convs[2 * level](out, latent[:, i], noises[i])
            out = self._apply_sft(out, scale, shift)
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noises[i + 1])
            skip = self.to_rgbs[level](out, latent[:, i + 2], skip)
        return skip


class ResampleResBlock(nn.Module):
    """Residual block that resizes by ``scale_factor`` (0.5 or 2, bilinear).

    conv3x3 -> LReLU -> resize -> conv3x3 -> LReLU, plus resize -> conv1x1
    (no bias) on the skip path. (b, in, h, w) -> (b, out, h*s, w*s).
    """

    def __init__(self, in_channels, out_channels, scale_factor):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = scale_factor

    def _resize(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x):
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        out = F.leaky_relu(self.conv2(self._resize(out)), LRELU_SLOPE)
        return out + self.skip(self._resize(x))


def _sft_branch(channels, out_channels):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(LRELU_SLOPE),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1 'clean': U-Net encoder + StyleGAN2 decoder with SFT.

    Configured as GFPGAN v1.4 (input_is_latent=True, different_w=True; both
    are fixed here). forward(x): x is (b, 3, out_size, out_size) float32, RGB,
    in [-1, 1] (pixel / 127.5 - 1) and the result is the restored face,
    (b, 3, out_size, out_size), RGB, nominally [-1, 1] (not clamped; GFPGANer
    clamps to [-1, 1]). Equals the original ``forward(x, return_rgb=False,
    randomize_noise=False)[0]``. The intermediate ``toRGB`` heads exist only
    for checkpoint compatibility and are not evaluated.
    """

    def __init__(self, out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, narrow=1,
                 sft_half=True, unfused_modulation=False):
        super().__init__()
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log(out_size, 2))
        self.num_latent = self.log_size * 2 - 2
        channels = _stylegan_channels(channel_multiplier, narrow * 0.5)  # the U-Net uses half width

        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = channels[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResampleResBlock(in_channels, channels[2 ** (i - 1)], 0.5))
            in_channels = channels[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)

        self.conv_body_up = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResampleResBlock(in_channels, channels[2**i], 2))
            in_channels = channels[2**i]

        self.toRGB = nn.ModuleList(nn.Conv2d(channels[2**i], 3, 1) for i in range(3, self.log_size + 1))
        self.final_linear = nn.Linear(channels[4] * 4 * 4, self.num_latent * num_style_feat)

        self.stylegan_decoder = StyleGAN2DecoderSFT(out_size, num_style_feat, num_mlp, channel_multiplier,
                                                    narrow, sft_half, unfused=unfused_modulation)

        sft_channels = (lambda c: c) if sft_half else (lambda c: 2 * c)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            c = channels[2**i]
            self.condition_scale.append(_sft_branch(c, sft_channels(c)))
            self.condition_shift.append(_sft_branch(c, sft_channels(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, 512, 512) RGB in [-1, 1] -> restored (b, 3, 512, 512) RGB, ~[-1, 1]."""
        feat = F.leaky_relu(self.conv_body_first(x), LRELU_SLOPE)
        unet_skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            unet_skips.append(feat)
        feat = F.leaky_relu(self.final_conv(feat), LRELU_SLOPE)

        latent = self.final_linear(feat.flatten(1)).view(-1, self.num_latent, self.num_style_feat)

        conditions = []
        for block, unet_skip, to_scale, to_shift in zip(self.conv_body_up, reversed(unet_skips),
                                                        self.condition_scale, self.condition_shift):
            feat = block(feat + unet_skip)
            conditions.append((to_scale(feat), to_shift(feat)))
        return self.stylegan_decoder(latent, conditions)


def build_gfpgan_v14(unfused_modulation: bool = False) -> nn.Module:
    """Build the GFPGAN v1.4 generator in eval mode (weights not loaded).

    Load ``GFPGANv1.4.pth['params_ema']`` with ``load_state_dict(strict=True)``.
    The model maps (b, 3, 512, 512) float32 RGB in [-1, 1] to the restored
    (b, 3, 512, 512) RGB image, nominally [-1, 1]. ``unfused_modulation=True``
    computes each modulated conv with a static weight (same state_dict, same
    result up to float rounding), which allows a dynamic batch axis in ONNX.
    """
    model = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, narrow=1,
                          sft_half=True, unfused_modulation=unfused_modulation)
    return model.eval()
