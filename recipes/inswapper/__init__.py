"""inswapper_128: ReSwapper's ``StyleTransferModel``, a drop-in for insightface ``inswapper_128.onnx``.

Published files: ``reswapper-*.pth``, plain state_dicts. The artifact may carry the 512x512
``emap`` (``ffkit export inswapper_128 CKPT --emap EMAP.npy|inswapper.onnx``) as its last initializer.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: insightface INSwapper: blobFromImage(scale 1/255, mean 0, swapRB) -> RGB in [0, 1].
PIXELS = PixelFormat(colour="RGB", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))

RECIPES = (
    Recipe(
        name="inswapper_128", family="inswapper", role="swapper",
        summary="inswapper_128 / ReSwapper face swapper (128x128, emap latent)",
        inputs=(TensorSpec("target", ("N", 3, 128, 128), "aligned target face (insightface 128 template), RGB in [0,1]",
                           sample=("uniform", 0.0, 1.0)),
                TensorSpec("source", ("N", 512), "latent: normalised ArcFace embedding @ emap, L2-normalised",
                           sample=("unit_norm",))),
        outputs=(TensorSpec("output", ("N", 3, 128, 128), "swapped face RGB in [0,1]"),),
        architecture="ffkit.recipes.inswapper.arch:build_inswapper_128",
        tolerance=Tolerance(atol=1e-4, rtol=1e-4),
        # measured on the seed-0 filled weights (harsher than trained ones), onnxruntime 1.32 CPU,
        # sample inputs and 8 held-out synthetic photos; INT8 calibrated on 16 others
        budgets={"fp16": AccuracyBudget("psnr", 50.0, "PSNR over [0,1] vs FP32; measured 65.8 dB"),
                 "int8": AccuracyBudget("psnr", 22.0, "PSNR over [0,1] vs FP32; measured 26.3 dB worst (held-out "
                                                      "images, minmax), 30.3-31.6 dB on sample inputs")},
        pixels=PIXELS, output_pixels=PIXELS, crop_size=128, template="arcface_128",
        fill_overrides=((r"^style_blocks\.\d+\.style[12]\.weight$", "normal", 0, 1),),
        finalize="ffkit.recipes.inswapper.emap:attach_emap",
        identity_space="insightface_arcface",  # insightface's w600k_r50, an arcface_torch IResNet-50
    ),
)
