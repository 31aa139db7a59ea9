"""FaceFusion 3.8.1's own pre- and post-processing of the slots ffkit wraps, transcribed.

Read from ``face_detector.py`` (``detect_with_retinaface``, ``prepare_detect_frame``,
``normalize_detect_frame``), ``face_helper.py`` (``create_static_anchors``,
``distance_to_bounding_box``, ``distance_to_face_landmark_5``), ``face_landmarker.py``
(``detect_with_2dfan4``) and ``processors/modules/face_swapper/core.py`` (``forward_swap_face``):
what FaceFusion does with a file in the slot, so that :mod:`.checks` can hold a wrapped file to
it. Everything is at the network input's scale (FaceFusion's resize ratios and crop transforms
are the same for any file in the slot, so they are left out). Torch-free.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["detector_input", "static_anchors", "retinaface_faces", "fan_input", "fan_points", "swapper_feed"]

#: ``detect_with_retinaface``: strides, outputs per kind, anchors per location.
STRIDES = (8, 16, 32)
ANCHORS = 2


def detector_input(frame_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """``prepare_detect_frame`` + ``normalize_detect_frame(.., [-1, 1])``: the (already
    restricted) BGR frame pasted top-left on a zero ``height x width`` canvas, ``(x - 127.5) / 128``,
    ``1 x 3 x height x width`` float32."""
    canvas = np.zeros((height, width, 3))
    canvas[:frame_bgr.shape[0], :frame_bgr.shape[1], :] = frame_bgr
    canvas = np.expand_dims(canvas.transpose(2, 0, 1), axis=0).astype(np.float32)
    return (canvas - 127.5) / 128.0


def static_anchors(stride: int, anchor_total: int, rows: int, cols: int) -> np.ndarray:
    """``create_static_anchors``: ``(rows * cols * anchor_total) x 2`` anchor points ``(x, y)`` in
    input pixels, ``anchor_total`` copies per location, locations row-major (as FaceFusion's
    ``mgrid`` gives them for a square input; for a non-square one FaceFusion's own order is kept)."""
    x, y = np.mgrid[:cols, :rows]
    anchors = np.stack((y, x), axis=-1)
    anchors = (anchors * stride).reshape((-1, 2))
    return np.stack([anchors] * anchor_total, axis=1).reshape((-1, 2))


def retinaface_faces(outputs: Sequence[np.ndarray], width: int, height: int,
                     score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``detect_with_retinaface``'s decode of the 9 outputs, before NMS, at input scale.

    Args:
        outputs: scores ``K x 1`` for strides 8, 16, 32, then boxes ``K x 4``, then points
            ``K x 10`` (distances in stride units).
        width, height: the detector size (``face_detector_size``).
        score: ``face_detector_score``; anchors scoring at least it are kept.

    Returns:
        ``(boxes M x 4 [x1, y1, x2, y2], scores M, points M x 5 x 2)``, stride by stride, anchor
        order within a stride. FaceFusion skips a stride whose only kept anchor is index 0
        (``numpy.any(keep_indices)``); that quirk is kept.
    """
    boxes, scores, points = [], [], []
    for index, stride in enumerate(STRIDES):
        raw_scores = outputs[index]
        keep = np.where(raw_scores >= score)[0]
        if not np.any(keep):
            continue
        anchors = static_anchors(stride, ANCHORS, height // stride, width // stride)
        distance = outputs[index + len(STRIDES)] * stride
        kps = outputs[index + 2 * len(STRIDES)] * stride
        box = np.column_stack([anchors[:, 0] - distance[:, 0], anchors[:, 1] - distance[:, 1],
                               anchors[:, 0] + distance[:, 2], anchors[:, 1] + distance[:, 3]])
        pts = np.stack((anchors[:, 0::2] + kps[:, 0::2], anchors[:, 1::2] + kps[:, 1::2]), axis=-1)
        boxes.append(box[keep])
        scores.append(raw_scores[keep][:, 0])
        points.append(pts[keep])
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


def fan_input(crop_bgr: np.ndarray) -> np.ndarray:
    """``detect_with_2dfan4``'s tensor: the 256 x 256 BGR crop ``transpose(2, 0, 1) / 255``,
    fed as a one-item list (``1 x 3 x 256 x 256``). FaceFusion's contrast step (CLAHE on dark
    crops) is left out: it changes the crop, not the file's contract."""
    return np.asarray([crop_bgr.transpose(2, 0, 1).astype(np.float32) / 255.0])


def fan_points(outputs: Sequence[np.ndarray], crop_size: int = 256) -> tuple[np.ndarray, float]:
    """``detect_with_2dfan4``'s decode at crop scale: ``landmarks[:, :, :2][0] / 64 * crop_size``
    (68 x 2 crop pixels) and the score ``interp(mean(max of each heatmap), [0, 0.9], [0, 1])``."""
    landmarks, heatmaps = outputs[0], outputs[1]
    points = landmarks[:, :, :2][0] / 64 * crop_size
    score = float(np.interp(np.mean(np.amax(heatmaps, axis=(2, 3))), [0, 0.9], [0, 1]))
    return points, score


def swapper_feed(input_names: Sequence[str], target: np.ndarray, source: np.ndarray) -> Mapping[str, np.ndarray]:
    """``forward_swap_face``'s feed: by input NAME, ``source`` (the identity) and ``target`` (the
    crop); an input of any other name is not fed (onnxruntime then refuses the run)."""
    feed = {}
    for name in input_names:
        if name == "source":
            feed[name] = source
        if name == "target":
            feed[name] = target
    return feed
