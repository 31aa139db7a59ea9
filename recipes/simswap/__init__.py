"""SimSwap generators (neuralchen/SimSwap ``Generator_Adain_Upsample``, deep=False): 224 and 512.

Published files: ``checkpoints/people/latest_net_G.pth`` (224) and ``checkpoints/512/550000_net_G.pth``
(512), plain state_dicts of netG.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: SimSwap test scripts: RGB, pixel/255 in [0, 1]; output likewise.
PIXELS = PixelFormat(colour="RGB", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


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
        budgets={"fp16": AccuracyBudget("psnr", 40.0, "PSNR over [0,1] vs FP32"),
                 "int8": AccuracyBudget("psnr", 25.0, "PSNR over [0,1] vs FP32")},
        pixels=PIXELS, output_pixels=PIXELS, crop_size=size, template=template,
        fill_overrides=((r"^BottleNeck\.\d+\.style[12]\.linear\.weight$", "normal", 0, 0.5),),
        fp16_keep_float32=("ReduceMean", "Sqrt", "Reciprocal", "Div", "Pow"),
    )


RECIPES = (_recipe(224, "simswap_224"), _recipe(512, "ffhq_512"))
