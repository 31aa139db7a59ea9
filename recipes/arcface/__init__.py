"""ArcFace identity embedders: insightface arcface_torch IResNet-18/50/100 (``backbone.pth``).

Published files are plain state_dicts of the IResNet module, loaded strictly.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: arcface_torch inference: RGB, (pixel/255 - 0.5) / 0.5.
PIXELS = PixelFormat(colour="RGB", mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))

INPUTS = (TensorSpec("input", ("N", 3, 112, 112), "aligned face, RGB, (pixel/255 - 0.5)/0.5 in [-1,1], NCHW"),)
OUTPUTS = (TensorSpec("embedding", ("N", 512), "un-normalised 512-d feature; L2-normalise for matching"),)

#: Measured on the seed-0 filled weights (random weights: a harsher test than trained ones),
#: onnxruntime 1.32 CPU, against the FP32 export on sample inputs (N=1, N=3) and 8 held-out
#: synthetic face-size crops; INT8 calibrated on 16 others.
BUDGETS = {
    "fp16": AccuracyBudget("cosine", 0.9999, "cosine of each embedding to the FP32 one; measured > 0.999999 "
                                             "(rel L2 6e-4..8e-4) for IResNet-18/50/100"),
    "int8": AccuracyBudget("cosine", 0.995, "cosine of each embedding to the FP32 one; measured worst 0.9985 / "
                                            "0.9985 / 0.9979 (IResNet-18/50/100, minmax or percentile)"),
}

OVERRIDES = (
    (r"^layer\d\.\d+\.bn3\.weight$", "uniform", 0.1, 0.3),
    (r"(^|\.)prelu\.weight$", "uniform", 0.1, 0.3),
)


def _recipe(depth: int, atol: float, num_params: int) -> Recipe:
    return Recipe(
        name=f"arcface_iresnet{depth}", family="arcface", role="embedder",
        summary=f"ArcFace IResNet-{depth} identity embedding (512-d)",
        inputs=INPUTS, outputs=OUTPUTS,
        architecture="ffkit.recipes.arcface.arch:build_iresnet", arch_kwargs={"depth": depth},
        tolerance=Tolerance(atol=atol, rtol=1e-4), budgets=BUDGETS, pixels=PIXELS,
        crop_size=112, template="arcface_112", identity_space="insightface_arcface",
        sample_dims={"N": 1}, alt_dims={"N": 3}, fill_overrides=OVERRIDES, num_params=num_params,
    )


#: num_params: the manifests' parameter counts of the published backbone.pth files.
RECIPES = (_recipe(18, 1e-4, 24_025_600), _recipe(50, 1e-4, 43_590_848), _recipe(100, 2e-4, 65_156_160))
