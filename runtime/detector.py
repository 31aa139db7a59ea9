"""Face detection with a RetinaFace artifact on a whole frame.

The frame is optionally shrunk so its longer side is at most ``max_side`` (as
Pytorch_Retinaface's ``test_widerface.py`` resizes, bilinear, but to an explicit integer size,
and its outputs mapped back half-pixel-exactly: input ``u`` -> frame ``(u + 0.5) * W / w_in -
0.5`` per axis, where ``test_widerface.py``'s ``u / s`` is off by ``(1 / s - 1) / 2`` px),
fed as BGR minus (104, 117, 123), and decoded with
:func:`ffkit.runtime.retinaface_decode.detect_faces` (priors from the min sizes and steps
8/16/32, variances 0.1/0.2, strict score threshold, top_k, py_cpu_nms, keep_top_k). With
``max_side=0`` this is exactly ``detect.py``'s post-processing at the image's own size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.retinaface import MIN_SIZES, OUTPUTS, PIXELS, STEPS, VARIANCES
from ffkit.recipes.spec import PixelFormat

from .retinaface_decode import Detections, detect_faces
from .sessions import run_session

__all__ = ["DetectParams", "Detector", "resize_for_detection", "draw_detections"]


@dataclass(frozen=True)
class DetectParams:
    """Detection settings.

    Attributes:
        max_side: shrink the frame so its longer side is at most this many pixels before
            detection (0: feed the frame at its own size; frames are never enlarged).
        score_threshold: keep anchors with face probability ``> score_threshold`` (0..1).
        nms_threshold: IoU above which a lower-scored box is suppressed.
        top_k, keep_top_k: ``detect.py``'s candidate caps before and after NMS.
    """

    max_side: int = 640
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    top_k: int = 5000
    keep_top_k: int = 750


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


class Detector:
    """A RetinaFace session with its pre- and post-processing.

    Args:
        session: onnxruntime session of a ``retinaface_*`` artifact (input ``input``
            ``N x 3 x H x W``; outputs ``loc``, ``conf``, ``landms``).
        pixels, min_sizes, steps, variances: the recipe's constants (Pytorch_Retinaface
            cfg_mnet / cfg_re50 by default).
    """

    def __init__(self, session: ort.InferenceSession, *, pixels: PixelFormat = PIXELS,
                 min_sizes=MIN_SIZES, steps=STEPS, variances=VARIANCES):
        self.session = session
        self.pixels = pixels
        self.min_sizes = min_sizes
        self.steps = steps
        self.variances = variances
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on ``image`` (``H x W x 3`` uint8 BGR, fed at its size):
        ``{'loc': 1xAx4, 'conf': 1xAx2, 'landms': 1xAx10}`` float32, keyed by the recipe's names
        in output order whatever the file calls them (``landmarks`` in some exports)."""
        x = self.pixels.to_tensor(image).astype(self.input_dtype, copy=False)
        outs = list(run_session(self.session, {self.input_name: x}, self.output_names).values())
        return {spec.name: np.asarray(o, dtype=np.float32) for spec, o in zip(OUTPUTS, outs)}

    def detect(self, image: np.ndarray, params: DetectParams = DetectParams()) -> Detections:
        """Faces in ``image`` (``H x W x 3`` uint8 BGR).

        Returns:
            :class:`Detections` sorted by score (descending): boxes ``K x 4`` ``[x1, y1, x2,
            y2]`` and landmarks ``K x 5 x 2`` in ``image`` pixels (not clipped to the image),
            scores ``K`` in 0..1.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect expects an H x W x 3 uint8 BGR image, got {image.shape} {image.dtype}")
        net_in, _ = resize_for_detection(image, params.max_side)
        out = self.raw(net_in)
        h, w = net_in.shape[:2]
        frame_size = None if (h, w) == image.shape[:2] else image.shape[:2]
        return detect_faces(out["loc"], out["conf"], out["landms"], h, w,
                            score_threshold=params.score_threshold, nms_threshold=params.nms_threshold,
                            top_k=params.top_k, keep_top_k=params.keep_top_k, frame_size=frame_size,
                            min_sizes=self.min_sizes, steps=self.steps, variances=self.variances)


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
