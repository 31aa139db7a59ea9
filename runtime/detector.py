"""Face detection on a whole frame: the names callers import, and the faces drawn.

The detector interface lives in :mod:`ffkit.runtime.detection` (:class:`FaceDetector`,
:class:`DetectParams`, :class:`Detections`); each family's implementation in
:mod:`ffkit.runtime.detectors`, opened by the recipe with
:func:`~ffkit.runtime.detectors.open_detector`. :class:`Detector` is RetinaFace opened from a
session alone (a file with RetinaFace's outputs whose recipe is not at hand).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ffkit.recipes.spec import PixelFormat, Recipe

from .detection import DetectParams, Detections, FaceDetector
from .detectors import open_detector
from .detectors.retinaface import RetinaFaceDetector, resize_for_detection
from .retinaface_decode import DECLARED

__all__ = ["DetectParams", "Detections", "Detector", "FaceDetector", "open_detector", "resize_for_detection",
           "draw_detections"]


class Detector(RetinaFaceDetector):
    """A RetinaFace session with its pre- and post-processing.

    Args:
        session: onnxruntime session of a ``retinaface_*`` artifact (input ``N x 3 x H x W``;
            outputs ``loc``, ``conf``, ``landms``, read by position).
        recipe: its recipe (default: the registered RetinaFace declaration; every RetinaFace
            recipe shares its decode, pixels and outputs).
        pixels: a pixel format replacing the recipe's (None: the recipe's).
    """

    def __init__(self, session, *, recipe: Recipe = DECLARED, pixels: PixelFormat | None = None):
        super().__init__(session, recipe if pixels is None else replace(recipe, pixels=pixels))


def draw_detections(image: np.ndarray, dets: Detections, color=(0, 255, 0), max_faces: int = 0) -> np.ndarray:
    """A copy of ``image`` (``H x W x 3`` uint8 BGR) with boxes, scores and the 5 landmarks
    (left eye red, right eye yellow, nose magenta, mouth corners green/blue) drawn; at most
    ``max_faces`` faces (0: all)."""
    canvas = image.copy()
    n = len(dets) if max_faces <= 0 else min(len(dets), max_faces)
    thick = max(1, round(max(image.shape[:2]) / 400))
    lm_colours = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))
    for k in range(n):
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes[k])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thick)
        cv2.putText(canvas, f"{float(dets.scores[k]):.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, color, thick, cv2.LINE_AA)
        for (x, y), c in zip(np.asarray(dets.landmarks[k]), lm_colours):
            cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), thick + 1, c, -1)
    return canvas
