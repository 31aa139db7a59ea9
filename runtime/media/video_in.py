"""Video input for the ffkit runtime: probe and decode with PyAV.

Its one job is reading videos: :func:`probe_video` reports a file's properties
(:class:`VideoInfo`) without decoding pixels, :func:`iter_frames` streams its frames
as ``(height, width, 3)`` uint8 **BGR** arrays, one at a time; nothing holds a whole
video in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional

import av
import numpy as np

from .common import MediaError, check_input_file

__all__ = ["VideoInfo", "probe_video", "iter_frames"]


@dataclass(frozen=True)
class VideoInfo:
    """Properties of a video file's first video stream (and first audio stream).

    ``fps`` is an exact Fraction (e.g. 30000/1001), ``duration`` is in seconds,
    ``codec`` is the video codec name; ``audio_codec``/``audio_sample_rate`` are
    None when ``has_audio`` is False.
    """
    width: int
    height: int
    fps: Fraction
    frame_count: int
    has_audio: bool
    codec: str
    duration: float
    audio_codec: Optional[str] = None
    audio_sample_rate: Optional[int] = None


def _open_video(path: str) -> "av.container.InputContainer":
    check_input_file(path, "video")
    try:
        container = av.open(path, "r")
    except av.FFmpegError as exc:
        raise MediaError(f"not a readable video file: {path} ({exc.strerror or type(exc).__name__})") from exc
    fmt = container.format.name
    if not container.streams.video or fmt == "image2" or fmt.endswith("_pipe"):
        what = "is a still image, not a video" if container.streams.video else "has no video stream"
        container.close()
        raise MediaError(f"file {what}: {path}")
    return container


def _stream_fps(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    if stream.time_base:
        return 1 / Fraction(stream.time_base)
    return Fraction(25)


def probe_video(path) -> VideoInfo:
    """Probe ``path`` without decoding pixels and return a :class:`VideoInfo`.

    The frame count comes from the container index, or, when the container does
    not store it (mkv/webm), from counting the video packets (fast, no decode).
    Raises :class:`MediaError` for a missing, empty, unreadable or non-video file.
    """
    path = os.fspath(path)
    container = _open_video(path)
    try:
        vs = container.streams.video[0]
        cc = vs.codec_context
        fps = _stream_fps(vs)
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = int(vs.frames or 0)
        if frames <= 0:
            try:
                frames = sum(1 for p in container.demux(vs) if p.size)
            except av.FFmpegError as exc:
                raise MediaError(f"video file is corrupt: {path} ({exc.strerror})") from exc
        if vs.duration is not None and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = float(frames / fps)
        return VideoInfo(
            width=int(cc.width), height=int(cc.height), fps=fps, frame_count=frames,
            has_audio=audio is not None, codec=cc.codec.canonical_name, duration=duration,
            audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
            audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
        )
    finally:
        container.close()


def iter_frames(path) -> Iterator[np.ndarray]:
    """Decode ``path`` frame by frame, yielding ``(H, W, 3)`` uint8 **BGR** arrays.

    The file is validated eagerly (MediaError raised by this call, not at the
    first ``next``); frames are decoded lazily with PyAV (threaded) and the file
    is closed when the iterator is exhausted or closed. A decode error midway
    raises MediaError naming the frame index.
    """
    path = os.fspath(path)
    _open_video(path).close()
    return _frame_gen(path)


def _frame_gen(path: str) -> Iterator[np.ndarray]:
    container = _open_video(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(vs):
                yield frame.to_ndarray(format="bgr24")
                index += 1
        except av.FFmpegError as exc:
            raise MediaError(f"decode error at frame {index} of {path}: {exc.strerror or exc}") from exc
    finally:
        container.close()
