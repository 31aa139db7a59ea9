"""68-point face landmarks with a 2D-FAN-4 artifact, cropped and decoded as 1adrianb/face-alignment does.

For each face box ``[x1, y1, x2, y2]`` (image pixels):

1. centre and scale (``api.get_landmarks_from_image``): ``cx = x2 - (x2 - x1) / 2``,
   ``cy = y2 - (y2 - y1) / 2 - 0.12 (y2 - y1)``, ``scale = (x2 - x1 + y2 - y1) / reference_scale``
   (195 for face_alignment's sfd/blazeface/dlib detectors, 165 for its RetinaFace/SCRFD/YuNet);
2. crop (``utils.crop``): the square window ``[ul, br)`` of side about ``h = 200 scale`` around
   the centre (:func:`crop_window`, computed as face_alignment does in float32), zeros where it
   leaves the image, resized to 256 x 256 bilinear; RGB, pixel / 255;
3. the network's 68 heatmaps (64 x 64) are decoded as ``utils.get_preds_fromhm``
   (:func:`decode_heatmaps`: argmax, +-0.25 px toward the larger neighbour) and mapped back to
   image pixels as ``transform_np(..., invert=True)`` (:func:`heatmap_to_image`): whole numbers,
   truncated toward zero, as face_alignment returns them. The score of a point is its heatmap's
   maximum.

Optionally (``flip=True``, face_alignment's ``flip_input``) the mirrored crop is run too and its
heatmaps, mirrored back with the left/right point pairs swapped, are ADDED to the first ones.

:func:`landmarks_68_to_5` turns 68 points into the 5 (eyes, nose tip, mouth corners) the
aligners take, as FaceFusion's ``convert_to_face_landmark_5`` does. Torch-free.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.fan import CROP_SIZE, PIXELS
from ffkit.recipes.spec import PixelFormat

from .sessions import SessionSettings, create_session, run_session

__all__ = ["REFERENCE_SCALES", "FLIP_PAIRS", "Landmarker", "face_center_scale", "crop_window", "crop_face",
           "decode_heatmaps", "heatmap_to_image", "flip_heatmaps", "landmarks_68_to_5"]

#: face_alignment's ``reference_scale`` per detector (``detection/*/..._detector.py``): the box
#: size (width + height) that maps to ``scale = 1``, i.e. a 200 px crop window.
REFERENCE_SCALES = {"sfd": 195.0, "blazeface": 195.0, "dlib": 195.0, "folder": 195.0,
                    "retinaface": 165.0, "scrfd": 165.0, "yunet": 165.0}
#: face_alignment ``SCALE_FACTOR`` (window side = 200 * scale) and ``CENTER_Y_OFFSET``.
SCALE_FACTOR = 200.0
CENTER_Y_OFFSET = 0.12

#: ``utils.shuffle_lr``: the landmark a point becomes in the mirrored face (iBUG 68-point order).
FLIP_PAIRS = (16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
              27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, 54, 53, 52,
              51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65)


def face_center_scale(box, reference_scale: float = REFERENCE_SCALES["retinaface"]) -> tuple[np.ndarray, float]:
    """face_alignment's crop centre and scale for one face box.

    Args:
        box: ``[x1, y1, x2, y2]`` (further entries, e.g. a score, ignored) in image pixels.
        reference_scale: see :data:`REFERENCE_SCALES`.

    Returns:
        ``(centre (2,) float64 (x, y), scale)``, computed in float64 in the original's order.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).ravel()[:4])
    center = np.array([x2 - (x2 - x1) / 2.0, y2 - (y2 - y1) / 2.0])
    center[1] = center[1] - (y2 - y1) * CENTER_Y_OFFSET
    return center, (x2 - x1 + y2 - y1) / float(reference_scale)


def crop_window(center: np.ndarray, scale: float, resolution: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The image window ``[ul, br)`` that ``utils.crop`` cuts, as two ``(x, y)`` int arrays.

    As face_alignment's ``transform(p, center, scale, resolution, invert=True)`` at ``p = (1, 1)``
    and ``p = (resolution, resolution)``: the float32 matrix ``[[r/h, 0, r(0.5 - cx/h)], [0, r/h,
    r(0.5 - cy/h)], [0, 0, 1]]`` (``h = 200 scale``) inverted in float32, applied in float32,
    truncated toward zero; mathematically ``ul = int(h/r + c - h/2)``, ``br = int(c + h/2)``.
    """
    h = SCALE_FACTOR * float(scale)
    t = np.eye(3, dtype=np.float32)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-float(center[0]) / h + 0.5)
    t[1, 2] = resolution * (-float(center[1]) / h + 0.5)
    inverse = np.linalg.inv(t)
    corners = np.array([[1.0, 1.0, 1.0], [resolution, resolution, 1.0]], dtype=np.float32)
    points = (corners @ inverse.T)[:, :2]
    ul, br = np.trunc(points).astype(np.int64)
    return ul, br


def crop_face(image: np.ndarray, center: np.ndarray, scale: float, resolution: int = CROP_SIZE) -> np.ndarray:
    """``utils.crop``: the window of :func:`crop_window` resized to ``resolution`` square.

    Args:
        image: ``H x W x C`` uint8 (any channel order; it is kept).
        center, scale: from :func:`face_center_scale`.

    Returns:
        ``resolution x resolution x C`` uint8: the window (zeros where it leaves the image; a
        window wholly outside gives zeros, where the original fails) resized with
        ``cv2.INTER_LINEAR``.
    """
    ul, br = crop_window(center, scale, resolution)
    height, width = image.shape[:2]
    side_x, side_y = int(br[0] - ul[0]), int(br[1] - ul[1])
    if side_x < 1 or side_y < 1:
        raise ValueError(f"face box too small to crop (window {side_x} x {side_y} px)")
    window = np.zeros((side_y, side_x, *image.shape[2:]), dtype=np.uint8)
    x0, y0 = max(int(ul[0]), 0), max(int(ul[1]), 0)
    x1, y1 = min(int(br[0]), width), min(int(br[1]), height)
    if x1 > x0 and y1 > y0:
        window[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]] = image[y0:y1, x0:x1]
    return cv2.resize(window, (int(resolution), int(resolution)), interpolation=cv2.INTER_LINEAR)


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``utils.get_preds_fromhm`` without the image transform: peak positions and values.

    Per map (``H x W``, 64 x 64 for FAN): ``idx`` = the first maximum in row-major order
    (``numpy.argmax``), ``x = idx % W + 1``, ``y = idx // W + 1``; off the 1-px border ring
    (``0 < col < W-1`` and ``0 < row < H-1``) each coordinate moves by ``0.25 * sign`` of the
    difference of its two neighbours along that axis (``sign(0) = 0``: no move); then both
    lose 0.5.

    Args:
        heatmaps: ``N x K x H x W`` (or ``K x H x W``) float.

    Returns:
        ``(points N x K x 2 float32 (x, y) in heatmap pixels, scores N x K float32 peak values)``;
        crop pixels are ``points * (crop side / W)`` (4 for FAN).
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    hm = hm[None] if hm.ndim == 3 else hm
    n, k, height, width = hm.shape
    flat = hm.reshape(n, k, height * width)
    idx = np.argmax(flat, axis=-1)
    scores = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    col, row = idx % width, idx // width
    points = np.stack([col + 1, row + 1], axis=-1).astype(np.float32)
    inner = (col > 0) & (col < width - 1) & (row > 0) & (row < height - 1)
    c, r = np.clip(col, 1, width - 2), np.clip(row, 1, height - 2)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = hm[ni, ki, r, c + 1] - hm[ni, ki, r, c - 1]
    dy = hm[ni, ki, r + 1, c] - hm[ni, ki, r - 1, c]
    shift = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * np.float32(0.25)
    points += np.where(inner[..., None], shift, np.float32(0.0)).astype(np.float32)
    points -= np.float32(0.5)
    return points, scores.astype(np.float32)


def heatmap_to_image(points: np.ndarray, center: np.ndarray, scale: float, resolution: int = 64) -> np.ndarray:
    """``transform_np(p, center, scale, resolution, invert=True)`` for each heatmap point.

    The float64 matrix ``[[r/h, 0, r(0.5 - cx/h)], [0, r/h, r(0.5 - cy/h)], [0, 0, 1]]``
    (``h = 200 scale``) is inverted with ``numpy.linalg.pinv`` and applied to ``(x, y, 1)``;
    the result is truncated toward zero (``astype(int32)``), as face_alignment returns it:
    ``x_img = int(x h / r + cx - h / 2)`` (a value that is mathematically a whole number can come
    out one lower through the pseudo-inverse's rounding, as in the original).

    Args:
        points: ``K x 2`` (x, y) heatmap coordinates from :func:`decode_heatmaps`.

    Returns:
        ``K x 2`` float32 image pixels (whole numbers).
    """
    h = SCALE_FACTOR * float(scale)
    t = np.eye(3)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-float(center[0]) / h + 0.5)
    t[1, 2] = resolution * (-float(center[1]) / h + 0.5)
    inv = np.linalg.pinv(t)
    p = np.asarray(points, dtype=np.float32).astype(np.float64)
    x = inv[0, 0] * p[:, 0] + inv[0, 1] * p[:, 1] + inv[0, 2]
    y = inv[1, 0] * p[:, 0] + inv[1, 1] * p[:, 1] + inv[1, 2]
    return np.stack([x, y], axis=-1).astype(np.int32).astype(np.float32)


def flip_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """``utils.flip(h, is_label=True)``: channel ``k`` becomes channel ``FLIP_PAIRS[k]``, then
    the width axis is reversed. ``N x 68 x H x W`` in and out."""
    return np.ascontiguousarray(np.asarray(heatmaps)[:, list(FLIP_PAIRS)][..., ::-1])


def landmarks_68_to_5(points68: np.ndarray) -> np.ndarray:
    """FaceFusion's ``convert_to_face_landmark_5``: ``[mean(36..41), mean(42..47), 30, 48, 54]``.

    The image-left eye (points 36-41: the subject's right eye), the image-right eye (42-47),
    the nose tip, the image-left and image-right mouth corners: the 5-point order of
    RetinaFace and the alignment templates.

    Args:
        points68: ``68 x 2`` (or ``K x 68 x 2``) points.

    Returns:
        ``5 x 2`` (or ``K x 5 x 2``), the input's float dtype (float32 for integers).
    """
    p = np.asarray(points68)
    p = p.astype(np.float32) if not np.issubdtype(p.dtype, np.floating) else p
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks_68_to_5 expects ... x 68 x 2 points, got {p.shape}")
    return np.stack([np.mean(p[..., 36:42, :], axis=-2), np.mean(p[..., 42:48, :], axis=-2),
                     p[..., 30, :], p[..., 48, :], p[..., 54, :]], axis=-2)


class Landmarker:
    """A 2D-FAN-4 session with face_alignment's crop and decode.

    Args:
        session: onnxruntime session of a ``fan_2dfan4`` artifact (input ``N x 3 x 256 x 256``
            RGB in [0, 1]; output ``heatmaps`` ``N x 68 x 64 x 64``, or a file's single 4-D output).
        pixels: how the crop becomes the input (the recipe's: RGB, pixel / 255).
        reference_scale: box size that maps to scale 1 (:data:`REFERENCE_SCALES`); the default,
            165, is face_alignment's for RetinaFace boxes (ffkit's detector).
        flip: also run the mirrored crop and add its mirrored heatmaps (face_alignment's
            ``flip_input``: on by default at its HEAD since 2026-04, off before; FaceFusion: off).
    """

    def __init__(self, session: ort.InferenceSession, *, pixels: PixelFormat = PIXELS,
                 reference_scale: float = REFERENCE_SCALES["retinaface"], flip: bool = False):
        self.session = session
        self.pixels = pixels
        self.reference_scale = float(reference_scale)
        self.flip = bool(flip)
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else 0   # 0: any batch
        outputs = session.get_outputs()
        named = [o.name for o in outputs if o.name == "heatmaps"]
        maps = [o.name for o in outputs if len(o.shape) == 4]
        self.output_name = (named or maps or [outputs[0].name])[0]

    @classmethod
    def from_file(cls, path: str | os.PathLike, settings: SessionSettings = SessionSettings(),
                  **options) -> Landmarker:
        """A Landmarker on a new session of the artifact at ``path`` (:func:`create_session`)."""
        return cls(create_session(path, settings), **options)

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """The network's heatmaps ``K x 68 x 64 x 64`` float32 for crops ``K x 256 x 256 x 3``
        uint8 BGR (converted to RGB / 255), plus the mirrored crops' when ``flip`` is on."""
        x = self.pixels.to_tensor(crops).astype(self.input_dtype, copy=False)
        out = self._run(x)
        if self.flip:
            out = out + flip_heatmaps(self._run(np.ascontiguousarray(x[..., ::-1])))
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        step = self.batch or len(x)
        parts = [run_session(self.session, {self.input_name: x[i:i + step]})[self.output_name]
                 for i in range(0, len(x), step)]
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """68 landmarks of each face box in ``image``.

        Args:
            image: ``H x W x 3`` uint8 BGR.
            boxes: ``K x 4`` (or ``K x 5`` with scores) ``[x1, y1, x2, y2]`` in image pixels,
                e.g. :class:`~ffkit.runtime.retinaface_decode.Detections` ``.boxes``.

        Returns:
            ``(points K x 68 x 2 float32 (x, y) image pixels, whole numbers as face_alignment
            gives them; scores K x 68 float32, each point's heatmap maximum)``.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"landmarks expects an H x W x 3 uint8 BGR image, got {image.shape} {image.dtype}")
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            return np.zeros((0, 68, 2), np.float32), np.zeros((0, 68), np.float32)
        boxes = np.atleast_2d(boxes)
        if boxes.ndim != 2 or boxes.shape[1] < 4 or not np.all(np.isfinite(boxes[:, :4])):
            raise ValueError(f"boxes must be K x 4 finite [x1, y1, x2, y2], got shape {boxes.shape}")
        frames = [face_center_scale(b, self.reference_scale) for b in boxes]
        crops = np.stack([crop_face(image, c, s, CROP_SIZE) for c, s in frames])
        maps = self.heatmaps(crops)
        points, scores = decode_heatmaps(maps)
        side = maps.shape[-2]   # face_alignment maps back at the heatmap height H
        image_points = np.stack([heatmap_to_image(p, c, s, side) for p, (c, s) in zip(points, frames)])
        return image_points, scores
