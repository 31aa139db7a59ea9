"""Faces followed between frames of a video: full detection every k-th frame, the detector on a
crop around each face's last box in between, and a temporal filter on the 5 landmarks (torch-free).

Its one job is per-video state in decode order: :meth:`FaceTracker.step` must be called once
per frame, in order, from one thread (``swap_video`` calls it in its decode loop and hands the
result to the worker threads through ``Pipeline.process_frame(detections=, similarities=)``).
Frames are ``H x W x 3`` uint8 **BGR**; boxes ``[x1, y1, x2, y2]`` and landmarks ``5 x 2`` in
frame pixels.

* On a key frame (index ``0, k, 2k, ...``) the whole frame is detected; each detection is
  matched to a live track by box IoU (greedy, best first, ``>= min_iou``), unmatched
  detections start tracks, unmatched tracks end.
* On the frames between, each track's face is searched for by the detector on a square crop
  of side ``crop_scale * max(box width, height)`` centred on its last box (clipped to the
  frame) and mapped back to frame pixels; the detection overlapping the last box most
  (IoU ``>= min_iou``) continues the track, and a track whose face is not found ends (a face
  that left the frame is not kept).
* ``smooth`` = ``s`` in ``[0, 1)``: the landmarks of a track are an exponential moving average
  ``L_t = (1 - s) * D_t + s * L_{t-1}`` of its detected landmarks ``D_t`` (``s = 0``: raw
  detections). Larger ``s`` removes more jitter and lags more: a face moving at ``v`` px per
  frame is followed ``v * s / (1 - s)`` px behind (0.5: one frame's motion).
* ``--reference`` mode: the similarity of a track's face to the reference is computed once,
  when the track starts, and kept along the track.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ffkit.recipes.errors import FfkitError

from .detection import DetectParams, Detections, FaceDetector

__all__ = ["TrackOptions", "Track", "FaceTracker", "box_iou", "landmark_jitter"]


@dataclass(frozen=True)
class TrackOptions:
    """How faces are followed between frames.

    Attributes:
        detect_every: full-frame detection every this many frames (1: every frame, no crops).
        smooth: exponential filter weight ``s`` of the previous landmarks, ``0 <= s < 1``
            (0: off); see the module docstring.
        crop_scale: side of the search crop around the last box, in box sides (>= 1).
        min_iou: IoU with the last box that a detection needs to continue a track (0..1).
    """

    detect_every: int = 1
    smooth: float = 0.0
    crop_scale: float = 2.0
    min_iou: float = 0.3

    def __post_init__(self) -> None:
        if int(self.detect_every) < 1:
            raise FfkitError(f"--detect-every {self.detect_every}: a whole number >= 1 (1 = every frame)")
        if not 0.0 <= float(self.smooth) < 1.0:
            raise FfkitError(f"--smooth {self.smooth}: a weight 0 <= s < 1 (0 = off, 0.5 = moderate)")
        if self.crop_scale < 1.0 or not 0.0 <= self.min_iou <= 1.0:
            raise FfkitError(f"crop_scale {self.crop_scale} (>= 1) / min_iou {self.min_iou} (0..1) out of range")

    @property
    def active(self) -> bool:
        """Whether this changes anything compared with detecting every frame independently."""
        return self.detect_every > 1 or self.smooth > 0.0


@dataclass
class Track:
    """One followed face: its id, last raw box and score, filtered landmarks (``5 x 2``), and
    its similarity to the reference (None outside ``reference`` mode)."""

    track_id: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    similarity: Optional[float] = None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)`` (``[x1, y1, x2, y2]``): ``(N, M)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def landmark_jitter(series: np.ndarray) -> float:
    """Mean frame-to-frame jitter of a landmark track ``(T, 5, 2)`` (pixels): the mean norm of
    the second difference ``L[t+1] - 2 L[t] + L[t-1]`` (0 for motion at constant speed)."""
    s = np.asarray(series, np.float64)
    if len(s) < 3:
        return 0.0
    return float(np.linalg.norm(s[2:] - 2 * s[1:-1] + s[:-2], axis=-1).mean())


class FaceTracker:
    """Per-video face state; call :meth:`step` once per frame, in decode order.

    Args:
        detector: any :class:`~ffkit.runtime.detection.FaceDetector` (only its ``detect`` is used).
        params: its settings (the same on key frames and on crops).
        options: :class:`TrackOptions`.
        similarity: ``similarity(frame, landmarks 5 x 2) -> float`` (the reference's cosine
            similarity; ``reference`` mode), called once per new track.
    """

    def __init__(self, detector: FaceDetector, params: DetectParams = DetectParams(),
                 options: TrackOptions = TrackOptions(),
                 similarity: Optional[Callable[[np.ndarray, np.ndarray], float]] = None):
        self.detector = detector
        self.params = params
        self.options = options
        self.similarity = similarity
        self.tracks: list[Track] = []
        self.frame_index = 0
        self._next_id = 0
        self.detector_calls = {"frame": 0, "crop": 0}

    def step(self, frame: np.ndarray) -> tuple[Detections, Optional[np.ndarray]]:
        """The faces of the next frame (``H x W x 3`` uint8 BGR).

        Returns:
            ``(detections, similarities)``: :class:`Detections` of the live tracks sorted by
            score (boxes raw, landmarks filtered), and ``(K,)`` float32 similarities to the
            reference (None without a ``similarity`` function).
        """
        key = self.frame_index % self.options.detect_every == 0
        self.frame_index += 1
        if key:
            self.detector_calls["frame"] += 1
            self._update_from(frame, self.detector.detect(frame, self.params))
        else:
            self._follow(frame)
        return self._current()

    # ------------------------------------------------------------------ key frames

    def _update_from(self, frame: np.ndarray, dets: Detections) -> None:
        ious = box_iou(np.stack([t.box for t in self.tracks]) if self.tracks else np.zeros((0, 4)), dets.boxes)
        matched: dict[int, int] = {}   # detection -> track index
        pairs = sorted(((ious[t, d], t, d) for t in range(ious.shape[0]) for d in range(ious.shape[1])),
                       reverse=True)
        used_tracks: set[int] = set()
        for iou, t, d in pairs:
            if iou < self.options.min_iou or t in used_tracks or d in matched:
                continue
            matched[d] = t
            used_tracks.add(t)
        live = []
        for d in range(len(dets)):
            if d in matched:
                track = self.tracks[matched[d]]
                self._advance(track, dets.boxes[d], dets.scores[d], dets.landmarks[d])
            else:
                track = self._start(frame, dets.boxes[d], dets.scores[d], dets.landmarks[d])
            live.append(track)
        self.tracks = live

    def _start(self, frame: np.ndarray, box, score, landmarks) -> Track:
        lm = np.asarray(landmarks, np.float32).copy()
        sim = float(self.similarity(frame, lm)) if self.similarity is not None else None
        track = Track(self._next_id, np.asarray(box, np.float32).copy(), float(score), lm, sim)
        self._next_id += 1
        return track

    def _advance(self, track: Track, box, score, landmarks) -> None:
        s = float(self.options.smooth)
        raw = np.asarray(landmarks, np.float32)
        track.landmarks = ((1.0 - s) * raw + s * track.landmarks).astype(np.float32)
        track.box = np.asarray(box, np.float32).copy()
        track.score = float(score)

    # ------------------------------------------------------------------ frames between

    def crop_window(self, box: np.ndarray, frame_shape: tuple[int, ...]) -> Optional[tuple[int, int, int, int]]:
        """``(x0, y0, x1, y1)`` integer crop of side ``crop_scale * max(w, h)`` centred on
        ``box``, clipped to the frame; None when nothing of it is inside."""
        h, w = frame_shape[:2]
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = self.options.crop_scale * max(box[2] - box[0], box[3] - box[1]) / 2.0
        x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
        x1, y1 = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None

    def _follow(self, frame: np.ndarray) -> None:
        live = []
        for track in self.tracks:
            window = self.crop_window(track.box, frame.shape)
            if window is None:
                continue
            x0, y0, x1, y1 = window
            self.detector_calls["crop"] += 1
            dets = self.detector.detect(np.ascontiguousarray(frame[y0:y1, x0:x1]), self.params)
            if not len(dets):
                continue
            offset = np.array([x0, y0], np.float32)
            boxes = dets.boxes + np.tile(offset, 2)
            ious = box_iou(track.box[None], boxes)[0]
            best = int(np.argmax(ious))
            if ious[best] < self.options.min_iou:
                continue
            self._advance(track, boxes[best], dets.scores[best], dets.landmarks[best] + offset)
            live.append(track)
        self.tracks = self._dedupe(live)

    def _dedupe(self, tracks: list[Track]) -> list[Track]:
        """Two tracks that converged on one face (IoU > 0.7): keep the older one."""
        kept: list[Track] = []
        for track in sorted(tracks, key=lambda t: t.track_id):
            if all(box_iou(track.box[None], k.box[None])[0, 0] <= 0.7 for k in kept):
                kept.append(track)
        return kept

    def _current(self) -> tuple[Detections, Optional[np.ndarray]]:
        tracks = sorted(self.tracks, key=lambda t: -t.score)
        dets = Detections(boxes=np.array([t.box for t in tracks], np.float32).reshape(-1, 4),
                          scores=np.array([t.score for t in tracks], np.float32),
                          landmarks=np.array([t.landmarks for t in tracks], np.float32).reshape(-1, 5, 2))
        sims = None
        if self.similarity is not None:
            sims = np.array([t.similarity for t in tracks], np.float32)
        return dets, sims

