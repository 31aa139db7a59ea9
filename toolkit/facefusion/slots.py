"""FaceFusion 3.x's model slots that ffkit's recipes fill, read from FaceFusion 3.8.1's
``create_static_model_set`` of each module (the ``.assets/models/<file>`` it loads per slot).

A slot's file name is fixed: FaceFusion loads ``inswapper_128.onnx`` whatever its precision, so
an INT8 (or any other) variant is written under the slot's name. Where FaceFusion has a twin
slot for float16 (``inswapper_128_fp16``, ``real_esrgan_x2_fp16``, ``real_esrgan_x4_fp16``), an
fp16 file is written under the twin's name instead. Torch-free plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Slot", "SLOTS", "NO_SLOT", "slot_for", "file_name"]


@dataclass(frozen=True)
class Slot:
    """One FaceFusion model slot ffkit fills.

    Attributes:
        key: FaceFusion's model name (``--face-swapper-model inswapper_128``...).
        module: the FaceFusion module whose model set holds it.
        stem: the file name without ``.onnx`` (``retinaface_10g`` for the ``retinaface`` slot).
        recipes: the ffkit recipes that fill it, preferred first.
        wrapper: how ffkit's file is adapted to the slot's I/O (a key of
            :data:`ffkit.toolkit.facefusion.wrappers.WRAPPERS`; ``copy``: the file as it is).
        fp16_stem: the stem of FaceFusion's float16 twin slot, or None.
        note: what FaceFusion expects of the file, in a few words.
    """

    key: str
    module: str
    stem: str
    recipes: tuple[str, ...]
    wrapper: str = "copy"
    fp16_stem: str | None = None
    note: str = ""


SLOTS: tuple[Slot, ...] = (
    Slot("retinaface", "face_detector", "retinaface_10g", ("retinaface_resnet50", "retinaface_mobilenet0.25"),
         "retinaface_strides", note="9 outputs: score / box / 5 points per stride 8, 16, 32, 2 anchors, "
                                    "of (BGR - 127.5) / 128"),
    Slot("arcface", "face_recognizer", "arcface_w600k_r50",
         ("arcface_iresnet50", "arcface_iresnet100", "arcface_iresnet18"),
         note="input RGB x / 127.5 - 1, 112 px, 512-d identity (an IResNet-18/100 takes the r50's place)"),
    Slot("2dfan4", "face_landmarker", "2dfan4", ("fan_2dfan4",), "fan_points",
         note="BGR / 255 crop; outputs 68 x (x, y, score) in 64-px heatmap units, then the heatmaps"),
    Slot("bisenet_resnet_18", "face_masker", "bisenet_resnet_18", ("bisenet_faceparsing",),
         note="RGB ImageNet-normalised 512 px; 19 region logits"),
    Slot("inswapper_128", "processors/face_swapper", "inswapper_128", ("inswapper_128",),
         fp16_stem="inswapper_128_fp16",
         note="target RGB / 255, source = embedding . emap / |embedding|; emap = the LAST initializer"),
    Slot("simswap_unofficial_512", "processors/face_swapper", "simswap_unofficial_512", ("simswap_512",),
         "simswap_inputs", note="inputs named target (RGB / 255) and source (512-d)"),
    Slot("gfpgan_1.4", "processors/face_enhancer", "gfpgan_1.4", ("gfpgan_v1.4",),
         note="input RGB (x / 255 - 0.5) / 0.5, 512 px"),
    Slot("real_esrgan_x2", "processors/frame_enhancer", "real_esrgan_x2", ("realesrgan_x2plus",),
         fp16_stem="real_esrgan_x2_fp16", note="input RGB / 255 tiles of 256 px"),
    Slot("real_esrgan_x4", "processors/frame_enhancer", "real_esrgan_x4", ("realesrgan_x4plus",),
         fp16_stem="real_esrgan_x4_fp16", note="input RGB / 255 tiles of 256 px"),
)

#: ffkit recipes with no FaceFusion 3.8.1 slot, and why (``ffkit package`` says so and skips them).
NO_SLOT = {
    "simswap_224": "FaceFusion's SimSwap slots are simswap_256 (256 px, ImageNet-normalised) and "
                   "simswap_unofficial_512; none takes a 224 px generator",
    "simswap_arcface": "FaceFusion has no slot for SimSwap's own ArcFace: it converts arcface_w600k_r50's "
                       "embedding with crossface_simswap.onnx",
}


def slot_for(recipe_name: str) -> Slot | None:
    """The slot ``recipe_name`` fills, or None."""
    return next((slot for slot in SLOTS if recipe_name in slot.recipes), None)


def file_name(slot: Slot, precision: str) -> str:
    """The file FaceFusion loads for ``slot`` given the artifact's ``precision`` (fp32/fp16/int8):
    the fp16 twin's name for an fp16 file where FaceFusion has one, else the slot's own."""
    stem = slot.fp16_stem if precision == "fp16" and slot.fp16_stem else slot.stem
    return f"{stem}.onnx"
