"""RetinaFace (biubug6/Pytorch_Retinaface) on the detector interface.

The frame is optionally shrunk so its longer side is at most ``max_side`` (as
Pytorch_Retinaface's ``test_widerface.py`` resizes, bilinear, but to an explicit integer size,
and its outputs mapped back half-pixel-exactly: input ``u`` -> frame ``(u + 0.5) * W / w_in -
0.5`` per axis, where ``test_widerface.py``'s ``u / s`` is off by ``(1 / s - 1) / 2`` px),
fed as the recipe's pixel format says (BGR minus (104, 117, 123)), and decoded with
:func:`ffkit.runtime.retinaface_decode.detect_faces` with the anchor sizes, strides and
variances the recipe declares (``Recipe.detector_decode``), strict score threshold, top_k,
py_cpu_nms, keep_top_k. With ``max_side=0`` this is exactly ``detect.py``'s post-processing at
the image's own size.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..detection import DetectParams, Detections, FaceDetector, Placement
from ..retinaface_decode import detect_faces

__all__ = ["RetinaFaceDetector", "resize_for_detection"]


def resize_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` (``H x W x 3`` uint8) so ``max(H, W) <= max_side``; returns
    ``(network input image, scale)`` with ``scale = max_side / max(H, W) <= 1`` (1 and the
    image itself when no resize is needed or ``max_side`` is 0).

    The input is ``cv2.resize`` (bilinear) to the explicit size ``w_in = round(W * scale)``,
    ``h_in = round(H * scale)`` (the size ``fx=fy=scale`` gives), so OpenCV samples with the
    exact per-axis ratios ``W / w_in``, ``H / h_in``: input ``(u, v)`` is frame
    ``((u + 0.5) * W / w_in - 0.5, (v + 0.5) * H / h_in - 0.5)``
    (:func:`ffkit.runtime.retinaface_decode.input_to_frame`), not ``(u, v) / scale``."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image, 1.0
    scale = float(max_side) / float(max(h, w))
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return resized, scale


class RetinaFaceDetector(FaceDetector):
    """A RetinaFace session (input ``N x 3 x H x W``, any H, W; outputs ``loc`` ``N x A x 4``,
    ``conf`` ``N x A x 2`` softmax, ``landms`` ``N x A x 10``, read by position) with
    ``detect.py``'s decode. See :class:`~ffkit.runtime.detection.FaceDetector` for the arguments."""

    def size(self, image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, Placement]:
        """Shrink to ``params.max_side`` (:func:`resize_for_detection`), no padding."""
        net_image, _ = resize_for_detection(image, params.max_side)
        hw = net_image.shape[:2]
        return net_image, Placement(image.shape[:2], hw, hw)

    def decode(self, outputs: Sequence[np.ndarray], placement: Placement, params: DetectParams) -> Detections:
        """``detect.py``'s decode of ``(loc, conf, landms)`` at the input's size, mapped to the
        image half-pixel-exactly when the input was resized."""
        loc, conf, landms = outputs[:3]
        h, w = placement.input_hw
        return detect_faces(loc, conf, landms, h, w,
                            score_threshold=params.score_threshold, nms_threshold=params.nms_threshold,
                            top_k=params.top_k, keep_top_k=params.keep_top_k,
                            frame_size=placement.image_hw if placement.resized else None,
                            min_sizes=self.spec.anchor_sizes, steps=self.spec.strides,
                            variances=self.spec.variances, suppress=self.suppress)
