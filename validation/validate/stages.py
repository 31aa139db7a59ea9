"""Each stage of a candidate set judged against the reference set on one frame, twice.

*Isolated*: the candidate's model gets exactly the reference pipeline's inputs (the reference's
face boxes, aligned crops and source latent), so its own error is seen. *Chained*: the
candidate set ran alone (its own detections, landmarks, latent), so what reaches the output is
seen. Every figure is a :class:`Row` ``(stage, mode, metric, value, face)``; ``face`` is the
reference face's index in the frame (-1 for frame-level figures). The metrics are
:mod:`.image_metrics`'s. Frames are ``H x W x 3`` uint8 BGR.

The candidate's faces are paired with the reference's by box IoU >= :data:`MATCH_IOU` (greedy,
highest first: :func:`ffkit.validation.face_metrics.match_faces`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

import numpy as np

from ffkit.runtime.embedder import normalize
from ffkit.runtime.frame_pipeline import FaceRecord, FrameResult, Pipeline, SourceFace
from ffkit.runtime.geometry import paste_back
from ffkit.runtime.landmarker import landmarks_68_to_5

from ..face_metrics import box_iou, match_faces
from .image_metrics import cosine, label_agreement, mask_iou, nme, psnr_u8, ssim

__all__ = ["MATCH_IOU", "Row", "SetRun", "FrameTrace", "judge_frame", "align_points", "outside_changed"]

MATCH_IOU = 0.5
ISOLATED, CHAINED = "isolated", "chained"


@dataclass(frozen=True)
class Row:
    stage: str
    mode: str
    metric: str
    value: float
    face: int = -1


@dataclass
class SetRun:
    """One set's open pipeline (without its frame enhancer, applied after: the output is then
    :meth:`Pipeline.process_frame`'s exactly), its source face and its timing."""

    name: str
    pipeline: Pipeline
    frame_enhancer: object
    source: SourceFace
    seconds: float = 0.0
    frames: int = 0


@dataclass
class FrameTrace:
    """What one set made of one frame: ``pre`` (before the frame enhancer), ``out`` (final)."""

    result: FrameResult
    pre: np.ndarray
    out: np.ndarray
    extras: dict = field(default_factory=dict)

    @property
    def faces(self) -> list[FaceRecord]:
        return self.result.faces


def align_points(run: SetRun, face: FaceRecord) -> np.ndarray:
    """The 5 points the set aligned ``face`` with (the landmarker's, turned into 5, with 68)."""
    if run.pipeline.options.landmarks == 68 and face.landmarks_68 is not None:
        return landmarks_68_to_5(np.asarray(face.landmarks_68, np.float32)).astype(np.float32)
    return np.asarray(face.landmarks, np.float32)


def _boxes(faces: list[FaceRecord]) -> SimpleNamespace:
    return SimpleNamespace(boxes=np.asarray([f.box for f in faces], np.float64).reshape(-1, 4))


def pairs_of(ref: FrameTrace, cand: FrameTrace) -> dict[int, int]:
    """Reference face index -> candidate face index, matched by IoU >= :data:`MATCH_IOU`."""
    return {i: j for i, j, _ in match_faces(_boxes(ref.faces), _boxes(cand.faces), MATCH_IOU)}


def _both(stage: str, metric: str, value: float, face: int = -1) -> list[Row]:
    return [Row(stage, ISOLATED, metric, value, face), Row(stage, CHAINED, metric, value, face)]


def judge_detector(ref: FrameTrace, cand: FrameTrace, pairs: dict[int, int]) -> list[Row]:
    """Missed/extra faces, box IoU and 5-point NME. The detector's input is the frame itself, so
    isolated and chained are the same figures."""
    rows = _both("detector", "missed", float(len(ref.faces) - len(pairs)))
    rows += _both("detector", "extra", float(len(cand.faces) - len(pairs)))
    for i, j in pairs.items():
        r, c = ref.faces[i], cand.faces[j]
        rows += _both("detector", "box_iou", float(box_iou(np.array(r.box), np.array(c.box))[0, 0]), i)
        rows += _both("detector", "nme", nme(np.array(c.landmarks), np.array(r.landmarks)), i)
    return rows


def judge_landmarker(R: SetRun, C: SetRun, frame: np.ndarray, ref: FrameTrace, cand: FrameTrace,
                     pairs: dict[int, int]) -> list[Row]:
    """68-point NME: the candidate on the reference's box (isolated), on its own face (chained)."""
    rows = []
    for i, face in enumerate(ref.faces):
        if face.landmarks_68 is None or C.pipeline.landmarker is None:
            continue
        own, _ = C.pipeline.landmarker.landmarks(frame, np.asarray([face.box], np.float32))
        rows.append(Row("landmarker", ISOLATED, "nme", nme(own[0], np.asarray(face.landmarks_68)), i))
        j = pairs.get(i)
        if j is not None and cand.faces[j].landmarks_68 is not None:
            rows.append(Row("landmarker", CHAINED, "nme", nme(np.asarray(cand.faces[j].landmarks_68),
                                                                np.asarray(face.landmarks_68)), i))
    return rows


def _crop_pair(R: SetRun, C: SetRun, frame, lm_ref, lm_cand):
    """``(reference crop, candidate crop isolated, candidate crop chained or None, ref matrix)``."""
    crop_r, m = R.pipeline.swapper.swap_crop(frame, lm_ref, R.source.latent)
    crop_i, _ = C.pipeline.swapper.swap_crop(frame, lm_ref, R.source.latent)
    crop_c = None if lm_cand is None else C.pipeline.swapper.swap_crop(frame, lm_cand, C.source.latent)[0]
    return crop_r, crop_i, crop_c, m


def judge_faces(R: SetRun, C: SetRun, frame: np.ndarray, ref: FrameTrace, cand: FrameTrace,
                pairs: dict[int, int]) -> list[Row]:
    """Per face the reference swapped: embedder (isolated, on the reference's crop), swapper
    (PSNR, SSIM of the swapped crop), identity (reference embedder), parser and face enhancer."""
    rows = []
    judge = R.pipeline.embedder
    src = normalize(R.source.embedding)
    same_size = C.pipeline.swapper.crop_size == R.pipeline.swapper.crop_size
    for i, face in enumerate(ref.faces):
        if not face.swapped:
            continue
        lm_r = align_points(R, face)
        j = pairs.get(i)
        lm_c = align_points(C, cand.faces[j]) if j is not None and cand.faces[j].swapped else None
        e_r = R.pipeline.embedder.embed(frame, np.asarray(face.landmarks, np.float32))
        e_c = C.pipeline.embedder.embed(frame, np.asarray(face.landmarks, np.float32))
        rows.append(Row("embedder", ISOLATED, "cosine", cosine(e_c, e_r), i))
        if not same_size:
            continue
        crop_r, crop_i, crop_c, m = _crop_pair(R, C, frame, lm_r, lm_c)
        rows += [Row("swapper", ISOLATED, "psnr", psnr_u8(crop_i, crop_r), i),
                 Row("swapper", ISOLATED, "ssim", ssim(crop_i, crop_r), i)]
        if crop_c is not None:
            rows += [Row("swapper", CHAINED, "psnr", psnr_u8(crop_c, crop_r), i),
                     Row("swapper", CHAINED, "ssim", ssim(crop_c, crop_r), i)]
        id_ref = cosine(src, judge.embed(ref.pre, lm_r))
        id_cand = cosine(src, judge.embed(cand.pre, lm_r))
        pasted = paste_back(frame, crop_i, m)
        rows += [Row("identity", ISOLATED, "drop", id_ref - cosine(src, judge.embed(pasted, lm_r)), i),
                 Row("identity", CHAINED, "drop", id_ref - id_cand, i),
                 Row("identity", CHAINED, "cosine", id_cand, i),
                 Row("identity", "reference", "cosine", id_ref, i)]
        rows += judge_parser(R, C, crop_r, crop_c, i)
        rows += judge_enhancer(R, C, frame, lm_r, lm_c, i)
    return rows


def judge_parser(R: SetRun, C: SetRun, crop_r, crop_c, i: int) -> list[Row]:
    """Label agreement and region-mask IoU (mask > 0.5) on the reference's swapped crop (isolated)
    and each on its own (chained); only when both sets parse (``--mask region`` or a restore)."""
    pr, pc = R.pipeline.parser, C.pipeline.parser
    if pr is None or pc is None:
        return []
    regions = R.pipeline.options.mask_regions
    labels_r = pr.parse(crop_r)[0]
    mask_r = pr.region_mask(crop_r, regions) > 0.5
    rows = [Row("parser", ISOLATED, "agreement", label_agreement(pc.parse(crop_r)[0], labels_r), i),
            Row("parser", ISOLATED, "mask_iou", mask_iou(pc.region_mask(crop_r, regions) > 0.5, mask_r), i)]
    if crop_c is not None:
        rows += [Row("parser", CHAINED, "agreement", label_agreement(pc.parse(crop_c)[0], labels_r), i),
                 Row("parser", CHAINED, "mask_iou", mask_iou(pc.region_mask(crop_c, regions) > 0.5, mask_r), i)]
    return rows


def judge_enhancer(R: SetRun, C: SetRun, frame, lm_r, lm_c, i: int) -> list[Row]:
    """Face enhancer PSNR of the restored 512 crop: the candidate on the frame with this face
    swapped by the reference (isolated), on its own swap (chained)."""
    er, ec = R.pipeline.enhancer, C.pipeline.enhancer
    if er is None or ec is None:
        return []
    swapped_r = frame.copy()
    R.pipeline._swap_into(swapped_r, lm_r, R.source.latent)
    restored_r, _ = er.enhance_crop(swapped_r, lm_r)
    rows = [Row("enhancer", ISOLATED, "psnr", psnr_u8(ec.enhance_crop(swapped_r, lm_r)[0], restored_r), i)]
    if lm_c is not None:
        swapped_c = frame.copy()
        C.pipeline._swap_into(swapped_c, lm_c, C.source.latent)
        rows.append(Row("enhancer", CHAINED, "psnr", psnr_u8(ec.enhance_crop(swapped_c, lm_c)[0], restored_r), i))
    return rows


def outside_changed(frame: np.ndarray, trace: FrameTrace) -> int:
    """Pixels of ``trace.pre`` that differ from ``frame`` outside every region the set says it
    changed (0 for a correct pipeline)."""
    mask = np.zeros(frame.shape[:2], bool)
    for x0, y0, x1, y1 in trace.result.regions:
        mask[y0:y1, x0:x1] = True
    return int(np.count_nonzero(np.any(trace.pre != frame, axis=2) & ~mask))


def judge_output(R: SetRun, C: SetRun, frame: np.ndarray, ref: FrameTrace, cand: FrameTrace) -> list[Row]:
    """The output frame: PSNR and SSIM inside the union of both sets' paste regions (the whole
    frame after a frame enhancer), and the frame enhancer on the reference's frame (isolated)."""
    rows = []
    if R.frame_enhancer is not None and C.frame_enhancer is not None:
        rows.append(Row("frame_enhancer", ISOLATED, "psnr", psnr_u8(C.frame_enhancer.enhance(ref.pre), ref.out)))
        rows.append(Row("frame_enhancer", CHAINED, "psnr", psnr_u8(cand.out, ref.out)))
    if ref.out.shape != cand.out.shape:
        return rows
    if R.frame_enhancer is not None:
        box = (0, 0, ref.out.shape[1], ref.out.shape[0])
        inside = np.ones(ref.out.shape[:2], bool)
    else:
        inside = np.zeros(frame.shape[:2], bool)
        for x0, y0, x1, y1 in ref.result.regions + cand.result.regions:
            inside[y0:y1, x0:x1] = True
        ys, xs = np.nonzero(inside)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
    if box is None:
        return rows + [Row("output", CHAINED, "psnr", math.inf), Row("output", CHAINED, "ssim", 1.0)]
    x0, y0, x1, y1 = box
    rows.append(Row("output", CHAINED, "psnr", psnr_u8(cand.out[inside], ref.out[inside])))
    rows.append(Row("output", CHAINED, "ssim", ssim(cand.out[y0:y1, x0:x1], ref.out[y0:y1, x0:x1])))
    return rows


def judge_frame(R: SetRun, C: SetRun, frame: np.ndarray, ref: FrameTrace, cand: FrameTrace) -> list[Row]:
    """Every stage's rows of candidate ``C`` against reference ``R`` on one frame."""
    pairs = pairs_of(ref, cand)
    rows = judge_detector(ref, cand, pairs)
    rows += judge_landmarker(R, C, frame, ref, cand, pairs)
    rows += judge_faces(R, C, frame, ref, cand, pairs)
    rows += judge_output(R, C, frame, ref, cand)
    rows.append(Row("output", CHAINED, "outside_changed", float(outside_changed(frame, cand))))
    return rows


def source_rows(R: SetRun, C: SetRun, source_image: np.ndarray) -> list[Row]:
    """The embedder on the source face: the candidate's embedding of the reference's crop
    (isolated) and the candidate set's own source embedding (chained), cosine to the reference's."""
    own = C.pipeline.embedder.embed(source_image, R.source.landmarks)
    return [Row("embedder", ISOLATED, "cosine", cosine(own, R.source.embedding)),
            Row("embedder", CHAINED, "cosine", cosine(C.source.embedding, R.source.embedding))]


def first_face(trace: FrameTrace) -> Optional[FaceRecord]:
    """The face the temporal figures follow: the first swapped one (else the best-scoring one)."""
    return next((f for f in trace.faces if f.swapped), trace.faces[0] if trace.faces else None)
