"""A detector's outputs compared where the user looks: the faces they decode to (numpy only).

:func:`compare_faces` decodes a candidate's and a reference's outputs with the detector family
the recipe declares (``open_detector(recipe, None).decode``: RetinaFace's detect.py, SCRFD's and
YOLOFace's decodes, each with its own threshold rule and NMS, at the network input's ``H x W``)
and matches their faces; :func:`face_checks` turns that into the per-output verdicts of a
:class:`~ffkit.recipes.spec.FaceBudget` (score outputs: the same faces; box outputs: worst box
IoU; point outputs: worst landmark error; an output carrying all three, as YOLOFace's: all
three), which :func:`ffkit.validation.parity.judge` returns.

Conventions: boxes ``[x1, y1, x2, y2]`` and landmarks ``(x, y)`` in network-input pixels; IoU
on continuous coordinates (no "+1"); landmark error = the largest distance of one of the 5
landmarks from the reference's, divided by the reference box size ``sqrt(w * h)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ffkit.recipes.spec import FaceBudget, Recipe
from ffkit.runtime.detection import DetectParams, Detections, Placement
from ffkit.runtime.detectors import open_detector

__all__ = ["PHOTO", "photo_inputs", "FaceFigures", "box_iou", "match_faces", "decode_runs", "compare_faces",
           "face_checks", "raw_reason"]

#: The bundled public-domain photo (validation/assets/README.md): one frontal face, 512x512.
PHOTO = Path(__file__).resolve().parent / "assets" / "astronaut.jpg"


def photo_inputs(recipe: Recipe) -> list[dict[str, np.ndarray]]:
    """For a detector, the bundled photo as one sample (``1 x 3 x 512 x 512``, as
    :func:`ffkit.validation.calibration.image_inputs` makes detector inputs): a real face to judge
    a :class:`FaceBudget` on where no images are given (the recipe's sample inputs are noise and
    show no face to a trained detector). Empty for other roles."""
    if recipe.role != "detector":
        return []
    from ffkit.runtime.media import read_image

    from .calibration import image_inputs

    return [{recipe.input_names[0]: image_inputs(recipe, read_image(PHOTO))}]


@dataclass
class FaceFigures:
    """Faces of a candidate against its reference over a set of images (batch elements).

    ``images``: images judged (the reference is a face map there); ``not_face_maps``: the others.
    ``faces``/``candidate_faces``: faces above the score threshold on each side; ``lost``: the
    reference's that the candidate lacks, ``added``: the reverse (borderline flips excepted);
    ``matched``: pairs clearly above the threshold on either side, over which ``worst_iou`` and
    ``worst_landmark`` are taken (nan when none); ``max_score_diff``: the largest score change
    of a pair above the threshold on either side.
    """

    images: int
    not_face_maps: int
    faces: int
    candidate_faces: int
    lost: int
    added: int
    matched: int
    worst_iou: float
    worst_landmark: float
    max_score_diff: float

    @property
    def judged(self) -> bool:
        """Whether any judged image shows a face above the threshold on either side."""
        return self.faces + self.candidate_faces > 0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``K x M`` IoU of ``K x 4`` and ``M x 4`` ``[x1, y1, x2, y2]`` boxes (0 for empty unions)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a, area_b = (np.prod(np.clip(x[:, 2:] - x[:, :2], 0.0, None), axis=1) for x in (a, b))
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_faces(reference: Detections, candidate: Detections, min_iou: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(reference index, candidate index, IoU)`` with IoU >= ``min_iou``,
    greedily by highest IoU first."""
    iou = box_iou(reference.boxes, candidate.boxes)
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if i not in used_r and j not in used_c:
            pairs.append((int(i), int(j), float(iou[i, j])))
            used_r.add(i)
            used_c.add(j)
    return pairs


def _output_kinds(detector, recipe: Recipe) -> dict[str, str]:
    """Output name -> ``scores`` / ``boxes`` / ``points`` / ``faces`` (all three): the family's own
    ``output_kinds()`` where it has one, else RetinaFace's ``loc``, ``conf``, ``landms``."""
    if hasattr(detector, "output_kinds"):
        return detector.output_kinds()
    loc, conf, landms = recipe.output_names[:3]
    return {loc: "boxes", conf: "scores", landms: "points"}


def _anchor_scores(detector, outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Every anchor's face score: the family's ``anchor_scores()``, else RetinaFace's ``conf[..., -1]``."""
    if hasattr(detector, "anchor_scores"):
        return detector.anchor_scores(outputs)
    return np.asarray(outputs[1])[..., -1]


def decode_runs(recipe: Recipe, runs: Sequence[Mapping[str, np.ndarray]],
                inputs: Sequence[Mapping[str, np.ndarray]], score_threshold: float
                ) -> list[tuple[Detections, float]]:
    """``(faces, median anchor face score)`` of every batch element of every run, decoded by the
    recipe's detector family as if the network input (``H x W``) were the image: faces scoring
    above ``score_threshold`` by the family's rule.

    ``runs[k]`` holds the recipe's outputs (file order) for the feeds ``inputs[k]`` (the first
    input ``N x 3 x H x W``); a family whose outputs have no batch axis (SCRFD unbatched) decodes
    one image per run.
    """
    detector = open_detector(recipe, None)
    params = DetectParams(max_side=0, score_threshold=score_threshold)
    names = recipe.output_names
    found = []
    for run, feeds in zip(runs, inputs, strict=True):
        height, width = (int(v) for v in np.shape(feeds[recipe.input_names[0]])[-2:])
        outs = [np.asarray(run[name], np.float32) for name in names]
        batched = len(recipe.outputs[0].shape) >= 3          # a leading batch axis
        count = outs[0].shape[0] if batched else 1
        for n in range(count):
            one = [o[n:n + 1] for o in outs] if batched else outs
            dets = detector.decode(one, Placement.identity(height, width), params)
            found.append((dets, float(np.median(_anchor_scores(detector, one)))))
    return found


def _landmark_error(ref: Detections, cand: Detections, i: int, j: int) -> float:
    x1, y1, x2, y2 = (float(v) for v in ref.boxes[i])
    size = math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
    dist = float(np.max(np.linalg.norm(np.asarray(cand.landmarks[j], np.float64) -
                                       np.asarray(ref.landmarks[i], np.float64), axis=1)))
    return dist / size if size > 0 else math.inf


def compare_faces(recipe: Recipe, candidates: Sequence[Mapping[str, np.ndarray]],
                  references: Sequence[Mapping[str, np.ndarray]], inputs: Sequence[Mapping[str, np.ndarray]],
                  budget: FaceBudget) -> FaceFigures:
    """Decode both sides at ``score_threshold - score_margin``, match by IoU (``match_iou``) and
    count the faces above the threshold the other side lacks (see :class:`FaceBudget`)."""
    t, m = budget.score_threshold, budget.score_margin
    with np.errstate(invalid="ignore", over="ignore"):
        refs = decode_runs(recipe, references, inputs, t - m)
        cands = decode_runs(recipe, candidates, inputs, t - m)

    def kept(own: float, other: float | None) -> bool:
        """A face scoring ``own`` > t is on the other side too: above t, or both borderline."""
        return other is not None and (other > t or (other > t - m and own <= t + m))

    images = faces = cand_faces = lost = added = 0
    ious, landmarks, score_diffs = [], [], []
    for (ref, median), (cand, _) in zip(refs, cands, strict=True):
        if not median <= budget.max_median_score:
            continue
        images += 1
        pairs = match_faces(ref, cand, budget.match_iou)
        partner_of_ref = {i: j for i, j, _ in pairs}
        partner_of_cand = {j: i for i, j, _ in pairs}
        for i, score in enumerate(ref.scores):
            if score > t:
                faces += 1
                j = partner_of_ref.get(i)
                lost += not kept(float(score), float(cand.scores[j]) if j is not None else None)
        for j, score in enumerate(cand.scores):
            if score > t:
                cand_faces += 1
                i = partner_of_cand.get(j)
                added += not kept(float(score), float(ref.scores[i]) if i is not None else None)
        for i, j, iou in pairs:
            top = max(float(ref.scores[i]), float(cand.scores[j]))
            if top > t:
                score_diffs.append(abs(float(cand.scores[j]) - float(ref.scores[i])))
            if top > t + m:
                ious.append(iou)
                landmarks.append(_landmark_error(ref, cand, i, j))
    return FaceFigures(images, len(refs) - images, faces, cand_faces, lost, added, len(ious),
                       min(ious, default=math.nan), max(landmarks, default=math.nan), max(score_diffs, default=0.0))


def _images(faces: FaceFigures, budget: FaceBudget) -> str:
    skipped = (f", {faces.not_face_maps} more not a face map (median anchor score > {budget.max_median_score:g})"
               if faces.not_face_maps else "")
    return f"{faces.images} image(s){skipped}"


def raw_reason(faces: FaceFigures, budget: FaceBudget) -> str:
    """Why the raw-tensor criterion holds instead (``faces.judged`` is false), for the criterion text."""
    return (f"no face above score {budget.score_threshold:g} on either side in {_images(faces, budget)}, "
            "so the raw tensors are judged")


def face_checks(recipe: Recipe, figures: Mapping[str, dict[str, float]], faces: FaceFigures, budget: FaceBudget,
                kind: str) -> dict[str, tuple[dict[str, float], str, float, bool]]:
    """``{output: (figures, criterion, value, passed)}`` for the detector's outputs under ``budget``:
    score outputs the same faces (value: lost + added), box outputs the worst box IoU, point
    outputs the worst landmark error (no face clearly above the threshold: nothing to judge,
    passed); an output carrying all three (YOLOFace's) is held to all three (value: lost + added).
    ``figures`` (the raw ones) are extended with the face figures that output is judged on."""
    t, m = budget.score_threshold, budget.score_margin
    where = f"in {_images(faces, budget)} ({kind} budget)"
    over = f"over {faces.matched} matched face(s) scoring > {t + m:g} {where}"
    matched = faces.matched > 0
    verdicts = {
        "scores": ({"faces": faces.faces, "faces_lost": faces.lost, "faces_added": faces.added,
                    "max_score_diff": faces.max_score_diff},
                   f"same faces above score {t:g} (borderline {t - m:g}..{t + m:g} may flip), matched at IoU >= "
                   f"{budget.match_iou:g}: {faces.faces} found, {faces.lost} lost, {faces.added} added {where}",
                   float(faces.lost + faces.added), faces.lost + faces.added == 0),
        "boxes": ({"worst_box_iou": faces.worst_iou}, f"worst box IoU >= {budget.min_iou:g} {over}",
                  faces.worst_iou, bool(not matched or faces.worst_iou >= budget.min_iou)),
        "points": ({"worst_landmark_error": faces.worst_landmark},
                   f"worst landmark error <= {budget.max_landmark_error:g} of the box size {over}",
                   faces.worst_landmark, bool(not matched or faces.worst_landmark <= budget.max_landmark_error)),
    }
    kinds = _output_kinds(open_detector(recipe, None), recipe)
    checks = {}
    for name, what in kinds.items():
        parts = [verdicts[k] for k in (("scores", "boxes", "points") if what == "faces" else (what,))]
        extra = {k: v for part in parts for k, v in part[0].items()}
        checks[name] = ({**figures[name], **extra}, "; ".join(p[1] for p in parts), parts[0][2],
                        all(p[3] for p in parts))
    return checks
