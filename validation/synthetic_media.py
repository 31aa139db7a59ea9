"""Synthetic test media (moving shapes + 440 Hz tone) generated with PyAV only."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import cv2
import numpy as np


def synthetic_frame(index: int, width: int = 96, height: int = 64) -> np.ndarray:
    """Deterministic test frame ``index``: HxWx3 uint8 BGR with a gradient
    background, a moving filled circle and a moving rectangle."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = (index * 7) % 256
    cx = int((index * 3) % width)
    cy = height // 2 + int(round(height / 4 * np.sin(index / 5.0)))
    cv2.circle(img, (cx, cy), max(2, min(width, height) // 6), (0, 0, 255), -1)
    rx = int((width - 1 - (index * 2) % width))
    cv2.rectangle(img, (rx - 6, 4), (rx + 6, 4 + height // 4), (255, 255, 255), -1)
    return img


def pan_frames(image: np.ndarray, frames: int, zoom: float = 1.35):
    """A frame function for :func:`make_test_video`: a slow pan and zoom over ``image``
    (``H x W x 3`` uint8 BGR), so faces in it move and change size across ``frames`` frames.

    Frame ``i`` crops a window of ``1 / z`` of the image (``z`` from 1 to ``zoom``) whose centre
    drifts left to right, and resizes it to the video size (bilinear)."""
    h, w = image.shape[:2]

    def frame(index: int, width: int, height: int) -> np.ndarray:
        t = index / max(frames - 1, 1)
        z = 1.0 + (zoom - 1.0) * t
        cw, ch = w / z, h / z
        cx = cw / 2 + (w - cw) * t
        cy = h / 2
        m = np.array([[width / cw, 0, -(cx - cw / 2) * width / cw],
                      [0, height / ch, -(cy - ch / 2) * height / ch]], dtype=np.float64)
        return cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    return frame


def make_test_video(path, frames: int = 32, size=(96, 64), fps=25,
                    with_audio: bool = True, audio_codec: str = "aac",
                    sample_rate: int = 44100, video_codec: str | None = None,
                    frame_fn=None) -> str:
    """Write a short synthetic video to ``path`` (container from the suffix).

    ``size`` is (width, height); frames are ``frame_fn(index, width, height)``
    (default :func:`synthetic_frame`; e.g. :func:`pan_frames` over a photo),
    BGR uint8, encoded as yuv420p (yuv444p if a side is odd) with libx264
    (mpeg4 / libvpx-vp9 fallback).
    With ``with_audio`` a stereo 440 Hz sine of the same duration
    (frames / fps seconds) is added, encoded with ``audio_codec``
    (e.g. 'aac', 'pcm_s16le', 'libopus'). Returns the path as str.
    """
    path = os.fspath(path)
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    out = av.open(path, "w")
    try:
        names = [video_codec] if video_codec else ["libx264", "mpeg4", "libvpx-vp9"]
        vcodec = next(c for c in names
                      if c in av.codecs_available and c in out.supported_codecs)
        vs = out.add_stream(vcodec, rate=rate)
        # yuv420p needs even sizes; odd sizes (to exercise padding downstream) use yuv444p
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        vs.codec_context.time_base = 1 / rate
        if vcodec == "libx264":
            vs.codec_context.options = {"crf": "18", "preset": "veryfast"}
        astream = None
        if with_audio:
            astream = out.add_stream(audio_codec, rate=sample_rate)
            astream.codec_context.layout = "stereo"
        total_samples = int(round(frames / rate * sample_rate))
        chunk = 1024
        written = 0  # audio samples encoded so far

        def encode_audio_until(t_end: int) -> None:
            nonlocal written
            while astream is not None and written < t_end:
                n = min(chunk, t_end - written)
                t = (np.arange(written, written + n) / sample_rate).astype(np.float64)
                s = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
                # fltp in; PyAV's encoder-side resampler converts/re-chunks as needed
                af = av.AudioFrame.from_ndarray(np.stack([s, s]), format="fltp", layout="stereo")
                af.sample_rate = sample_rate
                af.pts, af.time_base = written, Fraction(1, sample_rate)
                out.mux(astream.encode(af))
                written += n

        for i in range(frames):
            vf = av.VideoFrame.from_ndarray((frame_fn or synthetic_frame)(i, width, height), format="bgr24")
            vf.pts, vf.time_base = i, 1 / rate
            out.mux(vs.encode(vf))
            encode_audio_until(min(total_samples, int(round((i + 1) / rate * sample_rate))))
        encode_audio_until(total_samples)
        out.mux(vs.encode(None))
        if astream is not None:
            out.mux(astream.encode(None))
    finally:
        out.close()
    return path
