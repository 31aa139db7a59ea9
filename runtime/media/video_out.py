"""Video output for the ffkit runtime: encode BGR frames with PyAV, carrying audio over.

Its one job is :class:`VideoWriter`: frames in, a video out at the input's timestamps
(variable frame rate kept) and exact size (odd sizes too), with the first audio track of
another file packet-copied (or re-encoded when the container can't hold it), the video
codec falling back when the requested one is unavailable. The file is written to a temp
path in the target folder and renamed into place only on success.

Frames arrive upright (:mod:`.video_in` turns rotated phone clips upright), so the output
carries no rotation tag. Pixel formats: libx264 writes yuv420p (what every player decodes)
when both sides are even, and yuv444p (H.264 High 4:4:4; libx264 refuses odd sizes in
4:2:0) when a side is odd, so the size is kept exactly; mpeg4 and libvpx(-vp9) write
yuv420p at any size (their chroma planes round up).
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ffkit.recipes.atomic import atomic_path

from .common import MediaError, check_input_file, is_video_path, path_suffix
from .video_in import VideoInfo

__all__ = ["VideoWriter"]


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


def _time_base(info: VideoInfo, fps: Fraction, codec: str) -> Fraction:
    """The output video time base: the finest common step of the input's time base and the
    1/fps grid (so the input's pts and exact constant-rate times are both representable,
    e.g. 1/1000 and 1001/30000 -> 1/30000), else the input's, else 1/fps; mpeg4 allows a
    denominator of at most 65535 (then 1/60000, ~17 us steps)."""
    grid = 1 / fps
    tick = Fraction(info.time_base) if info.time_base else grid
    limit = 65535 if codec == "mpeg4" else 1 << 20
    common = Fraction(math.gcd(tick.numerator, grid.numerator), math.lcm(tick.denominator, grid.denominator))
    for tb in (common, tick, grid):
        if tb.denominator <= limit:
            return tb
    return Fraction(1, 60000)


class VideoWriter:
    """Stream BGR frames into a video file, copying the audio of another file.

    ``VideoWriter(out_path, info, audio_from=None, codec='libx264', crf=18, preset='veryfast')``

    * frames: ``(info.height, info.width, 3)`` uint8 **BGR** arrays via :meth:`write`,
      upright (no rotation tag is written);
    * timing: ``write(frame, t)`` places the frame at ``t`` seconds (e.g. the ``t`` of
      ``iter_frames(path, timestamps=True)``), in the input's time base ``info.time_base``
      refined to hold the exact 1/fps grid too (mpeg4: at most 1/65535), so a
      variable-frame-rate input keeps its timestamps and its audio sync, while a time
      within half an input tick of the grid is put on it (a 29.97 fps mkv, rounded to
      1 ms, comes out exactly 30000/1001); ``write(frame)`` without ``t`` places it
      1/fps after the previous one (constant ``info.fps``). Timestamps that do not increase are bumped by one tick, so
      the output has exactly as many frames as were written (``frames_written``);
    * size kept exactly (``self.size`` = (info.width, info.height)): yuv420p, or yuv444p
      for odd sizes with libx264 (see the module docstring);
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
            raise MediaError(f"unsupported video suffix {path_suffix(self.out_path) or '(none)'!r} for {self.out_path}")
        self.info = info
        self.fps = _as_rate(info.fps)
        self.frames_written = 0
        self._last_pts: Optional[int] = None
        self._last_t: Optional[Fraction] = None
        self._audio: Optional[_AudioPump] = None
        self._closed = False
        os.makedirs(os.path.dirname(os.path.abspath(self.out_path)), exist_ok=True)
        # the one atomic-write mechanism, held open across write() calls: temp file beside the
        # real target (links followed), umask mode, removed on abort, committed by close()
        self._commit = atomic_path(self.out_path)
        self._tmp = str(self._commit.__enter__())
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
        self.size = (w, h)
        odd = bool(w & 1 or h & 1)
        self.pix_fmt = "yuv444p" if odd and self.codec == "libx264" else "yuv420p"
        self.time_base = _time_base(self.info, self.fps, self.codec)
        # times within half an input tick of the 1/fps grid are put on it (exact CFR stays exact)
        tick = Fraction(self.info.time_base) if self.info.time_base else None
        self._snap = tick / 2 if tick and ((1 / self.fps) / self.time_base).denominator == 1 else None
        vs = out.add_stream(self.codec, rate=self.fps)
        vs.width, vs.height = self.size
        vs.pix_fmt = self.pix_fmt
        vs.codec_context.time_base = self.time_base
        vs.time_base = self.time_base
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
            check_input_file(src, "audio source")
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

    def write(self, frame: np.ndarray, t=None) -> None:
        """Append one ``(info.height, info.width, 3)`` uint8 **BGR** frame, shown at ``t``
        seconds (Fraction/float; None: 1/fps after the previous frame, 0 for the first)."""
        if self._closed:
            raise MediaError(f"VideoWriter for {self.out_path} is already closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.info.height, self.info.width, 3):
            raise MediaError(
                f"frame {self.frames_written} for {self.out_path}: expected "
                f"({self.info.height}, {self.info.width}, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
        if t is None:
            t = Fraction(0) if self._last_t is None else self._last_t + 1 / self.fps
        t = Fraction(t)
        if self._snap:  # a constant-rate input rounded to its time base: back onto the exact grid
            k = round(t * self.fps)
            if abs(t - k / self.fps) <= self._snap:
                t = k / self.fps
        pts = round(t / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        vf.pts, vf.time_base = pts, self.time_base
        self._out.mux(self._vstream.encode(vf))
        self.frames_written += 1
        self._last_pts, self._last_t = pts, t
        if self._audio is not None:
            self._audio.pump(float(t + 1 / self.fps))

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
            commit, self._commit = self._commit, None
            commit.__exit__(None, None, None)   # rename into place (or Terminated after a stop request)
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
        commit = getattr(self, "_commit", None)
        if commit is not None:
            self._commit = None
            try:   # the block "failed": atomic_path removes the temp file and commits nothing
                commit.__exit__(MediaError, MediaError("aborted"), None)
            except Exception:
                pass
