"""SimSwap's identity encoder ``netArc``: IR-SE ResNet-101 (``arcface_model/arcface_checkpoint.tar``).

The published file is a whole pickled module (``torch.save(model)`` of SimSwap's
``models.arcface_models.ResNet``), not a state_dict. ffkit reads it with those classes replaced
by empty stubs (``checkpoint_format="pickled_module"``): nothing in the file runs, and a pickle
naming any other global is refused. Copies from before 2023-04-25 are foamliu's training dict
``{'model': DataParallel(ResNet), 'metric_fc': ..., 'optimizer': SGD, ...}`` (legacy format);
a plain state_dict of the same keys is accepted too.

SimSwap's scripts align the source face to the swapper's crop (224 with the ``simswap_224`` pose
templates, 512 with ``ffhq_512``), ImageNet-normalise it and resize it to 112 with nearest
sampling (``F.interpolate`` default): rows/columns ``(i * S) // 112`` of the S-pixel crop. The
runtime does exactly that (``source_crop="swapper"``: the paired swapper's template and crop
size, then that nearest resize); ``crop_size``/``template`` below (112 with the 224 templates,
every second pixel of the 224 crop) are what a lone embedding, without a swapper, uses. The embedding feeds simswap_224/512
after L2 normalisation (``identity_space``).
"""

from ..spec import PixelFormat, Recipe, TensorSpec, Tolerance

#: SimSwap: ToTensor (/255, RGB) then Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
#: written here in pixel units (x 255).
PIXELS = PixelFormat(colour="RGB", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))

#: The globals of the published file (and of the pre-2023 training dict), as listed with
#: pickletools in the manifest's ``checkpoint_layout_note``; each is read as an empty stub.
_NN = ("conv.Conv2d", "batchnorm.BatchNorm2d", "batchnorm.BatchNorm1d", "activation.PReLU", "activation.Sigmoid",
       "pooling.MaxPool2d", "pooling.AdaptiveAvgPool2d", "dropout.Dropout", "linear.Linear", "container.Sequential")
PICKLED_CLASSES = (
    *(f"models.arcface_models.{c}" for c in ("ResNet", "IRBlock", "SEBlock")),
    *(f"torch.nn.modules.{c}" for c in _NN),
    *(f"models.{c}" for c in ("ResNet", "IRBlock", "SEBlock", "ArcMarginModel")),
    "torch.nn.parallel.data_parallel.DataParallel", "torch.optim.sgd.SGD",
)

RECIPES = (
    Recipe(
        name="simswap_arcface", family="simswap_arcface", role="embedder",
        summary="SimSwap identity encoder (IR-SE-101 ArcFace, 512-d; feeds simswap_224/512)",
        inputs=(TensorSpec("input", ("N", 3, 112, 112),
                           "aligned source face, RGB, ImageNet-normalised ((pixel/255 - mean) / std), "
                           "nearest-resized to 112x112, NCHW", sample=("uniform", -2.1, 2.6)),),
        outputs=(TensorSpec("embedding", ("N", 512), "raw 512-d identity feature; L2-normalise it for "
                                                     "simswap_224/512's source_latent"),),
        architecture="ffkit.recipes.simswap_arcface.arch:build_simswap_arcface",
        tolerance=Tolerance(atol=5e-5, rtol=5e-5),
        pixels=PIXELS, crop_size=112, template="simswap_224",
        sample_dims={"N": 1}, alt_dims={"N": 2},
        fill_overrides=(
            (r"^layer\d\.\d+\.bn2\.weight$", "uniform", 0.1, 0.3),
            (r"(^|\.)prelu\.weight$", "uniform", 0.1, 0.3),
            (r"\.se\.fc\.1\.weight$", "uniform", 0.1, 0.3),
            (r"\.se\.fc\.2\.weight$", "scaled_normal", 8, 0),
        ),
        num_params=52_193_215,
        checkpoint_format="pickled_module", pickled_classes=PICKLED_CLASSES,
        identity_space="simswap_arcface", source_crop="swapper",
    ),
)
