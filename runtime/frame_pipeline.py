"""Per-frame face swapping: detect -> select -> align/embed -> swap -> paste back [-> enhance].

Its one job is one frame at a time; reading and writing files, and the worker threads
of a video, are :mod:`ffkit.runtime.swap_files`. Frames are ``H x W x 3`` uint8 **BGR**
(as OpenCV and :mod:`ffkit.runtime.media` give them). A :class:`Pipeline` holds only its
stage objects and options, never per-frame state, so one instance serves every worker
thread of a video; the source face is computed once (:meth:`Pipeline.prepare_source`) and
passed to each :meth:`Pipeline.process_frame` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from ffkit.recipes.errors import FfkitError

from .detector import Detector, DetectParams
from .embedder import Embedder, cosine_similarity, normalize
from .enhancer import Enhancer
from .models import ModelSelection, read_emap
from .retinaface_decode import Detections
from .sessions import SessionPool
from .swapper import Swapper

__all__ = ["SwapOptions", "SourceFace", "FaceRecord", "FrameResult", "Pipeline", "select_faces"]

Region = tuple[int, int, int, int]
SelectMode = Literal["all", "largest", "reference"]


@dataclass(frozen=True)
class SwapOptions:
    """How faces are found, chosen and swapped.

    Attributes:
        detect: detector settings (:class:`DetectParams`).
        select: ``all`` faces, the ``largest`` one, or those matching a ``reference`` face.
        max_faces: at most this many faces per frame, highest score first (0: no limit).
        min_face_size: ignore faces whose box is smaller than this many pixels on its
            shorter side (0: keep all).
        similarity: ``reference`` mode keeps faces whose ArcFace cosine similarity to the
            reference is at least this (-1..1; 0.4 is FaceFusion's default distance 0.6).
        enhance_blend: 0..1 share of the restored face in the result (1 = fully restored).
    """

    detect: DetectParams = DetectParams()
    select: SelectMode = "all"
    max_faces: int = 0
    min_face_size: float = 0.0
    similarity: float = 0.4
    enhance_blend: float = 0.8


@dataclass(frozen=True)
class SourceFace:
    """The identity to paste: raw ``(512,)`` embedding, the swapper's ``1 x 512`` latent, and
    the face it came from (box ``[x1, y1, x2, y2]``, landmarks ``5 x 2``, source pixels)."""

    embedding: np.ndarray
    latent: Optional[np.ndarray]
    box: np.ndarray
    landmarks: np.ndarray


@dataclass
class FaceRecord:
    """One face of a frame: detection (frame pixels), similarity to the reference (or None),
    whether it was swapped, and the frame boxes the swap (and enhance) may have changed."""

    box: list[float]
    score: float
    landmarks: list[list[float]]
    similarity: Optional[float] = None
    swapped: bool = False
    regions: list[Region] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"box": self.box, "score": self.score, "landmarks": self.landmarks,
                "similarity": self.similarity, "swapped": self.swapped,
                "regions": [list(r) for r in self.regions]}


@dataclass
class FrameResult:
    """A processed frame: ``image`` (``H x W x 3`` uint8 BGR; the input object itself when
    nothing was swapped), every detected face, and the union of changed regions."""

    image: np.ndarray
    faces: list[FaceRecord]

    @property
    def swapped(self) -> int:
        return sum(f.swapped for f in self.faces)

    @property
    def regions(self) -> list[Region]:
        return [r for f in self.faces for r in f.regions]

    def changed_mask(self) -> np.ndarray:
        """``H x W`` bool: True inside any region the pipeline may have changed."""
        mask = np.zeros(self.image.shape[:2], dtype=bool)
        for x0, y0, x1, y1 in self.regions:
            mask[y0:y1, x0:x1] = True
        return mask


def select_faces(dets: Detections, *, mode: SelectMode = "all", max_faces: int = 0,
                 min_face_size: float = 0.0, similarities: Optional[np.ndarray] = None,
                 threshold: float = 0.4) -> list[int]:
    """Indices of the faces to swap, in the order to swap them (highest score first).

    Args:
        dets: detections of one frame (sorted by score).
        mode: ``all``; ``largest`` (the one largest box by area); ``reference`` (those with
            ``similarities[i] >= threshold``).
        max_faces: keep at most this many (0: all).
        min_face_size: drop boxes whose shorter side is below this (pixels).
        similarities: ``(K,)`` cosine similarity of each face to the reference (``reference``).
        threshold: minimum similarity in ``reference`` mode.
    """
    wh = dets.boxes[:, 2:4] - dets.boxes[:, 0:2] if len(dets) else np.zeros((0, 2), np.float32)
    keep = [i for i in range(len(dets)) if min(wh[i]) >= min_face_size]
    if mode == "largest":
        keep = [max(keep, key=lambda i: float(wh[i, 0] * wh[i, 1]))] if keep else []
    elif mode == "reference":
        if similarities is None:
            raise ValueError("reference mode needs similarities")
        keep = [i for i in keep if similarities[i] >= threshold]
    elif mode != "all":
        raise ValueError(f"unknown select mode {mode!r}")
    return keep[:max_faces] if max_faces > 0 else keep


def _record(dets: Detections, i: int) -> FaceRecord:
    return FaceRecord(box=[float(v) for v in dets.boxes[i]], score=float(dets.scores[i]),
                      landmarks=[[float(x), float(y)] for x, y in dets.landmarks[i]])


class Pipeline:
    """Detector + embedder (+ swapper, + enhancer) and the :class:`SwapOptions`.

    Build it from a :class:`ModelSelection` with :meth:`from_models`, or from stage objects
    directly (each stage is usable alone).
    """

    def __init__(self, detector: Detector, embedder: Embedder, swapper: Optional[Swapper] = None,
                 enhancer: Optional[Enhancer] = None, options: SwapOptions = SwapOptions()):
        self.detector = detector
        self.embedder = embedder
        self.swapper = swapper
        self.enhancer = enhancer
        self.options = options

    @classmethod
    def from_models(cls, models: ModelSelection, pool: SessionPool,
                    options: SwapOptions = SwapOptions()) -> "Pipeline":
        """Open (or reuse) one session per chosen artifact in ``pool`` and wire the stages."""
        det_recipe = models.detector.recipe
        detector = Detector(pool.get(models.detector.path), pixels=det_recipe.pixels)
        emb = models.embedder.recipe
        align = None
        if emb.source_crop == "swapper" and models.swapper is not None:   # SimSwap: the swapper's crop, resized
            align = (models.swapper.recipe.template, int(models.swapper.recipe.crop_size))
        embedder = Embedder(pool.get(models.embedder.path), pixels=emb.pixels, crop_size=emb.crop_size,
                            template=emb.template, align=align)
        swapper = None
        if models.swapper is not None:
            ref = models.swapper
            emap = read_emap(ref) if ref.recipe.family == "inswapper" else None
            swapper = Swapper(pool.get(ref.path), ref.recipe, emap=emap)
        enhancer = None
        if models.enhancer is not None:
            enhancer = Enhancer(pool.get(models.enhancer.path), models.enhancer.recipe)
        return cls(detector, embedder, swapper, enhancer, options)

    # ---------------------------------------------------------------- identities

    def main_face(self, image: np.ndarray, name: str, what: str) -> tuple[Detections, int]:
        """Detect faces in ``image`` and return ``(detections, index of the largest)``;
        a one-line FfkitError naming ``name`` when there is none."""
        dets = self.detector.detect(image, self.options.detect)
        idx = select_faces(dets, mode="largest", min_face_size=self.options.min_face_size)
        if not idx:
            raise FfkitError(f"{name}: no face found in the {what} image (score threshold "
                             f"{self.options.detect.score_threshold:g}; try a lower --score-threshold)")
        return dets, idx[0]

    def prepare_source(self, image: np.ndarray, name: str = "source") -> SourceFace:
        """The identity of the largest face in ``image`` (``H x W x 3`` uint8 BGR).

        Raises:
            FfkitError: no face (message names ``name``).
        """
        dets, i = self.main_face(image, name, "source")
        emb = self.embedder.embed(image, dets.landmarks[i])
        latent = self.swapper.latent(emb) if self.swapper is not None else None
        return SourceFace(emb, latent, dets.boxes[i].copy(), dets.landmarks[i].copy())

    def prepare_reference(self, image: np.ndarray, name: str = "reference") -> np.ndarray:
        """Normalised ``(512,)`` embedding of the largest face in ``image`` (for ``reference``)."""
        dets, i = self.main_face(image, name, "reference")
        return normalize(self.embedder.embed(image, dets.landmarks[i]))

    # ---------------------------------------------------------------- frames

    def process_frame(self, frame: np.ndarray, source: SourceFace,
                      reference: Optional[np.ndarray] = None) -> FrameResult:
        """Swap the selected faces of one frame.

        Args:
            frame: ``H x W x 3`` uint8 BGR (not modified).
            source: from :meth:`prepare_source`.
            reference: normalised reference embedding (needed when ``options.select`` is
                ``reference``).

        Returns:
            :class:`FrameResult`; its image is ``frame`` itself when no face was swapped, a new
            array otherwise, equal to ``frame`` outside ``result.regions``.
        """
        if self.swapper is None or source.latent is None:
            raise ValueError("this pipeline has no swapper / the source has no latent")
        opts = self.options
        dets = self.detector.detect(frame, opts.detect)
        records = [_record(dets, i) for i in range(len(dets))]
        sims = None
        if opts.select == "reference":
            if reference is None:
                raise ValueError("select='reference' needs a reference embedding")
            sims = np.array([cosine_similarity(self.embedder.embed(frame, lm), reference)
                             for lm in dets.landmarks], dtype=np.float32)
            for rec, s in zip(records, sims):
                rec.similarity = float(s)
        chosen = select_faces(dets, mode=opts.select, max_faces=opts.max_faces,
                              min_face_size=opts.min_face_size, similarities=sims, threshold=opts.similarity)
        if not chosen:
            return FrameResult(frame, records)
        out = frame.copy()
        for i in chosen:
            lm = dets.landmarks[i]
            region = self.swapper.swap_into(out, lm, source.latent)
            records[i].swapped = True
            if region is not None:
                records[i].regions.append(region)
            if self.enhancer is not None:
                region = self.enhancer.enhance_into(out, lm, opts.enhance_blend)
                if region is not None:
                    records[i].regions.append(region)
        return FrameResult(out, records)
