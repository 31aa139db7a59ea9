"""Video as users shoot it: rotated phone clips, variable frame rate, odd sizes.

Every fixture is generated here with PyAV (no downloads): small, a few frames each.
"""

from fractions import Fraction

import av
import numpy as np
import pytest

from ffkit.runtime.frame_pipeline import FrameResult
from ffkit.runtime.media import VideoWriter, iter_frames, probe_video
from ffkit.runtime.swap_files import swap_video
from ffkit.validation.synthetic_media import make_test_video, synthetic_frame

UP_W, UP_H = 48, 80  # upright portrait content (width x height)


def _portrait(index: int) -> np.ndarray:
    """Upright portrait frame: grey, a red block top-left, a green bar along the bottom."""
    img = np.full((UP_H, UP_W, 3), 128, np.uint8)
    img[0:16, 0:16] = (0, 0, 255)
    img[UP_H - 12:UP_H, :] = (0, 255, 0)
    img[40:44, 20 + index:24 + index] = (255, 255, 255)
    return img


def _write(path, frames, pts, time_base, rotation_ccw=0, codec="libx264"):
    """Encode BGR ``frames`` at ``pts`` (in ``time_base``); the display matrix rotates by
    ``rotation_ccw`` degrees counter-clockwise (PyAV/FFmpeg convention)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = time_base
        vs.time_base = time_base
        if rotation_ccw:
            vs.set_display_rotation(rotation_ccw)
        for img, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = p, time_base
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return str(path)


def _copy(src, out):
    info = probe_video(src)
    with VideoWriter(out, info, audio_from=src) as w:
        for frame, t in iter_frames(src, timestamps=True):
            w.write(frame, t)
    return info, w


def _frame_times(path):
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        start = vs.start_time or 0
        return [(f.pts - start) * Fraction(vs.time_base) for f in c.decode(vs)]


def _red_centroid(img):
    mask = (img[..., 2] > 180) & (img[..., 1] < 80) & (img[..., 0] < 80)
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), int(mask.sum())


# phone portrait: stored landscape, display matrix -90 (old tag rotate=90, i.e. turn clockwise)
@pytest.mark.parametrize("ccw,cw", [(-90, 90), (90, 270), (180, 180)])
def test_rotated_clip_decodes_and_writes_upright(tmp_path, ccw, cw):
    upright = [_portrait(i) for i in range(6)]
    # the stored pixels: the upright frame turned the other way (what the display matrix undoes)
    stored = [np.ascontiguousarray(np.rot90(f, k=-ccw // 90)) for f in upright]
    assert stored[0].shape[:2] == ((UP_W, UP_H) if cw != 180 else (UP_H, UP_W))
    src = _write(tmp_path / "phone.mp4", stored, range(6), Fraction(1, 25), rotation_ccw=ccw)

    info = probe_video(src)
    assert (info.width, info.height, info.rotation, info.frame_count) == (UP_W, UP_H, cw, 6)
    decoded = list(iter_frames(src))
    assert all(f.shape == (UP_H, UP_W, 3) for f in decoded)
    assert np.abs(decoded[0].astype(int) - upright[0]).mean() < 4.0
    cx, cy, n = _red_centroid(decoded[0])
    assert cx < 10 and cy < 10 and n > 150  # the red block is top-left, as shot

    out = tmp_path / "out.mp4"
    _copy(src, out)
    o = probe_video(out)
    assert (o.width, o.height, o.rotation, o.frame_count) == (UP_W, UP_H, 0, 6)
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
        assert first.rotation == 0 and (first.width, first.height) == (UP_W, UP_H)  # no tag, upright pixels
        raw = first.to_ndarray(format="bgr24")
    cx, cy, n = _red_centroid(raw)
    assert cx < 10 and cy < 10 and n > 150
    assert raw[UP_H - 6, UP_W // 2, 1] > 200  # green bar still at the bottom
    assert np.abs(raw.astype(int) - upright[0]).mean() < 8.0  # two lossy encodes of saturated colours
    assert np.abs(raw.astype(int) - decoded[0]).mean() < 4.0


def _vfr_pts(n):
    """Uneven frame times in ms: a burst of short frames (15-25 ms) then long ones (50-70 ms),
    as a phone does when the light changes; retimed at the average rate, mid-clip frames would
    be several frames off."""
    durations = [(15, 20, 25)[i % 3] if i < n // 2 else (50, 60, 70)[i % 3] for i in range(n - 1)]
    return np.concatenate([[0], np.cumsum(durations)]).astype(int).tolist()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_keeps_timestamps(tmp_path, suffix):
    n = 24
    pts = _vfr_pts(n)
    frames = [synthetic_frame(i, 64, 48) for i in range(n)]
    src = _write(tmp_path / f"vfr{suffix}", frames, pts, Fraction(1, 1000))
    t_in = _frame_times(src)
    assert len(t_in) == n and [int(t * 1000) for t in t_in] == pts  # the fixture really is VFR

    out = tmp_path / f"out{suffix}"
    info, w = _copy(src, out)
    t_out = _frame_times(out)
    assert w.frames_written == n and len(t_out) == n and probe_video(out).frame_count == n
    one_frame = 1 / info.fps
    err = max(abs(a - b) for a, b in zip(t_in, t_out))
    assert err < one_frame and err <= Fraction(1, 1000)
    # a constant-rate retiming (frame i at i / average fps) would be off by several frames
    assert max(abs(t - i * one_frame) for i, t in enumerate(t_in)) > 3 * one_frame
    src_frames, got = list(iter_frames(src)), list(iter_frames(out))
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(src_frames, got)]) < 4.0


@pytest.mark.parametrize("codec,pix_fmt", [("libx264", "yuv444p"), ("mpeg4", "yuv420p")])
def test_odd_size_is_kept_exactly(tmp_path, codec, pix_fmt):
    src = make_test_video(tmp_path / "odd.mp4", frames=5, size=(321, 239), fps=25, with_audio=False)
    out = tmp_path / "out.mp4"
    info = probe_video(src)
    with VideoWriter(out, info, codec=codec) as w:
        for frame, t in iter_frames(src, timestamps=True):
            w.write(frame, t)
    assert w.codec == codec and w.size == (321, 239) and w.pix_fmt == pix_fmt
    o = probe_video(out)
    assert (o.width, o.height, o.frame_count) == (321, 239, 5)
    assert o.codec == {"libx264": "h264", "mpeg4": "mpeg4"}[codec]
    a, b = list(iter_frames(src)), list(iter_frames(out))
    assert all(f.shape == (239, 321, 3) for f in b)
    assert np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]) < 6.0


class _PassThrough:
    """A pipeline stand-in: every frame unchanged, no faces (swap_video needs nothing more)."""

    def process_frame(self, frame, source, reference=None, **precomputed):
        return FrameResult(frame, [])

    def output_size(self, width, height):
        return width, height


def test_swap_video_keeps_rotation_upright_and_vfr_timing(tmp_path):
    n = 10
    pts = _vfr_pts(n)
    upright = [_portrait(i) for i in range(n)]
    stored = [np.ascontiguousarray(np.rot90(f, k=1)) for f in upright]
    src = _write(tmp_path / "phone.mp4", stored, pts, Fraction(1, 1000), rotation_ccw=-90)
    out = tmp_path / "out.mp4"
    summary = swap_video(_PassThrough(), None, src, out, workers=2)
    assert summary.frames == n and (summary.width, summary.height) == (UP_W, UP_H)
    o = probe_video(out)
    assert (o.width, o.height, o.rotation, o.frame_count) == (UP_W, UP_H, 0, n)
    t_in = _frame_times(src)
    t_out = _frame_times(out)
    assert len(t_out) == n and max(abs(a - b) for a, b in zip(t_in, t_out)) <= Fraction(1, 1000)
    cx, cy, _ = _red_centroid(next(iter_frames(out)))
    assert cx < 10 and cy < 10
