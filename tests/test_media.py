"""Tests for ffkit.runtime.media (image I/O, video probe/decode/encode with audio copy)."""

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest

from ffkit.runtime.media import (
    MediaError,
    VideoWriter,
    is_image_path,
    is_video_path,
    iter_frames,
    probe_video,
    read_image,
    write_image,
)
from ffkit.validation.synthetic_media import make_test_video, synthetic_frame


def _audio_packets(path):
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(bytes(p), p.pts) for p in c.demux(s) if p.size]


def _decoded_audio_seconds(path):
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
        return sum(f.samples for f in frames) / frames[0].sample_rate


def _copy(src, out, **kw):
    info = probe_video(src)
    with VideoWriter(out, info, audio_from=src, **kw) as w:
        for frame in iter_frames(src):
            w.write(frame)
    return info, w


@pytest.fixture(scope="module")
def src_video(tmp_path_factory):
    return make_test_video(tmp_path_factory.mktemp("v") / "src.mp4", frames=30, size=(96, 64), fps=25)


def test_suffix_helpers():
    assert is_video_path("a/b.MP4") and is_video_path("x.webm") and not is_video_path("x.png")
    assert is_image_path("x.JPG") and is_image_path("x.webp") and not is_image_path("x.mkv")


def test_probe_synthetic(src_video):
    info = probe_video(src_video)
    assert (info.width, info.height, info.fps, info.frame_count) == (96, 64, Fraction(25), 30)
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 44100
    assert info.duration == pytest.approx(1.2, abs=0.05)


def test_round_trip_identity(src_video, tmp_path):
    out = tmp_path / "out.mp4"
    info, w = _copy(src_video, out)
    assert w.has_audio
    o = probe_video(out)
    assert (o.width, o.height, o.fps, o.frame_count) == (info.width, info.height, info.fps, 30)
    assert o.has_audio and o.audio_codec == info.audio_codec
    assert o.audio_sample_rate == info.audio_sample_rate
    assert abs(_decoded_audio_seconds(out) - _decoded_audio_seconds(src_video)) <= 1024 / 44100
    assert _audio_packets(out) == _audio_packets(src_video)  # remuxed, not re-encoded
    a, b = list(iter_frames(src_video)), list(iter_frames(out))
    assert len(a) == len(b) == 30
    assert all(f.dtype == np.uint8 and f.shape == (64, 96, 3) for f in b)
    assert np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]) < 6.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temp leftovers


def test_ntsc_rate_odd_size_and_audio_transcode(tmp_path):
    # pcm audio in mkv cannot go into .m4v -> re-encoded to aac; odd size kept exactly (yuv444p)
    src = make_test_video(tmp_path / "src.mkv", frames=30, size=(95, 63),
                          fps=Fraction(30000, 1001), audio_codec="pcm_s16le")
    info = probe_video(src)
    assert info.fps == Fraction(30000, 1001) and info.frame_count == 30
    out = tmp_path / "out.m4v"
    _, w = _copy(src, out)
    o = probe_video(out)
    assert w.size == (95, 63) and (o.width, o.height) == (95, 63) and w.pix_fmt == "yuv444p"
    assert o.fps == Fraction(30000, 1001) and o.frame_count == 30
    assert o.audio_codec == "aac" and o.audio_sample_rate == 44100
    assert abs(_decoded_audio_seconds(out) - _decoded_audio_seconds(src)) <= 1024 / 44100
    a, b = list(iter_frames(src)), list(iter_frames(out))
    assert len(b) == 30
    assert all(f.shape == (63, 95, 3) for f in b)
    assert np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]) < 6.0


def test_mpeg4_fallback_without_audio(tmp_path):
    src = make_test_video(tmp_path / "src.mp4", frames=12, with_audio=False)
    out = tmp_path / "out.mp4"
    info, w = _copy(src, out, codec="no-such-encoder")
    o = probe_video(out)
    assert w.codec == "mpeg4" and o.codec == "mpeg4" and not o.has_audio and o.frame_count == 12


def test_float_fps_snaps_to_exact_rate(src_video, tmp_path):
    info = dataclasses.replace(probe_video(src_video), fps=29.97)
    out = tmp_path / "f.mkv"
    with VideoWriter(out, info) as w:
        for frame in iter_frames(src_video):
            w.write(frame)
    assert w.fps == Fraction(30000, 1001)
    o = probe_video(out)
    assert o.fps == Fraction(30000, 1001) and o.frame_count == 30 and not o.has_audio


def test_failure_midway_leaves_nothing(src_video, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, probe_video(src_video), audio_from=src_video) as w:
            for i, frame in enumerate(iter_frames(src_video)):
                if i == 10:
                    raise RuntimeError("boom")
                w.write(frame)
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_rejected(src_video, tmp_path):
    with pytest.raises(MediaError, match="expected"):
        with VideoWriter(tmp_path / "o.mp4", probe_video(src_video)) as w:
            w.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_video_errors(tmp_path):
    with pytest.raises(MediaError, match="not found.*missing.mp4"):
        probe_video(tmp_path / "missing.mp4")
    txt = tmp_path / "notes.mp4"
    txt.write_text("this is not a video\n")
    with pytest.raises(MediaError, match="not a readable video.*notes.mp4"):
        probe_video(txt)
    with pytest.raises(MediaError, match="notes.mp4"):
        iter_frames(txt)  # raised eagerly, before iteration
    png = tmp_path / "still.png"
    write_image(png, synthetic_frame(0))
    with pytest.raises(MediaError, match="still image"):
        probe_video(png)


def test_image_round_trip_png_exact(tmp_path):
    img = synthetic_frame(5, 33, 17)
    p = tmp_path / "ünïcødé dir" / "img.png"
    write_image(p, img)
    back = read_image(p)
    assert back.dtype == np.uint8 and back.shape == (17, 33, 3)
    assert np.array_equal(back, img)
    assert [q.name for q in p.parent.iterdir()] == ["img.png"]


def test_image_gray_alpha_and_jpg(tmp_path):
    gray = np.arange(12 * 8, dtype=np.uint8).reshape(8, 12)
    write_image(tmp_path / "g.png", gray)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.dstack([gray] * 3))
    bgra = np.dstack([synthetic_frame(1, 16, 16), np.full((16, 16), 7, np.uint8)])
    write_image(tmp_path / "a.png", bgra)
    assert np.array_equal(read_image(tmp_path / "a.png"), bgra[..., :3])
    write_image(tmp_path / "c.jpg", synthetic_frame(2))
    assert np.abs(read_image(tmp_path / "c.jpg").astype(int) - synthetic_frame(2)).mean() < 8


def test_image_errors(tmp_path):
    with pytest.raises(MediaError, match="not found.*nope.png"):
        read_image(tmp_path / "nope.png")
    full = tmp_path / "full.png"
    write_image(full, synthetic_frame(3))
    data = full.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty.*empty.png"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(MediaError, match="not a decodable image.*text.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(MediaError, match="suffix"):
        write_image(tmp_path / "x.txt", synthetic_frame(0))
