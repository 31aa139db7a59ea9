"""Identity embeddings with an ArcFace artifact, and their comparison."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ffkit.recipes.spec import PixelFormat

from .geometry import warp_face
from .sessions import run_session
from .templates import norm_matrix

__all__ = ["Embedder", "normalize", "cosine_similarity"]


def normalize(embedding: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (``(..., 512)`` float) -> float32 of the same shape."""
    e = np.asarray(embedding, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), np.float32(1e-12))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two ``(512,)`` embeddings, in -1..1 (1 = same direction)."""
    return float(np.dot(normalize(a).ravel(), normalize(b).ravel()))


class Embedder:
    """An ArcFace session with its alignment and pixel format.

    Args:
        session: onnxruntime session of an ``arcface_*`` artifact (``N x 3 x 112 x 112`` in,
            ``N x 512`` out).
        pixels: the recipe's pixel format (RGB, (p - 127.5) / 127.5).
        crop_size, template: the recipe's aligned crop (112, ``arcface_112``).
        align: ``(template, size)`` to align the face with first, then resize the ``size`` crop
            to ``crop_size`` by nearest sampling (rows/columns ``(i * size) // crop_size``, as
            ``F.interpolate`` does): SimSwap's source crop. None: ``template`` at ``crop_size``.
    """

    def __init__(self, session: ort.InferenceSession, *, pixels: PixelFormat, crop_size: int = 112,
                 template: str = "arcface_112", align: tuple[str, int] | None = None):
        self.session = session
        self.pixels = pixels
        self.crop_size = int(crop_size)
        self.template = template
        self.align = align
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def crop(self, frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned face: ``(crop_size x crop_size x 3 uint8 BGR, 2 x 3 frame -> crop matrix)``
        from ``frame`` (``H x W x 3`` uint8 BGR) and 5 landmarks (``5 x 2`` pixels)."""
        if self.align is None:
            m = norm_matrix(self.template, landmarks, self.crop_size)
            return warp_face(frame, m, self.crop_size), m
        template, size = self.align
        m = norm_matrix(template, landmarks, size)
        rows = (np.arange(self.crop_size) * size) // self.crop_size
        crop = warp_face(frame, m, size)[rows][:, rows]
        return np.ascontiguousarray(crop), m * (self.crop_size / size)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) embeddings ``N x 512`` float32 of aligned crops
        (``N x S x S x 3`` uint8 BGR), run one at a time (fixed-batch models work too)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        outs = []
        for crop in crops:
            x = self.pixels.to_tensor(crop).astype(self.input_dtype, copy=False)
            outs.append(np.asarray(run_session(self.session, {self.input_name: x}, [self.output_name])[self.output_name],
                                   dtype=np.float32).reshape(-1))
        return np.stack(outs) if outs else np.zeros((0, 512), np.float32)

    def embed(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Raw ``(512,)`` float32 embedding of the face at ``landmarks`` (``5 x 2``) in
        ``frame`` (``H x W x 3`` uint8 BGR). Normalise with :func:`normalize` to compare."""
        crop, _ = self.crop(frame, landmarks)
        return self.embed_crops(crop[None])[0]
