"""SCRFD (insightface ``model_zoo/scrfd.py``, class ``SCRFD``) on the detector interface.

The decode is insightface's, step for step, at one detection size:

* sizing (``_detect_candidates``): the image is fitted into the detection size ``W x H`` keeping
  its aspect, the fitted side exact and the other ``int()``-truncated, resized with
  ``cv2.resize`` (bilinear; small images are scaled UP as well as down), placed top-left on a
  zero canvas; ``det_scale = new_height / image_height`` maps both axes back. The detection size
  is the file's own input size when it fixes one, else the recipe's ``input_size`` (insightface
  FaceAnalysis' ``det_size`` (640, 640)); ``DetectParams.max_side`` is not used.
* input: ``(RGB - 127.5) / 128`` (``cv2.dnn.blobFromImage(..., swapRB=True)``; the recipe's pixels);
* outputs read BY POSITION: per stride ``s`` (``fmc`` strides) scores ``[idx]``, box distances
  ``[idx + fmc]``, key points ``[idx + 2 fmc]``, rank 3 (batched) or 2; anchor centres
  ``(j s, i s)`` (no half-stride offset) for row ``i < H // s``, column ``j < W // s``, repeated
  per anchor; ``distance2bbox`` / ``distance2kps`` of the predictions times ``s``;
* score ``>= DetectParams.score_threshold`` (insightface's ``det_thresh``, 0.5 by default); the
  candidates sorted by score, NMS with "+1" widths at ``DetectParams.nms_threshold`` (its
  ``nms_thresh``, 0.4); boxes and points not clipped;
* ``max_num`` = ``DetectParams.keep_top_k``: above that many faces, the ones insightface keeps
  (largest ``area - 2 * squared offset from the image centre``), then sorted by score as the
  interface promises.

A file without key-point heads (6 or 10 outputs) is refused in one line: its faces cannot be aligned.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ffkit.recipes.errors import FfkitError

from ..detection import DetectParams, Detections, FaceDetector, Placement

__all__ = ["SCRFDDetector", "fit_top_left", "anchor_centres"]


def fit_top_left(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """``image`` (``H x W x 3`` uint8) fitted into ``input_hw`` as SCRFD's ``_detect_candidates``:
    aspect kept, the other side ``int()``-truncated (at least 1), bilinear, top-left, zero padding."""
    in_h, in_w = input_hw
    im_ratio = float(image.shape[0]) / image.shape[1]
    model_ratio = float(in_h) / in_w
    if im_ratio > model_ratio:
        new_h, new_w = in_h, max(1, int(in_h / im_ratio))
    else:
        new_w, new_h = in_w, max(1, int(in_w * im_ratio))
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w, :] = cv2.resize(image, (new_w, new_h))
    return canvas, Placement(image.shape[:2], (in_h, in_w), (new_h, new_w))


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """``(height * width * anchors, 2)`` float32 ``(x, y)`` = ``(j * stride, i * stride)``, row-major,
    each centre repeated ``anchors`` times (SCRFD's order)."""
    centres = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
    centres = (centres * stride).reshape((-1, 2))
    if anchors > 1:
        centres = np.stack([centres] * anchors, axis=1).reshape((-1, 2))
    return centres


def _distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    return np.stack([points[:, 0] - distance[:, 0], points[:, 1] - distance[:, 1],
                     points[:, 0] + distance[:, 2], points[:, 1] + distance[:, 3]], axis=-1)


def _distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    coords = []
    for i in range(0, distance.shape[1], 2):
        coords += [points[:, i % 2] + distance[:, i], points[:, i % 2 + 1] + distance[:, i + 1]]
    return np.stack(coords, axis=-1)


class SCRFDDetector(FaceDetector):
    """An SCRFD session (input ``N x 3 x H x W``; ``3 x len(strides)`` outputs: scores, box
    distances, key points per stride, rank 2 or 3) with insightface's decode (module docstring).

    Raises:
        FfkitError: the file has no key-point heads (2 outputs per stride): one line.
    """

    def __init__(self, session, recipe):
        super().__init__(session, recipe)
        self.fmc = len(self.spec.strides)
        if len(recipe.outputs) != 3 * self.fmc:
            raise FfkitError(f"an SCRFD file without key-point heads ({len(recipe.outputs)} outputs: scores and boxes "
                             f"only, recipe {recipe.name}): its faces have no 5 points, so they cannot be aligned; "
                             "use an SCRFD file with key points (*_bnkps, buffalo_l's det_10g.onnx)")
        self.anchors = len(self.spec.anchor_sizes[0]) if self.spec.anchor_sizes else 1

    def size(self, image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, Placement]:
        """Fit into :meth:`input_hw` (:func:`fit_top_left`)."""
        return fit_top_left(image, self.input_hw())

    def anchor_scores(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Every anchor's face score (one image), flattened."""
        return np.concatenate([np.asarray(o).reshape(-1) for o in outputs[:self.fmc]])

    def output_kinds(self) -> dict[str, str]:
        """Output name -> what it carries (``scores``, ``boxes``, ``points``), in file order."""
        kinds = ("scores", "boxes", "points")
        return {name: kinds[i // self.fmc] for i, name in enumerate(self.output_names)}

    def _candidates(self, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], threshold: float):
        """insightface ``SCRFD.forward`` after the session: per stride, the anchors scoring
        ``>= threshold``: ``(scores K x 1, boxes K x 4, key points K x 5 x 2)`` lists."""
        batched = np.ndim(outputs[0]) == 3
        scores_list, bboxes_list, kpss_list = [], [], []
        for idx, stride in enumerate(self.spec.strides):
            scores, bbox, kps = (outputs[idx + k * self.fmc] for k in range(3))
            if batched:
                scores, bbox, kps = scores[0], bbox[0], kps[0]
            centres = anchor_centres(input_hw[0] // stride, input_hw[1] // stride, stride, self.anchors)
            if len(centres) != len(scores) or len(bbox) != len(scores) or len(kps) != len(scores):
                raise FfkitError(f"{self.recipe.name}: stride {stride} gives {len(scores)} scores, {len(bbox)} boxes, "
                                 f"{len(kps)} key points for {len(centres)} anchors at input {input_hw[1]}x{input_hw[0]}")
            pos = np.where(scores >= threshold)[0]
            bboxes = _distance2bbox(centres, bbox * stride)
            kpss = _distance2kps(centres, kps * stride)
            scores_list.append(scores[pos])
            bboxes_list.append(bboxes[pos])
            kpss_list.append(kpss.reshape((kpss.shape[0], -1, 2))[pos])
        return scores_list, bboxes_list, kpss_list

    def decode(self, outputs: Sequence[np.ndarray], placement: Placement, params: DetectParams) -> Detections:
        """insightface's ``_detect_candidates`` + ``detect`` (one detection size): faces in image pixels."""
        scores_list, bboxes_list, kpss_list = self._candidates(outputs, placement.input_hw, params.score_threshold)
        if sum(s.size for s in scores_list) == 0:
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
        det_scale = float(placement.content_hw[0]) / placement.image_hw[0]
        scores = np.vstack(scores_list)
        order = scores.ravel().argsort()[::-1]
        bboxes = np.vstack(bboxes_list) / det_scale
        kpss = np.vstack(kpss_list) / det_scale
        pre_det = np.hstack((bboxes, scores)).astype(np.float32, copy=False)[order, :]
        kpss = kpss[order, :, :]
        order = pre_det[:, 4].argsort()[::-1]                 # detect(): sorted again, as insightface does
        pre_det, kpss = pre_det[order, :], kpss[order, :, :]
        keep = self.suppress(pre_det[:, :4], pre_det[:, 4], params.nms_threshold)
        det, kpss = pre_det[keep, :], kpss[keep, :, :]
        if 0 < params.keep_top_k < det.shape[0]:
            det, kpss = self._max_num(det, kpss, params.keep_top_k, placement.image_hw)
        return Detections(boxes=det[:, :4], scores=det[:, 4], landmarks=kpss.astype(np.float32, copy=False))

    @staticmethod
    def _max_num(det: np.ndarray, kpss: np.ndarray, max_num: int, image_hw: tuple[int, int]):
        """insightface's ``max_num`` choice (metric ``default``), then by score (stable)."""
        area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
        centre = image_hw[0] // 2, image_hw[1] // 2
        offsets = np.vstack([(det[:, 0] + det[:, 2]) / 2 - centre[1], (det[:, 1] + det[:, 3]) / 2 - centre[0]])
        values = area - np.sum(np.power(offsets, 2.0), 0) * 2.0
        chosen = np.argsort(values)[::-1][:max_num]
        chosen = chosen[np.argsort(-det[chosen, 4], kind="stable")]
        return det[chosen, :], kpss[chosen, :, :]
