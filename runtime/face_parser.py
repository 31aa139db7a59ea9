"""Face parsing with a BiSeNet artifact: per-pixel class labels of an aligned face crop.

As FaceFusion's ``create_region_mask`` runs its parser: the crop (``H x W x 3`` uint8 BGR) is
resized to the recipe's ``crop_size`` (512, bilinear ``cv2.resize``), converted as the recipe's
pixels say (RGB, ``(p/255 - mean) / std`` with ImageNet's mean/std), run, and the label is the
argmax over the 19 logits (:data:`ffkit.runtime.face_masks.CLASS_NAMES`). The region mask at the
crop's own size comes from :meth:`FaceParser.region_mask`.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.spec import Recipe

from .face_masks import DEFAULT_REGIONS, FEATHER_SIGMA, crop_region_mask
from .sessions import run_session

__all__ = ["FaceParser"]


class FaceParser:
    """A face-parser session with its input size and pixel format.

    Args:
        session: onnxruntime session of a ``bisenet_faceparsing`` artifact (input
            ``N x 3 x H x W``, output ``N x 19 x H x W`` logits), made by
            :func:`ffkit.runtime.sessions.create_session` or a ``SessionPool``.
        recipe: its recipe (pixel format, ``crop_size``).
        resize: resize every crop to ``crop_size x crop_size`` first (the size the model was
            trained and is run at by test.py, facexlib and FaceFusion); False feeds crops at their
            own size (the export takes any H, W >= 32; multiples of 32 recommended).
    """

    def __init__(self, session: ort.InferenceSession, recipe: Recipe, *, resize: bool = True):
        if recipe.role != "parser":
            raise ValueError(f"{recipe.name} is not a face parser")
        self.session = session
        self.recipe = recipe
        self.pixels = recipe.pixels
        self.size = int(recipe.crop_size) if resize and recipe.crop_size else None
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def network_input(self, crop: np.ndarray) -> np.ndarray:
        """``1 x 3 x S x S`` model input of one ``H x W x 3`` uint8 BGR crop (``S`` the network
        size, or the crop's ``H x W`` without resizing), in the session's float type."""
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"FaceParser expects H x W x 3 uint8 BGR crops, got {crop.dtype} {crop.shape}")
        if self.size is not None and crop.shape[:2] != (self.size, self.size):
            crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return self.pixels.to_tensor(crop).astype(self.input_dtype, copy=False)

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """``N x 19 x S x S`` float32 logits of ``N x H x W x 3`` (or one ``H x W x 3``) uint8 BGR
        crops, run one at a time (fixed-batch files work too)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        outs = [np.asarray(run_session(self.session, {self.input_name: self.network_input(c)})[self.output_name],
                           dtype=np.float32) for c in crops]
        return np.concatenate(outs) if outs else np.zeros((0, 19, 0, 0), np.float32)

    def parse(self, crops: np.ndarray) -> np.ndarray:
        """``N x S x S`` uint8 class labels 0..18 (argmax of :meth:`logits`; ties go to the
        lower class) of ``N x H x W x 3`` (or one ``H x W x 3``) uint8 BGR crops; ``S x S`` is the
        network size (512), or the crops' own ``H x W`` with ``resize=False``."""
        return self.logits(crops).argmax(axis=1).astype(np.uint8)

    def region_mask(self, crop: np.ndarray, names: str | Iterable[str] = DEFAULT_REGIONS,
                    sigma: float = FEATHER_SIGMA) -> np.ndarray:
        """FaceFusion's region mask of one ``H x W x 3`` uint8 BGR crop: its labels' ``names``
        regions, resized back to ``H x W`` (bilinear) and feathered
        (:func:`~ffkit.runtime.face_masks.crop_region_mask`); ``H x W`` float32 in [0, 1]."""
        labels = self.parse(crop)[0]
        return crop_region_mask(labels, names, size=(crop.shape[1], crop.shape[0]), sigma=sigma)
