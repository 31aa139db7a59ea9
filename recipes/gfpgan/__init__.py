"""GFPGAN v1.4 face restorer: ``GFPGANv1Clean`` as GFPGANer constructs it.

Published file: ``GFPGANv1.4.pth`` = ``{'params_ema': state_dict}`` (``'params'`` as fallback),
with the 15 StyleGAN2 noise buffers the export uses (``randomize_noise=False``: deterministic).

The faithful export folds the batch into grouped convolutions whose weights are computed at run
time, so its batch is fixed at 1 and INT8 cannot quantize those weights per channel.
``--unfused-modulation`` writes the same mathematics as scale -> shared-weight conv -> demodulate:
static weights and a dynamic batch.
"""

from ..spec import AccuracyBudget, ExportOption, PixelFormat, Recipe, TensorSpec, Tolerance

#: GFPGANer: RGB, (pixel/255 - 0.5) / 0.5; the output is read back the same way (clamped to [-1, 1]).
PIXELS = PixelFormat(colour="RGB", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))

RECIPES = (
    Recipe(
        name="gfpgan_v1.4", family="gfpgan", role="enhancer",
        summary="GFPGAN v1.4 face restoration (512x512, StyleGAN2 decoder)",
        inputs=(TensorSpec("input", ("N", 3, 512, 512), "aligned face 512x512 (FFHQ template), RGB in [-1,1]"),),
        outputs=(TensorSpec("image", ("N", 3, 512, 512), "restored face, RGB, nominally [-1,1]"),),
        architecture="ffkit.recipes.gfpgan.arch:build_gfpgan_v14",
        tolerance=Tolerance(atol=1e-3, rtol=1e-3),
        # measured on the seed-0 filled weights (random weights: a harsher test than trained ones),
        # onnxruntime 1.32 CPU, sample input and 8 held-out synthetic photos; INT8 calibrated on 16 others
        budgets={"fp16": AccuracyBudget("psnr", 35.0, "PSNR over [-1,1] vs FP32; measured 64.1 dB on the sample "
                                                      "input, 41.1 dB on held-out images (fused and unfused alike)"),
                 "int8": AccuracyBudget("psnr", 22.0, "PSNR over [-1,1] vs FP32, unfused-modulation export; the "
                                                      "seed-0 weights MISS it: 15.3 / 18.7 dB (minmax / percentile) "
                                                      "on the sample input, 4.4 / 4.6 dB on held-out images, and "
                                                      "--auto-exclude gains <4 dB short of all-float")},
        wrappers=("params_ema", "params"), pixels=PIXELS, output_pixels=PIXELS,
        crop_size=512, template="ffhq_512", dynamic_batch=False,
        sample_dims={"N": 1}, alt_dims={"N": 2},
        fill_overrides=((r"(^|\.)noises\.noise\d+$", "normal", 0, 1),),
        export_options=(ExportOption(
            "unfused_modulation",
            "modulated convs as input scaling + one static-weight conv + demodulation: dynamic batch, INT8-able",
            build_kwargs={"unfused_modulation": True}, dynamic_batch=True, variant="unfused"),),
    ),
)
