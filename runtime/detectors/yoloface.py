"""YOLOFace (FaceFusion's ``yoloface_8n.onnx``) on the detector interface.

The decode is FaceFusion 3.x's ``face_detector.detect_with_yolo_face`` followed by the NMS of
``face_creator.create_faces`` (``face_helper.apply_nms``), step for step:

* sizing (``vision.restrict_frame``): a frame larger than the detection size ``W x H`` (the
  file's fixed input, else the recipe's ``input_size``: FaceFusion's only yolo_face size,
  640 x 640) on either side is shrunk by ``min(H / h, W / w)``, both sides ``int()``-truncated,
  ``cv2.resize`` bilinear; a smaller frame is NOT enlarged. ``prepare_detect_frame`` places it
  top-left on a zero canvas; ``ratio_w = w / w_in``, ``ratio_h = h / h_in`` map back per axis.
  ``DetectParams.max_side`` is not used.
* input: the BGR frame (no channel swap) divided by 255 (the recipe's pixels);
* output ``1 x 20 x A`` read as rows ``cx, cy, w, h, score, 5 x (x, y, score)``; a row is a face
  when its score is ``> DetectParams.score_threshold`` (FaceFusion's ``face_detector_score``,
  0.5); FaceFusion keeps no face at all when the only such row is row 0 (its
  ``numpy.any(keep_indices)``), and so does this decode; box ``(cx -+ w / 2) * ratio_w``,
  ``(cy -+ h / 2) * ratio_h``, points ``(x * ratio_w, y * ratio_h)``, not clipped;
* NMS: OpenCV's ``cv2.dnn.NMSBoxes`` on ``(x1, y1, x2 - x1, y2 - y1)`` (no "+1", IoU ``>``
  ``DetectParams.nms_threshold``, FaceFusion's 0.4 for one detector at one angle), which returns
  the kept faces by descending score (ties in row order).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..detection import DetectParams, Detections, FaceDetector, Placement

__all__ = ["YOLOFaceDetector", "restrict_top_left"]


def restrict_top_left(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """FaceFusion's ``restrict_frame`` (shrink only, ``int()`` sides, at least 1) and
    ``prepare_detect_frame`` (top-left on zeros) for ``image`` (``H x W x 3`` uint8)."""
    in_h, in_w = input_hw
    height, width = image.shape[:2]
    small = image
    if height > in_h or width > in_w:
        scale = min(in_h / height, in_w / width)
        small = cv2.resize(image, (max(1, int(width * scale)), max(1, int(height * scale))))
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:small.shape[0], :small.shape[1], :] = small
    return canvas, Placement(image.shape[:2], (in_h, in_w), small.shape[:2])


class YOLOFaceDetector(FaceDetector):
    """A YOLOFace session (input ``1 x 3 x H x W``, output ``1 x 20 x A``) with FaceFusion's
    decode (module docstring). See :class:`~ffkit.runtime.detection.FaceDetector` for the arguments."""

    def size(self, image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, Placement]:
        """Shrink (never enlarge) into :meth:`input_hw` and pad (:func:`restrict_top_left`)."""
        return restrict_top_left(image, self.input_hw())

    def anchor_scores(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Every prediction's face score (one image)."""
        return np.asarray(outputs[0])[0, 4].reshape(-1)

    def output_kinds(self) -> dict[str, str]:
        """The one output carries scores, boxes and points."""
        return {self.output_names[0]: "faces"}

    def suppress(self, boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
        """``cv2.dnn.NMSBoxes`` on ``(x, y, w, h)`` as FaceFusion's ``apply_nms`` calls it."""
        boxes = np.asarray(boxes, np.float64)
        rects = [(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes.tolist()]
        if not rects:
            return np.zeros((0,), np.int64)
        keep = cv2.dnn.NMSBoxes(rects, [float(s) for s in scores], score_threshold=0.0, nms_threshold=threshold)
        return np.asarray(keep, np.int64).reshape(-1)

    def decode(self, outputs: Sequence[np.ndarray], placement: Placement, params: DetectParams) -> Detections:
        """``detect_with_yolo_face`` then ``apply_nms``: faces in image pixels, by score."""
        rows = np.asarray(outputs[0], np.float32)[0].T
        boxes, scores, points = rows[:, :4], rows[:, 4:5], rows[:, 5:].copy()
        keep = np.where(scores > params.score_threshold)[0]
        if not np.any(keep):
            return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
        ratio_h = placement.image_hw[0] / placement.content_hw[0]
        ratio_w = placement.image_hw[1] / placement.content_hw[1]
        boxes, scores, points = boxes[keep], scores[keep].ravel(), points[keep]
        boxes = np.stack([(boxes[:, 0] - boxes[:, 2] / 2) * ratio_w, (boxes[:, 1] - boxes[:, 3] / 2) * ratio_h,
                          (boxes[:, 0] + boxes[:, 2] / 2) * ratio_w, (boxes[:, 1] + boxes[:, 3] / 2) * ratio_h], 1)
        boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        points[:, 0::3] = points[:, 0::3] * ratio_w
        points[:, 1::3] = points[:, 1::3] * ratio_h
        landmarks = points.reshape(-1, 5, 3)[:, :, :2]
        kept = self.suppress(boxes, scores, params.nms_threshold)
        return Detections(boxes=boxes[kept].astype(np.float32), scores=scores[kept].astype(np.float32),
                          landmarks=np.ascontiguousarray(landmarks[kept], dtype=np.float32))
