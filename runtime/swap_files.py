"""Face swapping of whole files: an image, or a video through ordered worker threads.

Its one job is file orchestration around a :class:`~ffkit.runtime.frame_pipeline.Pipeline`
(which does the per-frame work): :func:`check_output_path` (fail early on a bad output
path), :func:`swap_image`, :func:`swap_video` (streamed, ordered worker pool, audio copied,
frame count, each frame's timestamp (variable frame rate too) and exact size kept, rotated
phone clips written upright; frames without a selected face pass through unchanged),
:func:`swap_file` (either, by suffix), each returning a :class:`SwapSummary`. Frames are
``H x W x 3`` uint8 **BGR**. Outputs are written atomically: on any error no partial
output is left.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np

from ffkit.recipes.errors import FfkitError

from .embedder import cosine_similarity
from .face_tracker import FaceTracker, TrackOptions
from .frame_pipeline import FaceRecord, FrameResult, Pipeline, SourceFace
from .media import (
    MediaError,
    VideoWriter,
    is_image_path,
    is_video_path,
    iter_frames,
    probe_video,
    read_picture,
    write_picture,
)

__all__ = ["SwapSummary", "swap_image", "swap_video", "swap_file", "check_output_path"]


@dataclass
class SwapSummary:
    """What a file swap did. ``faces`` (per face) is filled for images only."""

    kind: Literal["image", "video"]
    target: str
    output: str
    width: int
    height: int
    frames: int = 0
    frames_with_faces: int = 0
    frames_without_faces: int = 0
    faces_swapped: int = 0
    seconds: float = 0.0
    fps: Optional[str] = None
    has_audio: bool = False
    faces: list[FaceRecord] = field(default_factory=list)
    not_kept: list[str] = field(default_factory=list)  # what the output format could not keep ("alpha", ...)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("kind", "target", "output", "width", "height", "frames",
                                           "frames_with_faces", "frames_without_faces", "faces_swapped",
                                           "fps", "has_audio")}
        d["seconds"] = round(self.seconds, 3)
        if self.kind == "image":
            d["faces"] = [f.as_dict() for f in self.faces]
        return d


def check_output_path(target: str | os.PathLike, output: str | os.PathLike) -> None:
    """Fail early (one line) if ``output`` cannot take what ``target`` is: an image target
    needs an image suffix, a video target a video suffix; the folder must exist; output must
    not be the target itself."""
    target, output = Path(target), Path(output)
    if is_image_path(target):
        if not is_image_path(output):
            raise FfkitError(f"{output}: the target is an image, so the output needs an image suffix "
                             "(.png, .jpg, .jpeg, .webp, .bmp)")
    elif is_video_path(target):
        if not is_video_path(output):
            raise FfkitError(f"{output}: the target is a video, so the output needs a video suffix "
                             "(.mp4, .mov, .mkv, .avi, .webm, .m4v)")
    else:
        raise FfkitError(f"{target}: unsupported target type (images: .png .jpg .jpeg .webp .bmp; "
                         "videos: .mp4 .mov .mkv .avi .webm .m4v)")
    parent = output.resolve().parent
    if not parent.is_dir():
        raise FfkitError(f"{output}: cannot write output, folder {parent} does not exist")
    if output.is_dir():
        raise FfkitError(f"{output}: cannot write output, it is a folder")
    if target.exists() and output.exists() and os.path.samefile(target, output):
        raise FfkitError(f"{output}: refusing to overwrite the target; choose another output path")


def swap_image(pipeline: Pipeline, source: SourceFace, target: str | os.PathLike, output: str | os.PathLike,
               reference: Optional[np.ndarray] = None) -> SwapSummary:
    """Swap the faces of the image ``target`` and write ``output`` (same size; atomic). An alpha
    channel is carried through (PNG/WebP outputs) and a 16-bit PNG stays 16-bit, its untouched
    pixels bit-exact (:func:`~ffkit.runtime.media.write_picture`); what the output format
    cannot keep is listed in ``SwapSummary.not_kept``.

    Raises:
        MediaError / FfkitError: unreadable target, unwritable output (one line, no output).
    """
    start = time.perf_counter()
    picture = read_picture(target)
    image = picture.bgr
    result = pipeline.process_frame(image, source, reference)
    lost = write_picture(output, result.image, picture)
    has = result.swapped > 0
    return SwapSummary("image", str(target), str(output), image.shape[1], image.shape[0], frames=1,
                       frames_with_faces=int(has), frames_without_faces=int(not has),
                       faces_swapped=result.swapped, seconds=time.perf_counter() - start, faces=result.faces,
                       not_kept=lost)


def swap_video(pipeline: Pipeline, source: SourceFace, target: str | os.PathLike, output: str | os.PathLike,
               reference: Optional[np.ndarray] = None, *, workers: int = 2,
               progress: Optional[Callable[[int, int], None]] = None,
               on_frame: Optional[Callable[[int, FrameResult], None]] = None,
               tracking: Optional[TrackOptions] = None) -> SwapSummary:
    """Swap the faces of every frame of the video ``target`` into ``output``.

    Frames are decoded one by one and processed by ``workers`` threads sharing the pipeline's
    sessions, at most ``2 * workers`` frames in flight, written in order. The output keeps
    the frame count (checked: frames written == frames decoded), each frame's presentation
    timestamp (so a variable-frame-rate clip stays in sync with its audio) and the exact size,
    and copies the first audio track. A rotated (phone) clip is decoded upright, swapped and
    written upright without a rotation tag. Frames without a selected face are written
    unchanged.

    Args:
        progress: called as ``progress(frames_done, frame_count)`` after each written frame.
        on_frame: called as ``on_frame(index, result)`` for each frame, in order (tests).
        tracking: ``--detect-every`` / ``--smooth`` (:class:`TrackOptions`): faces are then found
            by a :class:`FaceTracker` in the decode loop, in frame order, and handed to the
            workers (a tracked face's reference similarity is computed once per track).

    Raises:
        MediaError / FfkitError: unreadable target, unwritable output; the partial output is
        deleted.
    """
    start = time.perf_counter()
    info = probe_video(target)
    summary = SwapSummary("video", str(target), str(output), info.width, info.height,
                          fps=str(info.fps), has_audio=info.has_audio)
    workers = max(1, int(workers))
    frames = iter_frames(target, timestamps=True)
    pending: deque = deque()  # (t, future), in decode order
    decoded = 0

    def finish_one(writer: VideoWriter) -> None:
        t, fut = pending.popleft()
        result = fut.result()
        writer.write(result.image, t)
        if on_frame is not None:
            on_frame(summary.frames, result)
        summary.frames += 1
        if result.swapped:
            summary.frames_with_faces += 1
            summary.faces_swapped += result.swapped
        else:
            summary.frames_without_faces += 1
        if progress is not None:
            progress(summary.frames, info.frame_count)

    width, height = pipeline.output_size(info.width, info.height)
    out_info = dataclasses.replace(info, width=width, height=height)   # a frame enhancer upscales
    tracker = None
    if tracking is not None and tracking.active:
        similarity = None
        if pipeline.options.select == "reference" and reference is not None:
            similarity = lambda image, lm: cosine_similarity(pipeline.embedder.embed(image, lm), reference)  # noqa: E731
        tracker = FaceTracker(pipeline.detector, pipeline.options.detect, tracking, similarity)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ffkit-frame")
    try:
        with VideoWriter(output, out_info, audio_from=target) as writer:
            for frame, t in frames:
                decoded += 1
                faces = dict(zip(("detections", "similarities"), tracker.step(frame))) if tracker else {}
                pending.append((t, pool.submit(pipeline.process_frame, frame, source, reference, **faces)))
                while len(pending) >= 2 * workers:
                    finish_one(writer)
            while pending:
                finish_one(writer)
            if writer.frames_written != decoded:
                raise MediaError(f"{output}: wrote {writer.frames_written} frames but decoded {decoded} from {target}")
            summary.has_audio = writer.has_audio
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        frames.close()
    summary.seconds = time.perf_counter() - start
    return summary


def swap_file(pipeline: Pipeline, source: SourceFace, target: str | os.PathLike, output: str | os.PathLike,
              reference: Optional[np.ndarray] = None, *, workers: int = 2,
              progress: Optional[Callable[[int, int], None]] = None,
              tracking: Optional[TrackOptions] = None) -> SwapSummary:
    """:func:`swap_image` or :func:`swap_video` (with ``tracking``), by ``target``'s suffix."""
    check_output_path(target, output)
    if is_video_path(target):
        return swap_video(pipeline, source, target, output, reference, workers=workers, progress=progress,
                          tracking=tracking)
    return swap_image(pipeline, source, target, output, reference)
