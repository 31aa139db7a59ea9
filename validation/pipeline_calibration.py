"""Calibration samples recorded where each model really runs: the FP32 pipeline on the user's
images, every model's inputs captured as its session receives them.

``ffkit quantize --int8 --calib DIR`` feeds a model what :mod:`.calibration` makes of DIR's
images: the detector its frames, every other model a centred square crop, the swappers a
random unit-norm latent. Inside the swap chain the models see something else: aligned face
crops at the template's pose and scale, the latent of a real face, the parser's and
enhancer's crops of swapped faces. INT8 ranges taken from the wrong distribution clip what
the pipeline feeds (or waste their 256 steps on what it never feeds), so :func:`record_role_inputs`
runs the reference pipeline (:class:`~ffkit.runtime.frame_pipeline.Pipeline`, the swap
options given) on the calibration images and keeps, per role, the tensors its session got:
exactly the detector's resized frames, the aligned crops, the source latents (the given
source face's and every calibration face's, so more than one identity is seen), the crops of
the parser, landmarker, face enhancer and the frame enhancer's tiles.

Sessions run on the CPU here whatever the swap's providers are: what is recorded is the
models' inputs, and the FP32 reference computes those the same way on any provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.frame_pipeline import Pipeline
from ffkit.runtime.media import is_image_path, is_video_path, iter_frames, probe_video, read_image
from ffkit.runtime.models import ROLES
from ffkit.runtime.sessions import SessionPool, check_run, resolve_providers

from .calibration import CalibrationError, CalibrationSet

__all__ = ["RecordingSession", "record_role_inputs", "calibration_frames"]

#: How a recorded set names its origin (its ``CalibrationSet.files``).
RECORDED = "recorded in the FP32 pipeline"
#: Frames taken from each calibration video (evenly spread over its first ``VIDEO_SCAN`` frames, or all it has).
VIDEO_FRAMES = 8
VIDEO_SCAN = 240


class RecordingSession:
    """An onnxruntime session that keeps a batch-1 copy of every input it is run on (at most
    ``limit`` samples) and otherwise behaves as the session it wraps (the run-size guard of
    :func:`~ffkit.runtime.sessions.check_run` included)."""

    def __init__(self, session, limit: int):
        self._session = session
        self.limit = limit
        self.samples: list[dict[str, np.ndarray]] = []

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, output_names, feeds: Mapping[str, np.ndarray], *args, **kwargs):
        check_run(self._session, feeds)
        first = next(iter(feeds.values()), None)
        batch = int(first.shape[0]) if first is not None and first.ndim else 1
        for b in range(batch):
            if len(self.samples) >= self.limit:
                break
            self.samples.append({k: np.array(v[b:b + 1] if v.ndim else v, copy=True) for k, v in feeds.items()})
        return self._session.run(output_names, feeds, *args, **kwargs)


def calibration_frames(folder: Path) -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8 BGR)`` of the images in ``folder`` (name order) and up to
    :data:`VIDEO_FRAMES` frames of each video in it; unreadable files are skipped."""
    frames: list[tuple[str, np.ndarray]] = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            if is_image_path(path):
                frames.append((path.name, read_image(path)))
            elif is_video_path(path):
                step = max(1, min(probe_video(path).frame_count or VIDEO_SCAN, VIDEO_SCAN) // VIDEO_FRAMES)
                for k, frame in enumerate(iter_frames(path)):
                    if k >= step * VIDEO_FRAMES:
                        break
                    if k % step == 0:
                        frames.append((f"{path.name}#{k}", frame))
        except FfkitError:
            continue
    return frames


def record_role_inputs(selection, options, source_image: np.ndarray, calib: Path, *, source_name: str = "source",
                       roles: Sequence[str] | None = None, limit: int = 32, sources_per_frame: int = 1,
                       on_step: Callable[[str], None] = lambda message: None) -> dict[str, CalibrationSet]:
    """Run the FP32 pipeline of ``selection`` (a :class:`~ffkit.runtime.models.ModelSelection`)
    with the swap ``options`` (:class:`~ffkit.runtime.frame_pipeline.SwapOptions`) on the
    images and videos of ``calib`` and return, per role in ``roles`` (default: every role the
    selection uses), the inputs its model received: a :class:`CalibrationSet` of at most
    ``limit`` batch-1 samples, in the order they were run. ``source_image``: the swap's source
    face (``H x W x 3`` uint8 BGR; ``source_name`` names it in errors); the largest face of
    every calibration image is a source too: frame ``i`` is swapped with ``sources_per_frame``
    sources taken in turn from the ``i``-th on (the given face first, then each image's), never
    with its own face (more
    identities for the swapper; the detector sees each frame once more). A role that received
    nothing (no face was found) is left out.

    Raises:
        CalibrationError: ``calib`` holds no readable image or video.
        FfkitError: no face in the source image (one line naming ``source_name``).
    """
    frames = calibration_frames(calib)
    if not frames:
        raise CalibrationError(f"{calib}: no readable calibration image or video")
    pool = SessionPool(resolve_providers("cpu"))
    pipe = Pipeline.from_models(selection, pool, options)
    wanted = [r for r in ROLES if getattr(selection, r, None) is not None and (roles is None or r in roles)]
    recorders = {}
    for role in wanted:
        model = getattr(pipe, role, None)
        if model is not None and getattr(model, "session", None) is not None:
            recorders[role] = model.session = RecordingSession(model.session, limit)
    sources = [(None, pipe.prepare_source(source_image, source_name))]
    for name, frame in frames:
        try:
            sources.append((name, pipe.prepare_source(frame, name)))
        except FfkitError:   # no face in it: still a frame for the detector
            continue
    for i, (name, frame) in enumerate(frames):
        on_step(f"calibration: recording the pipeline's inputs ({i + 1}/{len(frames)}: {name})")
        detections = pipe.detector.detect(frame, pipe.options.detect)
        for face in _other_sources(sources, name, i, sources_per_frame):
            pipe.process_frame(frame, face, detections=detections)
    found = {}
    for role, rec in recorders.items():
        if rec.samples:
            found[role] = CalibrationSet(getattr(selection, role).recipe.name, rec.samples,
                                         files=[f"{RECORDED}: the {role}'s inputs on {calib}"])
    return found


def _other_sources(sources: list, frame_name: str, i: int, count: int) -> list:
    """``count`` sources from the ``i``-th on (cyclic), skipping the frame's own face."""
    turn = sources[i % len(sources):] + sources[:i % len(sources)]
    return [face for name, face in turn if name != frame_name][:count]
