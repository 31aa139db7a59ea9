"""Face swapping with an inswapper_128 or SimSwap artifact, pasted back into the frame.

* inswapper_128 (insightface ``INSwapper.get``): the target face aligned to the ArcFace
  template at 128 px (``arcface_128``), RGB in [0, 1]; the latent is the normalised source
  embedding times the artifact's ``emap``, normalised again.
* SimSwap (``test_wholeimage_swapsingle.py``): the target aligned to SimSwap's template
  (``simswap_224``: best of five pose templates; 512: FFHQ), RGB in [0, 1]; the latent is the
  normalised source embedding.

The swapped crop is pasted back through the inverse transform with insightface's feathered
mask (erode + blur sized to the face), working only inside the face's region of the frame.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ffkit.recipes.inswapper.emap import latent_from_embedding
from ffkit.recipes.spec import Recipe

from .embedder import normalize
from .geometry import paste_back, paste_region, warp_face
from .sessions import run_session
from .templates import norm_matrix

__all__ = ["Swapper"]

Region = tuple[int, int, int, int]


class Swapper:
    """A swapper session with its alignment, latent rule and pixel formats.

    Args:
        session: onnxruntime session with inputs (target ``N x 3 x S x S``, latent ``N x 512``)
            and output ``N x 3 x S x S``, as the recipe lists them.
        recipe: ``inswapper_128``, ``simswap_224`` or ``simswap_512`` (pixel formats, crop size,
            template, input names).
        emap: the ``512 x 512`` float32 emap (inswapper only; see :func:`models.read_emap`).
    """

    def __init__(self, session: ort.InferenceSession, recipe: Recipe, emap: np.ndarray | None = None):
        if recipe.role != "swapper":
            raise ValueError(f"{recipe.name} is not a swapper")
        self.session = session
        self.recipe = recipe
        self.kind = recipe.family  # "inswapper" | "simswap"
        if self.kind == "inswapper" and emap is None:
            raise ValueError("inswapper needs its emap")
        self.emap = None if emap is None else np.asarray(emap, dtype=np.float32)
        self.crop_size = int(recipe.crop_size)
        self.template = recipe.template
        self.pixels = recipe.pixels
        self.output_pixels = recipe.output_pixels
        self.target_name, self.latent_name = recipe.input_names[:2]
        self.output_name = recipe.output_names[0]
        types = {i.name: i.type for i in session.get_inputs()}
        self.input_dtype = np.float16 if types.get(self.target_name) == "tensor(float16)" else np.float32

    def latent(self, embedding: np.ndarray) -> np.ndarray:
        """The ``1 x 512`` float32 latent for a raw source embedding (``(512,)``):
        inswapper ``normed(e) @ emap``, normalised; SimSwap ``normed(e)``."""
        if self.kind == "inswapper":
            return latent_from_embedding(embedding, self.emap)
        return normalize(np.asarray(embedding, dtype=np.float32).reshape(1, 512))

    def matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """``2 x 3`` frame -> crop matrix for this model's template and crop size."""
        return norm_matrix(self.template, landmarks, self.crop_size)

    def swap_crop(self, frame: np.ndarray, landmarks: np.ndarray, latent: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Swap one face: ``(swapped crop S x S x 3 uint8 BGR, 2 x 3 frame -> crop matrix)``.

        Args:
            frame: ``H x W x 3`` uint8 BGR.
            landmarks: ``5 x 2`` frame pixels of the target face.
            latent: ``1 x 512`` float32 from :meth:`latent`.
        """
        m = self.matrix(landmarks)
        crop = warp_face(frame, m, self.crop_size)
        feeds = {self.target_name: self.pixels.to_tensor(crop).astype(self.input_dtype, copy=False),
                 self.latent_name: np.asarray(latent, dtype=self.input_dtype).reshape(1, -1)}
        out = run_session(self.session, feeds, [self.output_name])[self.output_name]
        return self.output_pixels.to_pixels(np.asarray(out, dtype=np.float32))[0], m

    def swap_into(self, frame: np.ndarray, landmarks: np.ndarray, latent: np.ndarray) -> Region | None:
        """Swap the face at ``landmarks`` and paste it into ``frame`` **in place**
        (``H x W x 3`` uint8 BGR). Returns the ``(x0, y0, x1, y1)`` frame box that may have
        changed (exclusive ends; every pixel outside it is untouched), or None."""
        face, m = self.swap_crop(frame, landmarks, latent)
        region = paste_region(frame.shape, m, self.crop_size)
        if region is not None:
            paste_back(frame, face, m, out=frame)
        return region
