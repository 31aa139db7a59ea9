"""Per-frame face swapping: detect -> [68 landmarks] -> select -> align/embed -> swap ->
[colour match] -> paste back (box and/or parser region mask) [-> restore] [-> frame upscale].

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

from .color_match import match_colors
from .detector import Detector, DetectParams
from .detectors import open_detector
from .embedder import Embedder, cosine_similarity, normalize
from .enhancer import Enhancer
from .face_masks import DEFAULT_REGIONS, box_mask, combine_masks, region_names
from .face_parser import FaceParser
from .frame_enhancer import FrameEnhanceOptions, FrameEnhancer
from .geometry import paste_back, paste_region, warp_face
from .landmarker import Landmarker, landmarks_68_to_5
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
        mask: the paste masks, combined by their minimum: ``box`` (insightface's feathered box,
            the default; alone it is exactly insightface's paste) and/or ``region`` (the parser's
            ``mask_regions``, feathered as FaceFusion does).
        mask_regions: region names for ``region`` (:data:`~ffkit.runtime.face_masks.REGIONS`).
        color_match: match the swapped face's LAB mean/std to the target's inside the mask,
            before the paste (:func:`~ffkit.runtime.color_match.match_colors`).
        landmarks: 5 (the detector's) or 68 (the landmarker's, turned into 5 as FaceFusion does)
            for the alignment of the swap and the restore.
        frame_enhance: how the frame enhancer (when the pipeline has one) tiles and sizes.
    """

    detect: DetectParams = DetectParams()
    select: SelectMode = "all"
    max_faces: int = 0
    min_face_size: float = 0.0
    similarity: float = 0.4
    enhance_blend: float = 0.8
    mask: tuple[str, ...] = ("box",)
    mask_regions: tuple[str, ...] = DEFAULT_REGIONS
    color_match: bool = False
    landmarks: Literal[5, 68] = 5
    frame_enhance: FrameEnhanceOptions = FrameEnhanceOptions()

    def __post_init__(self) -> None:
        unknown = [m for m in self.mask if m not in ("box", "region")]
        if unknown or not self.mask:
            raise FfkitError(f"--mask {','.join(self.mask)}: masks are box and/or region (e.g. box,region)")
        object.__setattr__(self, "mask_regions", region_names(self.mask_regions))
        if self.landmarks not in (5, 68):
            raise FfkitError(f"--landmarks {self.landmarks}: 5 or 68")


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
    landmarks_68: Optional[list[list[float]]] = None

    def as_dict(self) -> dict:
        d = {"box": self.box, "score": self.score, "landmarks": self.landmarks,
             "similarity": self.similarity, "swapped": self.swapped,
             "regions": [list(r) for r in self.regions]}
        if self.landmarks_68 is not None:
            d["landmarks_68"] = self.landmarks_68
        return d


@dataclass
class FrameResult:
    """A processed frame: ``image`` (``H x W x 3`` uint8 BGR; the input object itself when
    nothing was swapped), every detected face, and the union of changed regions."""

    image: np.ndarray
    faces: list[FaceRecord]
    frame_enhanced: bool = False   # the whole frame was upscaled: every pixel may have changed

    @property
    def swapped(self) -> int:
        return sum(f.swapped for f in self.faces)

    @property
    def regions(self) -> list[Region]:
        return [r for f in self.faces for r in f.regions]

    def changed_mask(self) -> np.ndarray:
        """``H x W`` bool: True inside any region the pipeline may have changed (all of it
        after a frame enhancer)."""
        if self.frame_enhanced:
            return np.ones(self.image.shape[:2], dtype=bool)
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
                 enhancer: Optional[Enhancer] = None, options: SwapOptions = SwapOptions(), *,
                 landmarker: Optional[Landmarker] = None, parser: Optional[FaceParser] = None,
                 frame_enhancer: Optional[FrameEnhancer] = None):
        if "region" in options.mask and parser is None:
            raise FfkitError("--mask region needs a face parser (bisenet_faceparsing) in the models folder")
        if options.landmarks == 68 and landmarker is None:
            raise FfkitError("--landmarks 68 needs a landmarker (fan_2dfan4) in the models folder")
        self.detector = detector
        self.embedder = embedder
        self.swapper = swapper
        self.enhancer = enhancer
        self.options = options
        self.landmarker = landmarker
        self.parser = parser
        self.frame_enhancer = frame_enhancer

    @classmethod
    def from_models(cls, models: ModelSelection, pool: SessionPool,
                    options: SwapOptions = SwapOptions()) -> "Pipeline":
        """Open (or reuse) one session per chosen artifact in ``pool`` and wire the stages."""
        detector = open_detector(models.detector, pool.get(models.detector.path))
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
        landmarker = parser = frame_enhancer = None
        if models.landmarker is not None:
            landmarker = Landmarker(pool.get(models.landmarker.path), pixels=models.landmarker.recipe.pixels)
        if models.parser is not None:
            parser = FaceParser(pool.get(models.parser.path), models.parser.recipe)
        if models.frame_enhancer is not None:
            frame_enhancer = FrameEnhancer(pool.get(models.frame_enhancer.path), models.frame_enhancer.recipe,
                                           options.frame_enhance)
        return cls(detector, embedder, swapper, enhancer, options, landmarker=landmarker, parser=parser,
                   frame_enhancer=frame_enhancer)

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
                      reference: Optional[np.ndarray] = None, *, detections: Optional[Detections] = None,
                      similarities: Optional[np.ndarray] = None) -> FrameResult:
        """Swap the selected faces of one frame.

        Args:
            frame: ``H x W x 3`` uint8 BGR (not modified).
            source: from :meth:`prepare_source`.
            reference: normalised reference embedding (needed when ``options.select`` is
                ``reference``).
            detections: this frame's faces found already (frame pixels, sorted by score; e.g.
                :class:`~ffkit.runtime.face_tracker.FaceTracker`); None: detect here.
            similarities: ``(K,)`` similarities of ``detections`` to the reference, computed
                already (``reference`` mode; None: embed each face here).

        Returns:
            :class:`FrameResult`; its image is ``frame`` itself when no face was swapped, a new
            array otherwise, equal to ``frame`` outside ``result.regions``.
        """
        if self.swapper is None or source.latent is None:
            raise ValueError("this pipeline has no swapper / the source has no latent")
        opts = self.options
        dets = self.detector.detect(frame, opts.detect) if detections is None else detections
        records = [_record(dets, i) for i in range(len(dets))]
        sims = None if similarities is None else np.asarray(similarities, dtype=np.float32)
        if sims is not None:
            for rec, s in zip(records, sims):
                rec.similarity = float(s)
        elif opts.select == "reference":
            if reference is None:
                raise ValueError("select='reference' needs a reference embedding")
            sims = np.array([cosine_similarity(self.embedder.embed(frame, lm), reference)
                             for lm in dets.landmarks], dtype=np.float32)
            for rec, s in zip(records, sims):
                rec.similarity = float(s)
        chosen = select_faces(dets, mode=opts.select, max_faces=opts.max_faces,
                              min_face_size=opts.min_face_size, similarities=sims, threshold=opts.similarity)
        if not chosen:
            return self._finish(frame, records)
        out = frame.copy()
        for i in chosen:
            lm = dets.landmarks[i]
            if opts.landmarks == 68:
                points, _ = self.landmarker.landmarks(frame, dets.boxes[i:i + 1])
                lm = landmarks_68_to_5(points[0]).astype(np.float32)
                records[i].landmarks_68 = points[0].tolist()
            region = self._swap_into(out, lm, source.latent)
            records[i].swapped = True
            if region is not None:
                records[i].regions.append(region)
            if self.enhancer is not None:
                region = self.enhancer.enhance_into(out, lm, opts.enhance_blend, parser=self.parser)
                if region is not None:
                    records[i].regions.append(region)
        return self._finish(out, records)

    def _swap_into(self, frame: np.ndarray, landmarks: np.ndarray, latent: np.ndarray):
        """Swap one face into ``frame`` in place with the options' masks and colour matching;
        ``box`` alone without colour matching is :meth:`Swapper.swap_into` exactly."""
        opts = self.options
        if opts.mask == ("box",) and not opts.color_match:
            return self.swapper.swap_into(frame, landmarks, latent)
        face, m = self.swapper.swap_crop(frame, landmarks, latent)
        size = self.swapper.crop_size
        masks = []
        if "box" in opts.mask:
            masks.append(box_mask(size))
        if "region" in opts.mask:
            masks.append(self.parser.region_mask(face, opts.mask_regions))
        mask = combine_masks(*masks)
        if opts.color_match:
            face = match_colors(face, warp_face(frame, m, size), mask)
        region = paste_region(frame.shape, m, size)
        if region is None:
            return None
        if opts.mask == ("box",):   # colour matching only: insightface's own feathered box
            paste_back(frame, face, m, out=frame)
        else:
            paste_back(frame, face, m, erode_size=0, blur_radius=0, face_mask=mask, out=frame)
        return region

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the frames :meth:`process_frame` returns for ``width x height``
        input: scaled by the frame enhancer's factor unless it resizes back (``size="input"``)."""
        if self.frame_enhancer is None or self.options.frame_enhance.size == "input":
            return width, height
        return width * self.frame_enhancer.scale, height * self.frame_enhancer.scale

    def _finish(self, image: np.ndarray, records: list[FaceRecord]) -> FrameResult:
        """The frame result, upscaled by the frame enhancer when the pipeline has one."""
        if self.frame_enhancer is None:
            return FrameResult(image, records)
        return FrameResult(self.frame_enhancer.enhance(image), records, frame_enhanced=True)
