"""RetinaFace post-processing in pure numpy.

Re-implements the test-time decoding of biubug6/Pytorch_Retinaface
(``detect.py``, ``layers/functions/prior_box.py``, ``utils/box_utils.py``
``decode``/``decode_landm`` and ``utils/nms/py_cpu_nms.py``) without torch.

Conventions
-----------
* Priors are ``[cx, cy, w, h]`` normalised by the *network input* size
  (x by width, y by height), float32, in the exact order PriorBox emits them:
  for each pyramid level, row-major over the feature map (row ``i`` outer,
  column ``j`` inner), then over that level's ``min_sizes``.
* Decoded boxes are ``[x1, y1, x2, y2]`` and landmarks are 5 ``(x, y)``
  points, both in pixels of the network input unless divided by ``resize``.
* Arithmetic is float32, as in the torch original, so results match it to
  float32 rounding.

All parameters (anchor sizes, steps, variances, thresholds) are explicit
arguments; nothing is read from module state at call time.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence, Tuple

import numpy as np

from ffkit.recipes import all_recipes
from ffkit.recipes.spec import Recipe

from .detection import Detections, nms

__all__ = [
    "DECLARED",
    "DEFAULT_MIN_SIZES",
    "DEFAULT_STEPS",
    "DEFAULT_VARIANCES",
    "Detections",
    "prior_boxes",
    "decode_boxes",
    "decode_landmarks",
    "nms",
    "input_to_frame",
    "detect_faces",
]

#: The name RetinaFace recipes give their decode (``DetectorDecode.decoder``).
DECODER = "retinaface"


def _declared() -> Recipe:
    """The first registered recipe decoded as RetinaFace, once every such recipe is seen to
    declare the same decode, pixels and outputs (cfg_mnet and cfg_re50 share them)."""
    found = [r for r in all_recipes() if r.detector_decode is not None and r.detector_decode.decoder == DECODER]
    if not found or len({(r.detector_decode, r.pixels, r.outputs) for r in found}) != 1:
        raise RuntimeError(f"the {DECODER} recipes must declare one decode, pixel format and output list")
    return found[0]


#: A RetinaFace recipe declaration (its decode, pixels and output names are every RetinaFace's).
DECLARED: Recipe = _declared()
# The prior layout of cfg_mnet / cfg_re50 as the recipes declare it: the defaults of the functions below.
DEFAULT_MIN_SIZES: Tuple[Tuple[int, ...], ...] = DECLARED.detector_decode.anchor_sizes
DEFAULT_STEPS: Tuple[int, ...] = DECLARED.detector_decode.strides
DEFAULT_VARIANCES: Tuple[float, float] = DECLARED.detector_decode.variances


def _as_hashable_sizes(min_sizes) -> Tuple[Tuple[float, ...], ...]:
    return tuple(tuple(float(m) for m in level) for level in min_sizes)


@functools.lru_cache(maxsize=32)
def _prior_boxes_cached(height: int, width: int,
                        min_sizes: Tuple[Tuple[float, ...], ...],
                        steps: Tuple[float, ...], clip: bool) -> np.ndarray:
    if len(min_sizes) != len(steps):
        raise ValueError("min_sizes and steps must have one entry per pyramid level")
    levels = []
    for sizes, step in zip(min_sizes, steps):
        # PriorBox: ceil(image_size / step) computed on python floats.
        fh = math.ceil(height / step)
        fw = math.ceil(width / step)
        sizes_arr = np.asarray(sizes, dtype=np.float64)
        n_sizes = sizes_arr.shape[0]
        # Same float64 expression order as PriorBox: (j + 0.5) * step / W.
        cx = (np.arange(fw, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(fh, dtype=np.float64) + 0.5) * step / height
        s_kx = sizes_arr / width
        s_ky = sizes_arr / height
        grid = np.empty((fh, fw, n_sizes, 4), dtype=np.float64)
        grid[..., 0] = cx[None, :, None]
        grid[..., 1] = cy[:, None, None]
        grid[..., 2] = s_kx[None, None, :]
        grid[..., 3] = s_ky[None, None, :]
        levels.append(grid.reshape(-1, 4))
    out = np.concatenate(levels, axis=0).astype(np.float32)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    out.setflags(write=False)
    return out


def prior_boxes(height: int, width: int,
                min_sizes: Sequence[Sequence[float]] = DEFAULT_MIN_SIZES,
                steps: Sequence[float] = DEFAULT_STEPS,
                clip: bool = False) -> np.ndarray:
    """Anchor boxes of RetinaFace for a network input of ``height x width`` pixels.

    Mirrors ``PriorBox.forward``: feature map sizes are
    ``ceil(height / step), ceil(width / step)`` per level; the order is level,
    then feature-map row ``i``, column ``j``, then ``min_size``.

    Returns:
        ``(A, 4)`` float32 array ``[cx, cy, w, h]`` normalised to ``[0, 1]``
        by the input width (x, w) and height (y, h). The array is cached per
        argument set and is **read-only**; copy it before modifying.
    """
    return _prior_boxes_cached(int(height), int(width), _as_hashable_sizes(min_sizes),
                               tuple(float(s) for s in steps), bool(clip))


def decode_boxes(loc: np.ndarray, priors: np.ndarray,
                 variances: Sequence[float] = DEFAULT_VARIANCES) -> np.ndarray:
    """Decode box regressions, as ``utils.box_utils.decode``.

    Args:
        loc: ``(A, 4)`` regression deltas ``[dx, dy, dw, dh]`` (one image).
        priors: ``(A, 4)`` priors ``[cx, cy, w, h]`` (normalised).
        variances: ``(v_center, v_size)``.

    Returns:
        ``(A, 4)`` float32 boxes ``[x1, y1, x2, y2]`` in normalised coordinates
        (multiply by ``[W, H, W, H]`` for pixels).
    """
    loc = np.asarray(loc, dtype=np.float32)
    priors = np.asarray(priors, dtype=np.float32)
    v0 = np.float32(variances[0])
    v1 = np.float32(variances[1])
    centers = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
    # exp in float64 rounded to float32: numpy's float32 exp is less accurate
    # than torch's; this agrees with torch.exp on ~99% of inputs, 1 ulp otherwise.
    growth = np.exp((loc[:, 2:] * v1).astype(np.float64)).astype(np.float32)
    sizes = priors[:, 2:] * growth
    boxes = np.concatenate((centers, sizes), axis=1)
    boxes[:, :2] -= boxes[:, 2:] / np.float32(2)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def decode_landmarks(landms: np.ndarray, priors: np.ndarray,
                     variances: Sequence[float] = DEFAULT_VARIANCES) -> np.ndarray:
    """Decode landmark regressions, as ``utils.box_utils.decode_landm``.

    Args:
        landms: ``(A, 10)`` deltas, ``(x, y)`` interleaved for 5 points
            (left eye, right eye, nose, left mouth corner, right mouth corner,
            "left/right" as seen in the image).
        priors: ``(A, 4)`` priors ``[cx, cy, w, h]``.
        variances: ``(v_center, v_size)``; only ``v_center`` is used.

    Returns:
        ``(A, 10)`` float32 normalised landmark coordinates ``x0, y0, ..., x4, y4``.
    """
    landms = np.asarray(landms, dtype=np.float32)
    priors = np.asarray(priors, dtype=np.float32)
    v0 = np.float32(variances[0])
    deltas = landms.reshape(landms.shape[0], 5, 2)
    pts = priors[:, None, :2] + deltas * v0 * priors[:, None, 2:]
    return pts.reshape(landms.shape[0], 10)


def input_to_frame(points: np.ndarray, input_hw: Tuple[int, int], frame_hw: Tuple[int, int]) -> np.ndarray:
    """Map ``(..., 2k)`` interleaved ``x, y`` network-input pixel coordinates to the frame.

    The network input is the frame resized by ``cv2.resize`` to ``input_hw`` (explicit size, so
    its scale per axis is exactly ``frame / input``). OpenCV puts pixel centres at half
    integers, so input coordinate ``u`` is frame coordinate ``(u + 0.5) * (W / w_in) - 0.5``
    (and likewise ``v`` with ``H / h_in``). Dividing by the scale instead is off by
    ``(W / w_in - 1) / 2`` pixels: 1 px for 1080p -> 640, 2.5 px for 4K -> 640.

    Args:
        points: ``(..., 2k)`` ``x0, y0, x1, y1, ...`` (boxes ``[x1, y1, x2, y2]`` or landmarks).
        input_hw: ``(h_in, w_in)`` of the network input.
        frame_hw: ``(H, W)`` of the frame it was resized from.

    Returns:
        float32 array of ``points``' shape, computed in float64.
    """
    pts = np.asarray(points, dtype=np.float64)
    ratio = np.array([frame_hw[1] / input_hw[1], frame_hw[0] / input_hw[0]], dtype=np.float64)
    ratio = np.tile(ratio, pts.shape[-1] // 2)
    return ((pts + 0.5) * ratio - 0.5).astype(np.float32)


def detect_faces(loc: np.ndarray, conf: np.ndarray, landms: np.ndarray,
                 image_height: int, image_width: int, *,
                 score_threshold: float = 0.02,
                 nms_threshold: float = 0.4,
                 top_k: int = 5000,
                 keep_top_k: int = 750,
                 resize: float = 1.0,
                 frame_size: Tuple[int, int] | None = None,
                 min_sizes: Sequence[Sequence[float]] = DEFAULT_MIN_SIZES,
                 steps: Sequence[float] = DEFAULT_STEPS,
                 variances: Sequence[float] = DEFAULT_VARIANCES,
                 clip: bool = False,
                 suppress: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = nms) -> Detections:
    """Full ``detect.py`` post-processing for ONE image.

    Steps (as in detect.py): priors for the input size; decode boxes and
    landmarks; scale to input pixels (``* [W, H, ...]``) and divide by
    ``resize``; keep ``score > score_threshold`` (strict); keep the
    ``top_k`` best; NMS (py_cpu_nms, on float32 dets); keep the first
    ``keep_top_k``.

    Args:
        loc: ``(A, 4)`` box deltas of one batch element (``(1, A, 4)`` accepted).
        conf: ``(A, 2)`` class probabilities *after* softmax, as the model in
            ``phase='test'`` outputs them; column 1 is "face". A ``(A,)``
            array of face scores is accepted too.
        landms: ``(A, 10)`` landmark deltas.
        image_height, image_width: size of the network input in pixels (the
            tensor fed to the network, after any resizing of the frame).
        score_threshold, nms_threshold, top_k, keep_top_k: detect.py's
            ``confidence_threshold`` (0.02), ``nms_threshold`` (0.4),
            ``top_k`` (5000), ``keep_top_k`` (750).
        resize: factor by which the original frame was scaled to make the
            network input; outputs are divided by it (``boxes / resize``) so
            they are in original-frame pixels. 1.0 keeps input pixels. This is detect.py's
            mapping, biased by ``(1 / resize - 1) / 2`` px (it ignores OpenCV's half-pixel
            centres); ``frame_size`` is the exact one.
        frame_size: ``(H, W)`` of the frame the input was resized from (``cv2.resize`` to
            ``image_height x image_width``); when given (and ``resize`` is 1), outputs are
            mapped half-pixel-exactly with :func:`input_to_frame` before thresholding and NMS.
        min_sizes, steps, variances, clip: anchor configuration
            (``data/config.py`` values by default).
        suppress: the NMS, ``(boxes N x 4, scores N, threshold) -> kept indices, best first``
            (:func:`nms`, detect.py's ``py_cpu_nms``, by default).

    Returns:
        :class:`Detections` in pixel coordinates, sorted by score descending.
    """
    loc = np.asarray(loc, dtype=np.float32)
    landms = np.asarray(landms, dtype=np.float32)
    conf = np.asarray(conf, dtype=np.float32)
    if loc.ndim == 3:
        loc = loc[0]
    if landms.ndim == 3:
        landms = landms[0]
    if conf.ndim == 3:
        conf = conf[0]
    priors = prior_boxes(image_height, image_width, min_sizes, steps, clip)
    if loc.shape[0] != priors.shape[0]:
        raise ValueError(f"loc has {loc.shape[0]} rows but {priors.shape[0]} priors "
                         f"exist for a {image_height}x{image_width} input")

    w = np.float32(image_width)
    h = np.float32(image_height)
    resize32 = np.float32(resize)
    scale = np.array([w, h, w, h], dtype=np.float32)
    scale1 = np.array([w, h] * 5, dtype=np.float32)

    boxes = decode_boxes(loc, priors, variances) * scale / resize32
    scores = conf[:, 1] if conf.ndim == 2 else conf
    lm = decode_landmarks(landms, priors, variances) * scale1 / resize32
    if frame_size is not None:
        if resize != 1.0:
            raise ValueError("pass either resize or frame_size, not both")
        boxes = input_to_frame(boxes, (image_height, image_width), frame_size)
        lm = input_to_frame(lm, (image_height, image_width), frame_size)

    inds = np.where(scores > score_threshold)[0]
    boxes = boxes[inds]
    lm = lm[inds]
    scores = scores[inds]

    order = scores.argsort()[::-1][:top_k]
    boxes = boxes[order]
    lm = lm[order]
    scores = scores[order]

    dets = np.hstack((boxes, scores[:, np.newaxis])).astype(np.float32, copy=False)
    keep = suppress(dets[:, :4], dets[:, 4], nms_threshold)
    dets = dets[keep][:keep_top_k]
    lm = lm[keep][:keep_top_k]

    return Detections(
        boxes=np.ascontiguousarray(dets[:, :4]),
        scores=np.ascontiguousarray(dets[:, 4]),
        landmarks=lm.reshape(-1, 5, 2).astype(np.float32, copy=False),
    )
