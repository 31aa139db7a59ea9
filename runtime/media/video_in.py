"""Video input for the ffkit runtime: probe and decode with PyAV.

Its one job is reading videos: :func:`probe_video` reports a file's properties
(:class:`VideoInfo`; it decodes at most the first frame, to read the rotation),
:func:`iter_frames` streams its frames as ``(height, width, 3)`` uint8 **BGR** arrays,
one at a time (optionally with each frame's presentation time); nothing holds a whole
video in memory.

Video as phones shoot it:

* **Rotation: frames are decoded upright.** A phone stores a portrait clip as landscape
  pixels plus a display matrix (or, in older files, a ``rotate`` tag). Face detection fails
  on sideways faces, so every decoded frame is turned by the stream's rotation (a multiple
  of 90 degrees, taken from the first frame's display matrix, ``VideoFrame.rotation``, else
  the ``rotate`` metadata tag) and :class:`VideoInfo` reports the *upright* width and height;
  ``VideoInfo.rotation`` says by how much frames were turned (clockwise degrees). The writer
  then writes an upright video with no rotation tag. Mirroring in a display matrix is
  ignored; a rotation that is not a multiple of 90 is rounded to the nearest one.
* **Variable frame rate: timestamps are kept.** ``iter_frames(path, timestamps=True)``
  yields ``(frame, t)``: ``t`` is the frame's presentation time in seconds (an exact
  Fraction) from the video stream's start, the origin the writer also shifts the audio by,
  so writing each frame at its ``t`` keeps the input's timing and audio sync.
* **Odd sizes** are decoded as is (e.g. 321 x 239).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional

import av
import cv2
import numpy as np

from .common import MediaError, check_input_file

__all__ = ["VideoInfo", "probe_video", "iter_frames"]


@dataclass(frozen=True)
class VideoInfo:
    """Properties of a video file's first video stream (and first audio stream).

    ``width`` x ``height`` is the size of the frames :func:`iter_frames` yields, i.e.
    upright (after ``rotation``, the clockwise degrees 0/90/180/270 the stored frames are
    turned by). ``fps`` is an exact Fraction (e.g. 30000/1001; the average rate for a
    variable-frame-rate file), ``time_base`` the stream's exact time base (None if unknown),
    ``duration`` is in seconds, ``codec`` is the video codec name;
    ``audio_codec``/``audio_sample_rate`` are None when ``has_audio`` is False.
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
    rotation: int = 0
    time_base: Optional[Fraction] = None


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


def _rotation_cw(frame, stream) -> int:
    """Clockwise degrees (0, 90, 180, 270) that turn ``frame`` of ``stream`` upright: from
    the frame's display matrix (``VideoFrame.rotation`` is counter-clockwise), else the
    stream's ``rotate`` tag (clockwise, older files)."""
    ccw = frame.rotation if frame is not None else 0
    if ccw:
        cw = -float(ccw)
    else:
        try:
            cw = float(stream.metadata.get("rotate", 0) or 0)
        except ValueError:
            cw = 0.0
    return round(cw / 90.0) % 4 * 90


_ROTATE_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _upright(image: np.ndarray, cw: int) -> np.ndarray:
    return cv2.rotate(image, _ROTATE_CODES[cw]) if cw else image


def _probe_rotation(path: str) -> int:
    """The clockwise rotation of ``path``'s first video stream (decodes its first frame)."""
    container = _open_video(path)
    try:
        vs = container.streams.video[0]
        frame = next(iter(container.decode(vs)), None)
        return _rotation_cw(frame, vs)
    except av.FFmpegError:
        return _rotation_cw(None, container.streams.video[0])
    finally:
        container.close()


def probe_video(path) -> VideoInfo:
    """Probe ``path`` without decoding pixels and return a :class:`VideoInfo`.

    The frame count comes from the container index, or, when the container does
    not store it (mkv/webm), from counting the video packets (fast, no decode). Only
    the first frame is decoded, to read the rotation; width/height are upright.
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
        rotation = _probe_rotation(path)
        width, height = (int(cc.height), int(cc.width)) if rotation in (90, 270) else (int(cc.width), int(cc.height))
        return VideoInfo(
            width=width, height=height, fps=fps, frame_count=frames,
            has_audio=audio is not None, codec=cc.codec.canonical_name, duration=duration,
            audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
            audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            rotation=rotation, time_base=Fraction(vs.time_base) if vs.time_base else None,
        )
    finally:
        container.close()


def iter_frames(path, timestamps: bool = False) -> Iterator:
    """Decode ``path`` frame by frame, yielding upright ``(H, W, 3)`` uint8 **BGR** arrays
    (``H x W`` = :func:`probe_video`'s ``height x width``; see the module docstring on
    rotation), or, with ``timestamps``, ``(frame, t)`` pairs: ``t`` the frame's presentation
    time in seconds (exact Fraction) from the video stream's ``start_time`` - a frame without
    a pts gets the previous ``t`` + 1/fps.

    The file is validated eagerly (MediaError raised by this call, not at the
    first ``next``); frames are decoded lazily with PyAV (threaded) and the file
    is closed when the iterator is exhausted or closed. A decode error midway
    raises MediaError naming the frame index, and so does a stream that ends before the
    frame count its container index declares (a truncated file: no silent short output).
    """
    path = os.fspath(path)
    _open_video(path).close()
    return _frame_gen(path, timestamps)


def _frame_gen(path: str, timestamps: bool) -> Iterator:
    container = _open_video(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        tb = Fraction(vs.time_base) if vs.time_base else None
        start = vs.start_time if vs.start_time is not None else 0
        step = 1 / _stream_fps(vs)
        index, cw, t = 0, None, None
        try:
            for frame in container.decode(vs):
                if cw is None:  # one rotation per stream (the display matrix is per stream)
                    cw = _rotation_cw(frame, vs)
                image = _upright(frame.to_ndarray(format="bgr24"), cw)
                if not timestamps:
                    yield image
                else:
                    if frame.pts is not None and tb is not None:
                        t = (frame.pts - start) * tb
                    else:
                        t = Fraction(0) if t is None else t + step
                    yield image, t
                index += 1
        except av.FFmpegError as exc:
            raise MediaError(f"decode error at frame {index} of {path}: {exc.strerror or exc}") from None
        declared = int(vs.frames or 0)
        if declared and index < declared:
            raise MediaError(f"{path}: decoded {index} of the {declared} frames its index declares: "
                             "truncated or damaged")
    finally:
        container.close()
