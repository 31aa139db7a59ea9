"""SimSwap generators (neuralchen/SimSwap ``Generator_Adain_Upsample``, deep=False): 224 and 512.

Published files: ``checkpoints/people/latest_net_G.pth`` (224) and ``checkpoints/512/550000_net_G.pth``
(512), plain state_dicts of netG.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: SimSwap test scripts: RGB, pixel/255 in [0, 1]; output likewise.
PIXELS = PixelFormat(colour="RGB", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


#: Measured on the seed-0 filled weights (random weights and random AdaIN styles: a harsher test
#: than trained ones), onnxruntime 1.32 CPU, against the FP32 export on sample inputs (N=1, N=2)
#: and 8 held-out synthetic photos; INT8 calibrated on 16 others. Which nodes stay in float32
#: in FP16 (the AdaIN statistics overflow with some weights) is found per checkpoint by
#: ``ffkit quantize --fp16``, not listed here: none overflowed on the seed-0 weights.
BUDGETS = {
    "fp16": AccuracyBudget("psnr", 50.0, "PSNR over [0,1] vs FP32; measured 64.1 / 63.1 dB (224 / 512)"),
    "int8": AccuracyBudget("psnr", 22.0, "PSNR over [0,1] vs FP32; measured 25.5 / 26.9 dB worst (held-out "
                                         "images, minmax), 29.8-31.6 dB on sample inputs; the instance norms "
                                         "amplify the quantization noise of the convs before them"),
}


def _recipe(size: int, template: str) -> Recipe:
    return Recipe(
        name=f"simswap_{size}", family="simswap", role="swapper",
        summary=f"SimSwap {size} face swapper (AdaIN generator, normalised ArcFace latent)",
        inputs=(TensorSpec("target", ("N", 3, size, size), f"aligned target face crop {size}x{size}, RGB in [0,1]",
                           sample=("uniform", 0.0, 1.0)),
                TensorSpec("source_latent", ("N", 512), "identity embedding, L2-normalised", sample=("unit_norm",))),
        outputs=(TensorSpec("output", ("N", 3, size, size), "swapped face RGB in [0,1]"),),
        architecture="ffkit.recipes.simswap.arch:build_simswap", arch_kwargs={"crop_size": size},
        tolerance=Tolerance(atol=1e-4, rtol=1e-4),
        budgets=BUDGETS,
        pixels=PIXELS, output_pixels=PIXELS, crop_size=size, template=template,
        identity_space="simswap_arcface",  # F.normalize of SimSwap's own netArc, not insightface's
        io_aliases={"source_latent": ("source",)},  # FaceFusion names its swappers' inputs source, target
        fill_overrides=((r"^BottleNeck\.\d+\.style[12]\.linear\.weight$", "normal", 0, 0.5),),
    )


RECIPES = (_recipe(224, "simswap_224"), _recipe(512, "ffhq_512"))
