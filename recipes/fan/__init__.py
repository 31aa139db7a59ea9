"""2D-FAN-4 68-point face landmarker: 1adrianb/face-alignment ``FAN(num_modules=4)``.

Published file: ``2DFAN4-11f355bf06.pth.tar``, a plain state_dict of FAN(4) (no prefix, no
wrapper), loaded strictly. Also accepted: the 2017 layout ``{'state_dict': {'module.' + key}}``
(the wrapper and the prefix are stripped), files without BatchNorm ``num_batches_tracked``, and
the TorchScript archives face_alignment shipped from 2020-12 to 2026-04
(``2DFAN4-cd938726ad.zip``, ``2DFAN4_1.6-c827573f02.zip``, ``2DFAN4_1.5-a60332318a.zip``), whose
tensors are read without running the archive's code (:mod:`ffkit.recipes.torchscript_archive`).

The network takes face_alignment's 256x256 crop of a detector box (RGB, pixel/255) and gives the
last stack's 68 heatmaps at 64x64; :mod:`ffkit.runtime.landmarker` crops and decodes exactly as
face_alignment does (``utils.crop``, ``get_preds_fromhm``).
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: face_alignment api.py: ``crop(...).transpose((2, 0, 1)).astype(np.float32) / 255.0`` of an RGB image.
PIXELS = PixelFormat(colour="RGB", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))

#: Side of the network input (face_alignment ``CROP_RESOLUTION``) and of the heatmaps.
CROP_SIZE = 256
HEATMAP_SIZE = 64

INPUTS = (TensorSpec("input", ("N", 3, CROP_SIZE, CROP_SIZE),
                     "face crop 256x256 made by face_alignment utils.crop from the detector box (centre/scale "
                     "rule in ffkit.runtime.landmarker), RGB, pixel/255 in [0,1], NCHW, no mean/std",
                     sample=("uniform", 0.0, 1.0)),)
OUTPUTS = (TensorSpec("heatmaps", ("N", 68, HEATMAP_SIZE, HEATMAP_SIZE),
                      "raw heatmaps of the LAST (4th) stack, one per 68-point (iBUG 300-W) landmark at 1/4 of "
                      "the crop resolution; decode with argmax and the +-0.25 shift (get_preds_fromhm)"),)

#: Judged where the user looks: the points the heatmaps decode to (``landmark_nme``: mean distance of
#: a decoded point from the FP32 one over the heatmap width, i.e. a fraction of the crop side; see
#: ffkit.validation.landmark_metrics). Measured on the seed-0 filled weights (random weights: flat
#: peaks, a harsher test than trained ones), onnxruntime 1.32 CPU, against the FP32 export on the
#: sample inputs (N=1, N=2) and 8 held-out synthetic photos; INT8 calibrated on 6 others.
#:
#: INT8 search (landmark_nme on sample inputs / held-out photos; QDQ U8S8, per-channel, minmax unless
#: said; kept nodes store int8 weights as the stage does): plain 0.135 / 0.077, percentile 0.153 /
#: 0.068, entropy 0.156 / 0.165 (heatmaps rel L2 0.135), per-tensor 0.156 / 0.073, symmetric
#: activations 0.134 / 0.075, Concat in float 0.152 / 0.067, 32 calibration photos 0.100 / 0.069
#: (percentile 0.121 / 0.070); in float: ``l3`` 0.074 / 0.058, ``l3`` + ``conv_last3`` 0.053 / 0.034, +
#: ``top_m_3`` (14 nodes, same size and speed) 0.045 / 0.035 (percentile on 32 photos 0.036 / 0.035), +
#: hourglass ``m3`` 0.036 / 0.036, no Conv output quantized 0.066 / 0.051. It misses even without
#: quantized activations: int8 weights alone (every activation float: the floor --auto-exclude
#: approaches) give 0.029 / 0.027, one quantized conv (``conv1`` only, the rest float32) 0.020 / 0.012;
#: only hourglass ``m3`` quantized (weights and activations; size ratio 0.84, no real INT8 left) 0.014
#: / 0.008. Why: each seed-0 heatmap's maximum is a median 0.006-0.013 (10th percentile 0.0013) above
#: the best point more than 1 px away, on maps of std 0.73, while 8 bits over the output's range alone
#: are steps of ~0.02, and the four stacks amplify rounding anywhere (heatmaps rel L2: int8 weights
#: alone 0.017, plain INT8 0.023). Trained weights have sharp peaks, far above their runner-up, that
#: such errors do not move.
BUDGETS = {
    "fp16": AccuracyBudget("landmark_nme", 0.002, "mean decoded-point error over the heatmap width vs FP32; "
                                                  "measured 0 on the sample inputs (no point moves) and 7e-5 on "
                                                  "held-out photos (0.2% of points jump 1-2 heatmap px to a near-tie "
                                                  "peak); heatmaps rel L2 5.8e-4"),
    "int8": AccuracyBudget("landmark_nme", 0.01, "mean decoded-point error over the heatmap width vs FP32 (0.64 "
                                                 "heatmap px, 2.6 crop px); the seed-0 weights MISS it: 0.135 / "
                                                 "0.153 (minmax / percentile) on the sample inputs, 0.077 / 0.068 on "
                                                 "held-out photos, a third to a half of the points jumping to "
                                                 "another near-maximum (heatmaps rel L2 0.023); no "
                                                 "INT8 setting meets it (best: the last stack's top_m_3/conv_last3/l3 "
                                                 "in float, 0.045 / 0.035; int8 weights with float activations "
                                                 "0.029 / 0.027; one quantized conv 0.020 / 0.012; see the comment "
                                                 "above): random-weight peaks are a median 0.006-0.013 above their "
                                                 "runner-up, 8-bit steps ~0.02. Plain INT8: size ratio 0.26, 1.5x "
                                                 "the FP32 speed (batch 1, 2-core Xeon with AVX2, AVX-512F, "
                                                 "AVX-512 VNNI, AMX)"),
}

RECIPES = (
    Recipe(
        name="fan_2dfan4", family="fan", role="landmarker",
        summary="2D-FAN-4 68-point face landmarks (256x256 crop -> 68 heatmaps 64x64)",
        inputs=INPUTS, outputs=OUTPUTS,
        architecture="ffkit.recipes.fan.arch:build_fan",
        tolerance=Tolerance(atol=1e-4, rtol=1e-4),
        budgets=BUDGETS, pixels=PIXELS, crop_size=CROP_SIZE,
        sample_dims={"N": 1}, alt_dims={"N": 2},
        fill_overrides=(
            (r"^bn_end\d\.running_var$", "uniform", 10, 20),
            (r"^(m\d\..*|top_m_\d)\.conv[123]\.weight$", "scaled_normal", 0.3, 0),
            (r"^(bl|al)\d\.weight$", "scaled_normal", 0.3, 0),
        ),
        num_params=23_820_176,
        key_prefix="module.", wrappers=("state_dict",),   # the 2017 layout, stripped when present
        torchscript_archives=True,
    ),
)
