"""BiSeNet face parser (zllrunning/face-parsing.PyTorch): 19 CelebAMask-HQ classes per pixel.

Published files: ``res/cp/79999_iter.pth`` and facexlib's ``parsing_bisenet.pth`` (the same
network and module names): plain state_dicts, no prefix, loaded strictly. yakhyo/face-parsing's
``resnet18.pt`` (retrained, renamed modules, plus an unused ``fc``) loads through the recipe's
``state_dict_adapter`` (:func:`ffkit.recipes.bisenet.yakhyo.from_yakhyo`).

The export is fully convolutional: N, H and W are dynamic (the original exports only at a fixed
size; see :mod:`.arch`). test.py, facexlib and FaceFusion feed 512 x 512 crops.
"""

from ..spec import AccuracyBudget, PixelFormat, Recipe, TensorSpec, Tolerance

#: torchvision ToTensor + Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) on RGB, in pixels.
PIXELS = PixelFormat(colour="RGB", mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
                     std=(0.229 * 255, 0.224 * 255, 0.225 * 255))

NUM_CLASSES = 19

INPUTS = (TensorSpec("input", ("N", 3, "H", "W"),
                     "face crop, RGB, (pixel/255 - (0.485,0.456,0.406)) / (0.229,0.224,0.225), NCHW; any H, W >= 32 "
                     "(multiples of 32 recommended; 512x512 as test.py/facexlib/FaceFusion)"),)
OUTPUTS = (TensorSpec("logits", ("N", NUM_CLASSES, "H", "W"),
                      "per-pixel class logits (no softmax) at the input's H x W; labels = argmax over axis 1 "
                      "(0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye, 6 eye_g, 7 l_ear, 8 r_ear, "
                      "9 ear_r, 10 nose, 11 mouth, 12 u_lip, 13 l_lip, 14 neck, 15 neck_l, 16 cloth, 17 hair, "
                      "18 hat)"),)

#: The user sees the label map (argmax over the 19 logits), which no AccuracyBudget metric
#: expresses; the closest is the relative L2 of the logits, and the notes give the label agreement
#: (fraction of pixels with the FP32 class) measured with it. Measured on the seed-0 filled weights
#: (random weights: their top-1/top-2 logit margins are small, many pixels near-ties, a harsher
#: test of the labels than trained weights), onnxruntime 1.32 CPU, against the simplified FP32
#: export, on the sample inputs (uniform noise in [-1, 1] at 1x256x256 and 2x128x160), 8 held-out
#: synthetic photos and the bundled astronaut photo (centre crops at 512x512); INT8 (QDQ,
#: per-channel) calibrated on 16 other synthetic photos.
BUDGETS = {
    "fp16": AccuracyBudget("rel_l2", 0.005, "relative L2 of the logits vs FP32; measured worst 4.8e-4 (max abs "
                                            "1.2e-3), labels agree on >= 99.9% of pixels (100% where the FP32 "
                                            "top-1/top-2 margin exceeds 0.05): 10x margin. Published weights "
                                            "(79999_iter.pth, docs/real-weights.md), 9 real 512x512 frames: worst "
                                            "4.8e-4, labels agree >= 99.96%, face-mask IoU >= 0.9989"),
    "int8": AccuracyBudget("rel_l2", 0.15, "relative L2 of the logits vs FP32; measured worst (minmax / percentile) "
                                           "0.021 / 0.020 on the sample inputs, 0.028 / 0.038 on held-out photos, "
                                           "0.077 / 0.097 on the astronaut photo; labels agree on >= 97.9%, 95.3%, "
                                           "96.1% of pixels there (99.4-100% where the FP32 margin exceeds 0.05). "
                                           "Noise over the whole pixel range (uniform -2.1..2.6, beyond any image's "
                                           "activations) reaches 0.20 / 0.24 and misses it. Published weights "
                                           "(79999_iter.pth, docs/real-weights.md; minmax, calibrated on 8 real "
                                           "frames, judged on 9 others): 0.031-0.045, labels agree on 95.9-98.3%, "
                                           "face-mask IoU 0.924-0.968. Kept at 0.15: it must hold for the filled "
                                           "weights too"),
}

RECIPES = (
    Recipe(
        name="bisenet_faceparsing", family="bisenet", role="parser",
        summary="BiSeNet (ResNet-18) face parsing, 19 classes (face-parsing.PyTorch / facexlib)",
        inputs=INPUTS, outputs=OUTPUTS,
        architecture="ffkit.recipes.bisenet.arch:build_bisenet", arch_kwargs={"num_classes": NUM_CLASSES},
        tolerance=Tolerance(atol=1e-4, rtol=1e-4), budgets=BUDGETS, pixels=PIXELS, crop_size=512,
        sample_dims={"N": 1, "H": 256, "W": 256}, alt_dims={"N": 2, "H": 128, "W": 160},
        fill_overrides=((r"^cp\.resnet\.layer\d\.\d\.bn2\.weight$", "uniform", 0.1, 0.3),),
        num_params=13_300_416,
        state_dict_adapter="ffkit.recipes.bisenet.yakhyo:from_yakhyo",
    ),
)
