"""The detector interface: what every face-detector family implements, its settings and its result.

A family (RetinaFace, ...) is one :class:`FaceDetector` subclass in :mod:`ffkit.runtime.detectors`,
registered in that package's ``FAMILIES`` table under the ``decoder`` name its recipes declare
(:class:`ffkit.recipes.spec.DetectorDecode`). :meth:`FaceDetector.detect` runs the same four steps
for every family:

1. :meth:`~FaceDetector.size`: the image as the network input (``h x w x 3`` uint8 BGR) and its
   :class:`Placement` in the image (the family's own rule: shrink, fit into a fixed size, pad);
2. :meth:`~FaceDetector.normalise`: that input as the tensor the file takes (the recipe's
   :class:`~ffkit.recipes.spec.PixelFormat`, cast to the file's input type);
3. :meth:`~FaceDetector.forward`: the session's outputs, float32, in the file's output order;
4. :meth:`~FaceDetector.decode`: those outputs as :class:`Detections` in IMAGE pixels, NMS
   (:meth:`~FaceDetector.suppress`) included.

Nothing here knows a family. Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ffkit.recipes.spec import DetectorDecode, PixelFormat, Recipe

from .sessions import run_session

__all__ = ["DetectParams", "Detections", "Placement", "FaceDetector", "nms"]


@dataclass(frozen=True)
class DetectParams:
    """Detection settings.

    Attributes:
        max_side: shrink the frame so its longer side is at most this many pixels before
            detection (0: feed the frame at its own size; frames are never enlarged). A family
            with a fixed detection size (the recipe's ``input_size``) fits the frame into that.
        score_threshold: keep anchors with face probability ``> score_threshold`` (0..1).
        nms_threshold: IoU above which a lower-scored box is suppressed.
        top_k, keep_top_k: ``detect.py``'s candidate caps before and after NMS.
    """

    max_side: int = 640
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    top_k: int = 5000
    keep_top_k: int = 750


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, sorted by score (descending).

    Attributes:
        boxes: ``(K, 4)`` float32 ``[x1, y1, x2, y2]`` pixels.
        scores: ``(K,)`` float32 face probabilities.
        landmarks: ``(K, 5, 2)`` float32 ``(x, y)`` pixels, points ordered
            left eye, right eye, nose tip, left mouth corner, right mouth
            corner (left/right in image coordinates).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def as_dets(self) -> np.ndarray:
        """``(K, 15)`` float32 rows ``[x1, y1, x2, y2, score, x0, y0, ..., x4, y4]``
        as ``detect.py`` builds them."""
        return np.concatenate(
            (self.boxes, self.scores[:, None], self.landmarks.reshape(-1, 10)), axis=1
        ).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Placement:
    """Where the network input sits in the image it was made from.

    Attributes:
        image_hw: ``(H, W)`` of the image given to :meth:`FaceDetector.detect`.
        input_hw: ``(h, w)`` of the network input.
        content_hw: ``(h, w)`` of the resized image inside the input (the rest is padding);
            equal to ``input_hw`` when nothing is padded.
        offset: ``(x, y)`` input pixel of the resized image's top-left corner (``(0, 0)``:
            top-left placement).
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content_hw: tuple[int, int]
    offset: tuple[int, int] = (0, 0)

    @classmethod
    def identity(cls, h: int, w: int) -> "Placement":
        """The image fed as is: outputs decode to network-input pixels."""
        return cls((int(h), int(w)), (int(h), int(w)), (int(h), int(w)))

    @property
    def resized(self) -> bool:
        """Whether the image was resized to make the input."""
        return self.content_hw != self.image_hw


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, exactly as ``py_cpu_nms``.

    Uses the "+1" pixel convention of the original: area is
    ``(x2 - x1 + 1) * (y2 - y1 + 1)`` and intersections likewise. A box is
    suppressed when its IoU with a kept box is ``> threshold``.

    Args:
        boxes: ``(N, 4)`` ``[x1, y1, x2, y2]``.
        scores: ``(N,)``.
        threshold: IoU threshold.

    Returns:
        ``(K,)`` int64 indices into ``boxes``, in the order kept (descending
        score, ties broken as ``scores.argsort()[::-1]`` does).
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        order = rest[ovr <= threshold]
    return np.asarray(keep, dtype=np.int64)


class FaceDetector(ABC):
    """One detector artifact with its family's pre- and post-processing.

    Args:
        session: onnxruntime session (or a stand-in with ``get_inputs``/``get_outputs``/``run``)
            of a file whose recipe is ``recipe``; its first input is ``N x 3 x H x W``. None
            for a detector that only decodes outputs it is handed (:meth:`decode`, e.g. when
            judging a quantized file's outputs against its reference's).
        recipe: the file's :class:`~ffkit.recipes.spec.Recipe`; ``recipe.pixels`` says how
            pixels become the tensor, ``recipe.detector_decode`` holds the family's constants
            (:attr:`spec`), ``recipe.outputs`` names the outputs in file order.
    """

    def __init__(self, session, recipe: Recipe):
        if recipe.detector_decode is None or recipe.pixels is None:
            raise ValueError(f"{recipe.name}: not a detector recipe (no detector_decode or pixels)")
        self.session = session
        self.recipe = recipe
        self.spec: DetectorDecode = recipe.detector_decode
        self.pixels: PixelFormat = recipe.pixels
        first = session.get_inputs()[0] if session is not None else None
        self.input_name = first.name if first is not None else recipe.input_names[0]
        self.input_dtype = np.float16 if first is not None and first.type == "tensor(float16)" else np.float32
        self.output_names = [o.name for o in session.get_outputs()] if session is not None else recipe.output_names

    @abstractmethod
    def size(self, image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, Placement]:
        """The network input for ``image`` (``H x W x 3`` uint8 BGR): ``(h x w x 3`` uint8 BGR,
        its :class:`Placement`)."""

    @abstractmethod
    def decode(self, outputs: Sequence[np.ndarray], placement: Placement, params: DetectParams) -> Detections:
        """Faces from the network's ``outputs`` (float32, file order, batch of one) for an input
        placed as ``placement``: :class:`Detections` in IMAGE pixels (``placement.image_hw``),
        thresholded, suppressed (:meth:`suppress`) and sorted by score, descending."""

    def input_hw(self) -> tuple[int, int]:
        """The detection size of a family that feeds a fixed size (SCRFD, YOLOFace): the file's fixed
        input ``(H, W)``, else the recipe's ``input_size`` (insightface's and FaceFusion's 640 x 640)."""
        dims = self.recipe.inputs[0].shape[2:4]
        if all(isinstance(d, int) and d > 0 for d in dims):
            return int(dims[0]), int(dims[1])
        return tuple(self.spec.input_size or (640, 640))

    def normalise(self, net_image: np.ndarray) -> np.ndarray:
        """``h x w x 3`` uint8 BGR -> the ``1 x 3 x h x w`` tensor the file takes (the recipe's
        pixel format: channel order, mean, std; float16 for a float16 input)."""
        return self.pixels.to_tensor(net_image).astype(self.input_dtype, copy=False)

    def forward(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the session on ``tensor``: every output as float32, in the file's output order."""
        outs = run_session(self.session, {self.input_name: tensor}, self.output_names)
        return [np.asarray(o, dtype=np.float32) for o in outs.values()]

    def suppress(self, boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
        """The family's NMS: indices of ``boxes`` (``N x 4``) kept, best first. Default:
        :func:`nms` (``py_cpu_nms``, "+1" widths, suppressed when IoU ``> threshold``)."""
        return nms(boxes, scores, threshold)

    def raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The network's outputs for ``image`` (``H x W x 3`` uint8 BGR) fed at its own size,
        keyed by the recipe's output names in file order whatever the file calls them."""
        outs = self.forward(self.normalise(image))
        return {spec.name: o for spec, o in zip(self.recipe.outputs, outs)}

    def detect(self, image: np.ndarray, params: DetectParams = DetectParams()) -> Detections:
        """Faces in ``image`` (``H x W x 3`` uint8 BGR).

        Returns:
            :class:`Detections` sorted by score (descending): boxes ``K x 4`` ``[x1, y1, x2,
            y2]`` and landmarks ``K x 5 x 2`` in ``image`` pixels (not clipped to the image),
            scores ``K`` in 0..1.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect expects an H x W x 3 uint8 BGR image, got {image.shape} {image.dtype}")
        net_image, placement = self.size(image, params)
        return self.decode(self.forward(self.normalise(net_image)), placement, params)
