"""RetinaFace face detectors (biubug6/Pytorch_Retinaface): MobileNet-0.25 and ResNet-50.

Published files: ``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth`` — plain state_dicts whose
keys may carry DataParallel's ``module.`` prefix (certain for ResNet-50); the loader accepts both
and an optional ``{'state_dict': ...}`` wrapper, as ``detect.py`` does.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

ARCH = "ffkit.recipes.retinaface.arch:build_retinaface"

#: detect.py: BGR float image minus the per-channel mean, no scaling.
PIXELS = PixelFormat(colour="BGR", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))

#: Prior-box layout of cfg_mnet / cfg_re50 (both identical).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)

INPUTS = (TensorSpec("input", ("N", 3, "H", "W"),
                     "BGR image as float32 minus (104,117,123) (B,G,R), no scaling, NCHW; any H, W",
                     sample=("uniform", -120.0, 130.0)),)
OUTPUTS = (
    TensorSpec("loc", ("N", "A", 4), "box regression deltas (decode with priors, variances 0.1/0.2)"),
    TensorSpec("conf", ("N", "A", 2), "softmax over [background, face]"),
    TensorSpec("landms", ("N", "A", 10), "5-point landmark deltas"),
)

#: Measured on the seed-0 filled weights (random weights: a harsher test than trained ones),
#: ffkit 0.1 / onnxruntime 1.32 CPU, against the FP32 export on the recipe's sample inputs at
#: 320x320 and 480x640 and on 8 held-out synthetic photos; INT8 calibrated on 16 others.
BUDGETS = {
    "fp16": AccuracyBudget("max_abs", 1e-2, "every head; measured max abs 2.0e-3 (mobilenet0.25) / 2.4e-3 "
                                            "(resnet50), outputs O(1): ~4x margin"),
    "int8": AccuracyBudget("rel_l2", 0.15, "relative L2 of each head; measured 0.091 / 0.077 (minmax), 0.104 / "
                                           "0.117 (percentile) worst over sample inputs and held-out images"),
}


def _recipe(name: str, backbone: str, overrides: tuple) -> Recipe:
    return Recipe(
        name=name, family="retinaface", role="detector",
        summary=f"RetinaFace {backbone} face detector: boxes, scores and 5 landmarks",
        inputs=INPUTS, outputs=OUTPUTS,
        architecture=ARCH, arch_kwargs={"backbone": backbone},
        tolerance=Tolerance(atol=1e-4, rtol=1e-4), budgets=BUDGETS,
        key_prefix="module.", wrappers=("state_dict",), pixels=PIXELS,
        sample_dims={"N": 1, "H": 320, "W": 320}, alt_dims={"N": 2, "H": 480, "W": 640},
        fill_overrides=overrides,
    )


RECIPES = (
    _recipe("retinaface_mobilenet0.25", "mobilenet0.25", (
        (r"^body\.stage1\.0\.1\.running_var$", "uniform", 4000, 6000),
        (r"^body\.stage\d\.\d+\.[14]\.weight$", "uniform", 1.3, 1.5),
        (r"^ClassHead\.\d\.conv1x1\.weight$", "scaled_normal", 4, 0),
    )),
    _recipe("retinaface_resnet50", "resnet50", (
        (r"^body\.bn1\.running_var$", "uniform", 4000, 6000),
        (r"^body\.layer\d\.\d+\.bn[12]\.weight$", "uniform", 1.3, 1.5),
        (r"^body\.layer\d\.\d+\.bn3\.weight$", "uniform", 0.2, 0.4),
        (r"^ClassHead\.\d\.conv1x1\.weight$", "scaled_normal", 4, 0),
    )),
)
