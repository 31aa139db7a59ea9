"""Face restoration with a GFPGAN artifact (facexlib ``FaceRestoreHelper`` alignment)."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.spec import Recipe

from .geometry import paste_back, paste_region, warp_face
from .templates import GFPGAN_BORDER_VALUE, gfpgan_norm_matrix

__all__ = ["Enhancer"]

Region = tuple[int, int, int, int]


class Enhancer:
    """A GFPGAN session: align to the FFHQ 512 template (LMedS, gray border as facexlib),
    restore, blend with the unrestored crop, paste back with the feathered mask.

    Args:
        session: onnxruntime session of a ``gfpgan_*`` artifact (``1 x 3 x 512 x 512`` in/out).
        recipe: its recipe (pixel formats: RGB, (p - 127.5) / 127.5; output clamped).
    """

    def __init__(self, session: ort.InferenceSession, recipe: Recipe):
        self.session = session
        self.recipe = recipe
        self.crop_size = int(recipe.crop_size)
        self.pixels = recipe.pixels
        self.output_pixels = recipe.output_pixels
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def enhance_crop(self, frame: np.ndarray, landmarks: np.ndarray, blend: float = 1.0
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Restored face ``(512 x 512 x 3 uint8 BGR, 2 x 3 frame -> crop matrix)``.

        ``blend`` in 0..1 mixes the restored crop with the unrestored one
        (``blend * restored + (1 - blend) * crop``; 1 = fully restored)."""
        m = gfpgan_norm_matrix(landmarks, self.crop_size)
        crop = warp_face(frame, m, self.crop_size, border_value=GFPGAN_BORDER_VALUE)
        x = self.pixels.to_tensor(crop).astype(self.input_dtype, copy=False)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        restored = self.output_pixels.to_pixels(np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0))[0]
        blend = float(min(max(blend, 0.0), 1.0))
        if blend < 1.0:
            restored = cv2.addWeighted(restored, blend, crop, 1.0 - blend, 0.0)
        return restored, m

    def enhance_into(self, frame: np.ndarray, landmarks: np.ndarray, blend: float = 1.0) -> Region | None:
        """Restore the face at ``landmarks`` (``5 x 2``) in ``frame`` (``H x W x 3`` uint8 BGR)
        **in place**; returns the frame box that may have changed, or None."""
        face, m = self.enhance_crop(frame, landmarks, blend)
        region = paste_region(frame.shape, m, self.crop_size)
        if region is not None:
            paste_back(frame, face, m, out=frame)
        return region
