"""Image and video I/O for the ffkit runtime (OpenCV for images, PyAV for video).

All pixel arrays are numpy ``uint8`` in OpenCV's **BGR** channel order, shaped
``(height, width, 3)``. Videos are streamed frame by frame; nothing holds a whole
video in memory. Outputs are written to a temp file in the target folder and
renamed into place only on success.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional

import av
import cv2
import numpy as np

from ffkit.recipes.errors import FfkitError

__all__ = [
    "MediaError", "VideoInfo", "VideoWriter", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES",
    "read_image", "write_image", "is_image_path", "is_video_path",
    "probe_video", "iter_frames",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


class MediaError(FfkitError, ValueError):
    """A media file is missing, unreadable, malformed, or cannot be written.
    The message is one line naming the file and the problem (the CLI prints it as
    ``error: ...``; it is also a ValueError for callers that catch that)."""


def _suffix(path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def is_image_path(path) -> bool:
    """True if ``path`` has an image suffix (png, jpg, jpeg, webp, bmp; any case)."""
    return _suffix(path) in IMAGE_SUFFIXES


def is_video_path(path) -> bool:
    """True if ``path`` has a video suffix (mp4, mov, mkv, avi, webm, m4v; any case)."""
    return _suffix(path) in VIDEO_SUFFIXES


def _check_input_file(path: str, kind: str) -> None:
    if not os.path.exists(path):
        raise MediaError(f"{kind} file not found: {path}")
    if not os.path.isfile(path):
        raise MediaError(f"{kind} path is not a regular file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{kind} file is empty: {path}")


def _temp_path(out_path: str) -> str:
    folder, name = os.path.split(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    # keep the real suffix last so the container/encoder format is still inferred from it
    return os.path.join(folder, f".{stem}.partial-{uuid.uuid4().hex[:8]}{suffix}")


# --------------------------------------------------------------------------- images

def read_image(path) -> np.ndarray:
    """Read an image file into an ``(H, W, 3)`` uint8 **BGR** array.

    Alpha is dropped, grayscale is expanded to 3 channels, 16-bit is scaled to
    8-bit and EXIF orientation is applied (cv2.IMREAD_COLOR). Unicode paths work
    (bytes are read with numpy and decoded with cv2.imdecode). Raises
    :class:`MediaError` if the file is missing, empty, or not a decodable image.
    """
    path = os.fspath(path)
    _check_input_file(path, "image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"cannot read image file {path}: {exc.strerror or exc}") from exc
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"not a decodable image (unknown format or corrupt/truncated): {path}")
    if img.size == 0:
        raise MediaError(f"image has no pixels: {path}")
    return img


def write_image(path, image: np.ndarray, quality: int = 95) -> None:
    """Write an ``(H, W, 3)`` uint8 **BGR** (or ``(H, W)`` gray, ``(H, W, 4)`` BGRA)
    image atomically; the format comes from the suffix (png, jpg/jpeg, webp, bmp).

    ``quality`` (0-100) applies to jpg/webp; png is lossless. The image is encoded
    to a temp file in the same folder, then moved over ``path`` with os.replace.
    Raises :class:`MediaError` on a bad suffix, bad array, or encode failure.
    """
    path = os.fspath(path)
    ext = _suffix(path)
    if ext not in IMAGE_SUFFIXES:
        raise MediaError(f"unsupported image suffix {ext or '(none)'!r} for {path}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
        raise MediaError(f"cannot write {path}: expected HxW[x1|3|4] uint8 array, "
                         f"got shape {image.shape} dtype {image.dtype}")
    params = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise MediaError(f"failed to encode image for {path}")
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- video probe / decode

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
    _check_input_file(path, "video")
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


# --------------------------------------------------------------------------- video writer

_FALLBACK_VIDEO_CODECS = ("mpeg4", "libvpx-vp9", "libvpx")


def _can_remux(format_name: str, src_path: str) -> bool:
    """Dry run in memory: can the first audio stream of ``src_path`` be packet-copied
    into a ``format_name`` container? (supported_codecs is not enough: e.g. pcm
    with an unordered layout in mp4, opus in mov, mp3 in m4v fail at mux time.)"""
    try:
        with av.open(src_path, "r") as src:
            stream = src.streams.audio[0]
            with av.open(io.BytesIO(), "w", format=format_name) as out:
                ostream = out.add_stream_from_template(stream)
                for packet in src.demux(stream):
                    if packet.size:
                        packet.stream = ostream
                        out.mux(packet)
                        break
        return True
    except (av.FFmpegError, ValueError, OSError):
        return False


class _AudioPump:
    """Moves the first audio stream of the open input ``src`` into ``out``: packet copy when
    the output container accepts the codec, otherwise decode + encode (aac, or the
    container's default audio codec). Audio is interleaved by timestamp as video
    is written (``pump(t)``); timestamps are shifted so the source video start = 0."""

    def __init__(self, out, src):
        self.src = src
        self.istream = self.src.streams.audio[0]
        self.tb = self.istream.time_base
        vstreams = self.src.streams.video
        v0 = 0
        if vstreams and vstreams[0].start_time is not None and vstreams[0].time_base:
            v0 = vstreams[0].start_time * vstreams[0].time_base
        self.shift = int(round(v0 / self.tb)) if self.tb else 0
        self.copy = _can_remux(out.format.name, src.name)
        if self.copy:
            self.ostream = out.add_stream_from_template(self.istream)
        else:
            target = next((c for c in ("aac", "libopus", "libmp3lame")
                           if c in out.supported_codecs and c in av.codecs_available),
                          out.default_audio_codec)
            rate = int(self.istream.codec_context.sample_rate)
            rates = av.Codec(target, "w").audio_rates
            if rates and rate not in rates:  # e.g. 44100 Hz into opus -> 48000
                rate = min((r for r in rates if r >= rate), default=max(rates))
            self.ostream = out.add_stream(target, rate=rate)
            # default layout for the channel count ("2 channels" -> stereo): encoders reject unordered ones
            self.ostream.codec_context.layout = av.AudioLayout(f"{self.istream.codec_context.channels}c")
            self.istream.thread_type = "AUTO"
        self.out = out
        self.packets = self.src.demux(self.istream)
        self.pending = None
        self.done = False
        self.next_pts = None  # transcode only: next frame pts in samples

    def _next(self):
        if self.pending is None and not self.done:
            for p in self.packets:
                if p.size:
                    self.pending = p
                    return p
            self.done = True
        return self.pending

    def pump(self, until: Optional[float]) -> None:
        """Mux source audio whose (shifted) time is < ``until`` seconds; all if None."""
        while (p := self._next()) is not None:
            ts = p.pts if p.pts is not None else p.dts
            if until is not None and ts is not None and float((ts - self.shift) * self.tb) >= until:
                return
            self.pending = None
            if self.copy:
                if p.pts is not None:
                    p.pts -= self.shift
                if p.dts is not None:
                    p.dts -= self.shift
                p.stream = self.ostream
                self.out.mux(p)
            else:
                for frame in p.decode():
                    # contiguous sample-count timestamps (source pts can be coarse, e.g. avi)
                    rate = frame.sample_rate
                    if self.next_pts is None:
                        t0 = (frame.pts - self.shift) * self.tb if frame.pts is not None else 0
                        self.next_pts = int(round(t0 * rate))
                    frame.pts, frame.time_base = self.next_pts, Fraction(1, rate)
                    self.next_pts += frame.samples
                    self.out.mux(self.ostream.encode(frame))

    def finish(self) -> None:
        self.pump(None)
        if not self.copy:
            self.out.mux(self.ostream.encode(None))

    def close(self) -> None:
        self.src.close()


def _as_rate(fps) -> Fraction:
    """Exact frame rate: Fractions/ints as is; floats snapped to NTSC n*1000/1001 or
    the nearest fraction with denominator <= 1001 (29.97 -> 30000/1001)."""
    if isinstance(fps, (int, Fraction)):
        return Fraction(fps)
    fps = float(fps)
    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) > 1e-3 and abs(fps - ntsc * 1000 / 1001) < 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Stream BGR frames into a video file, copying the audio of another file.

    ``VideoWriter(out_path, info, audio_from=None, codec='libx264', crf=18, preset='veryfast')``

    * frames: ``(info.height, info.width, 3)`` uint8 **BGR** arrays via :meth:`write`;
    * constant frame rate exactly ``info.fps`` (frame i has pts i at time base 1/fps),
      so the output has exactly as many frames as were written;
    * pixel format yuv420p; odd sizes are padded by one replicated row/column to
      even (yuv420p needs even dimensions) - ``self.size`` is the encoded (w, h);
    * ``codec`` falls back to mpeg4 (then libvpx-vp9/libvpx) if unavailable or not
      allowed by the container; ``crf`` is the quality (libx264 crf; vp9 crf+12;
      mpeg4 qscale crf/6);
    * the first audio stream of ``audio_from`` (if any) is remuxed without
      re-encoding, or re-encoded (aac; opus for webm) if the output container
      can't hold it (checked by an in-memory dry run);
    * output goes to a hidden temp file in the output folder, renamed over
      ``out_path`` by :meth:`close`; on an exception inside ``with`` (or
      :meth:`abort`) the temp file is deleted and no output is left.
    """

    def __init__(self, out_path, info: VideoInfo, audio_from: Optional[str] = None,
                 codec: str = "libx264", crf: int = 18, preset: str = "veryfast"):
        self.out_path = os.fspath(out_path)
        if not is_video_path(self.out_path):
            raise MediaError(f"unsupported video suffix {_suffix(self.out_path) or '(none)'!r} for {self.out_path}")
        self.info = info
        self.fps = _as_rate(info.fps)
        self.frames_written = 0
        self._audio: Optional[_AudioPump] = None
        self._closed = False
        self._tmp = _temp_path(self.out_path)
        try:
            self._out = av.open(self._tmp, "w")
        except av.FFmpegError as exc:
            raise MediaError(f"cannot create video file {self.out_path}: {exc.strerror}") from exc
        try:
            self._setup(codec, crf, preset, audio_from)
        except BaseException:
            self.abort()
            raise

    def _setup(self, codec, crf, preset, audio_from):
        out = self._out
        names = [codec, *_FALLBACK_VIDEO_CODECS]
        usable = [c for c in names if c in av.codecs_available and c in out.supported_codecs]
        if not usable:
            raise MediaError(f"no usable video encoder among {names} for {self.out_path}")
        self.codec = usable[0]
        w, h = int(self.info.width), int(self.info.height)
        self.size = (w + (w & 1), h + (h & 1))
        vs = out.add_stream(self.codec, rate=self.fps)
        vs.width, vs.height = self.size
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = 1 / self.fps
        vs.time_base = 1 / self.fps
        if self.codec == "libx264":
            vs.codec_context.options = {"crf": str(crf), "preset": preset}
        elif self.codec.startswith("libvpx"):
            vs.codec_context.options = {"crf": str(max(4, min(63, crf + 12))), "b": "0"}
        elif self.codec == "mpeg4":
            q = max(2, min(31, int(round(crf / 6))))
            vs.codec_context.options = {"flags": "+qscale", "global_quality": str(q * 118)}
        self._vstream = vs
        if audio_from is not None:
            src = os.fspath(audio_from)
            _check_input_file(src, "audio source")
            try:
                container = av.open(src, "r")
            except av.FFmpegError as exc:
                raise MediaError(f"not a readable media file: {src} ({exc.strerror})") from exc
            if not container.streams.audio:
                container.close()
            else:
                try:
                    self._audio = _AudioPump(out, container)
                except BaseException:
                    container.close()
                    raise

    @property
    def has_audio(self) -> bool:
        """True if an audio track from ``audio_from`` is being written."""
        return self._audio is not None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(info.height, info.width, 3)`` uint8 **BGR** frame."""
        if self._closed:
            raise MediaError(f"VideoWriter for {self.out_path} is already closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.info.height, self.info.width, 3):
            raise MediaError(
                f"frame {self.frames_written} for {self.out_path}: expected "
                f"({self.info.height}, {self.info.width}, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
        w, h = self.size
        if (w, h) != (self.info.width, self.info.height):
            frame = cv2.copyMakeBorder(frame, 0, h - self.info.height, 0, w - self.info.width,
                                       cv2.BORDER_REPLICATE)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        vf.pts, vf.time_base = self.frames_written, 1 / self.fps
        self._out.mux(self._vstream.encode(vf))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.pump(float(self.frames_written / self.fps))

    def close(self) -> None:
        """Flush encoders, mux the rest of the audio, and move the file into place.
        On any error the temp file is removed and the error re-raised."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise MediaError(f"no frames were written to {self.out_path}")
            self._out.mux(self._vstream.encode(None))
            if self._audio is not None:
                self._audio.finish()
                self._audio.close()
            self._out.close()
            self._closed = True
            os.replace(self._tmp, self.out_path)
        except BaseException:
            self.abort()
            raise

    def __del__(self):  # a writer dropped without close() must not leave a partial file
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass

    def abort(self) -> None:
        """Discard everything: close files and delete the temp output."""
        self._closed = True
        for closer in (getattr(self._audio, "close", None), getattr(self, "_out", None) and self._out.close):
            if closer is not None:
                try:
                    closer()
                except Exception:
                    pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
