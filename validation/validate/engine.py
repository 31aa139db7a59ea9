"""``ffkit validate``'s run: open every set, stream the targets' frames through each set in turn
(interleaved, so their speeds are measured under the same load), judge each candidate against
the reference (:mod:`.stages`), follow the faces over a video's frames (temporal stability), and
summarise against the budgets (:mod:`.budgets`).

Videos are read frame by frame (:func:`ffkit.runtime.media.iter_frames`); only the previous
frame's outputs and a few sampled frames (for the contact sheet) are kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.frame_pipeline import Pipeline
from ffkit.runtime.media import is_image_path, is_video_path, iter_frames, probe_video, read_image

from .image_metrics import nme
from .sets import ModelSet
from .stages import CHAINED, FrameTrace, Row, SetRun, first_face, judge_frame, outside_changed, pairs_of, source_rows

__all__ = ["Sample", "Validation", "expand_targets", "run_validation", "rss_mb", "peak_rss_mb"]


@dataclass
class Sample:
    """A frame kept for the contact sheet: the input, each set's output, the reference's swapped boxes."""

    target: str
    frame: int
    image: np.ndarray
    outputs: dict[str, np.ndarray]
    boxes: list[list[float]]


@dataclass
class Validation:
    """Everything one run measured. ``rows``: one dict per figure (set, target, frame, face,
    stage, mode, metric, value); ``speed``: per set frames, seconds; ``memory``: RSS figures;
    ``timing``: the run's wall time against the sets' own swapping time (validate's overhead)."""

    sets: list[ModelSet]
    rows: list[dict] = field(default_factory=list)
    speed: dict[str, dict] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    targets: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)


def rss_mb() -> float:
    """This process's resident memory now, MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError):
        return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (``getrusage``)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def expand_targets(targets: Sequence[Path]) -> list[Path]:
    """Images and videos: the files given, and those directly in the folders given (sorted).
    One-line FfkitError for a missing path, a file that is neither, or nothing to judge."""
    found: list[Path] = []
    for t in map(Path, targets):
        if t.is_dir():
            found += sorted(p for p in t.iterdir() if p.is_file() and (is_image_path(p) or is_video_path(p)))
        elif not t.exists():
            raise FfkitError(f"{t}: target not found")
        elif is_image_path(t) or is_video_path(t):
            found.append(t)
        else:
            raise FfkitError(f"{t}: not an image or a video (by its extension)")
    if not found:
        raise FfkitError(f"{', '.join(map(str, targets))}: no image or video to validate on")
    return found


def open_sets(sets: Sequence[ModelSet], settings, pool, source_image: np.ndarray, source_name: str) -> list[SetRun]:
    """One :class:`SetRun` per set: its pipeline (frame enhancer kept apart) and source face."""
    runs = []
    for s in sets:
        pipe = Pipeline.from_models(s.selection, pool, settings.options)
        fe, pipe.frame_enhancer = pipe.frame_enhancer, None
        runs.append(SetRun(s.name, pipe, fe, pipe.prepare_source(source_image, source_name)))
    return runs


def _frames(path: Path, every: int, limit: int):
    """``(index in the file, frame)`` of an image (one) or a video (every ``every``-th, at most ``limit``; 0: all)."""
    if is_image_path(path):
        yield 0, read_image(path)
        return
    taken = 0
    for k, frame in enumerate(iter_frames(path)):
        if k % every:
            continue
        yield k, frame
        taken += 1
        if limit and taken >= limit:
            return


def _planned(path: Path, every: int, limit: int) -> int:
    if is_image_path(path):
        return 1
    n = -(-probe_video(path).frame_count // every)
    return min(n, limit) if limit else n


def _run_sets(runs: list[SetRun], frame: np.ndarray, turn: int) -> list[FrameTrace]:
    """Each set's output of ``frame``, the sets taken in a rotating order (timed: process_frame
    and the frame enhancer, nothing of the judging)."""
    traces: list[Optional[FrameTrace]] = [None] * len(runs)
    for k in range(len(runs)):
        i = (k + turn) % len(runs)
        run = runs[i]
        start = time.perf_counter()
        result = run.pipeline.process_frame(frame, run.source)
        out = run.frame_enhancer.enhance(result.image) if run.frame_enhancer is not None else result.image
        run.seconds += time.perf_counter() - start
        run.frames += 1
        traces[i] = FrameTrace(result, result.image, out)
    return traces


@dataclass
class _Follow:
    """The previous frame of one set, for the temporal figures."""

    pre: Optional[np.ndarray] = None
    face: object = None


def _temporal(runs: list[SetRun], traces: list[FrameTrace], follow: list[_Follow]) -> list[tuple[str, Row]]:
    """Frame-to-frame change of the reference's followed face region (mean abs, grey levels) and
    of its landmarks (NME), per set; the candidates' excess over the reference's as rows."""
    ref_face = first_face(traces[0])
    rows, change, motion = [], [], []
    for k, (trace, prev) in enumerate(zip(traces, follow)):
        face = ref_face if k == 0 else None
        if ref_face is not None and k > 0:
            j = pairs_of(traces[0], trace).get(traces[0].faces.index(ref_face))
            face = trace.faces[j] if j is not None else None
        c = m = math.nan
        if ref_face is not None and prev.pre is not None and prev.pre.shape == trace.pre.shape:
            h, w = trace.pre.shape[:2]
            x0, y0, x1, y1 = (int(round(v)) for v in ref_face.box)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 > x0 and y1 > y0:
                c = float(np.mean(np.abs(trace.pre[y0:y1, x0:x1].astype(np.float64) - prev.pre[y0:y1, x0:x1])))
            if face is not None and prev.face is not None:
                m = nme(np.asarray(face.landmarks), np.asarray(prev.face.landmarks))
        change.append(c)
        motion.append(m)
        prev.pre, prev.face = trace.pre, face
    for k, run in enumerate(runs):
        rows += [(run.name, Row("temporal", "set", "face_change_abs", change[k])),
                 (run.name, Row("temporal", "set", "landmark_motion_abs", motion[k]))]
        if k > 0:
            rows += [(run.name, Row("temporal", CHAINED, "face_change", change[k] - change[0])),
                     (run.name, Row("temporal", CHAINED, "landmark_jitter", motion[k] - motion[0]))]
    return rows


def _sample_at(planned: int, count: int) -> set[int]:
    """Which processed frames of a target are kept for the contact sheet (first, middle, last)."""
    return {0} if planned <= 1 else set(np.linspace(0, planned - 1, min(count, planned)).round().astype(int).tolist())


def run_validation(sets: Sequence[ModelSet], settings, pool, source: Path, targets: Sequence[Path], *,
                   every: int = 1, frames: int = 0, sheet_frames: int = 3,
                   progress: Callable[[str, int, int], None] = lambda name, done, total: None) -> Validation:
    """Judge every candidate of ``sets`` (the first is the reference) on every frame of ``targets``.

    Args:
        settings: the swap options (:class:`~ffkit.runtime.swap_options.SwapSettings`).
        pool: the :class:`~ffkit.runtime.sessions.SessionPool` the sets' sessions come from.
        source: the source face image. targets: images and videos (:func:`expand_targets`).
        every: a video's every ``every``-th frame. frames: at most this many frames of a video (0: all).
        sheet_frames: frames of each target kept for the contact sheet.
        progress: called ``(target name, frames done, frames planned)`` after each frame.
    """
    wall = time.perf_counter()
    val = Validation(list(sets))
    source_image = read_image(source)
    runs = open_sets(sets, settings, pool, source_image, str(source))
    for k in range(1, len(runs)):
        val.rows += [_row(runs[k].name, "source", -1, r) for r in source_rows(runs[0], runs[k], source_image)]
    rss_start = rss_mb()
    turn = 0
    for path in targets:
        planned = _planned(path, every, frames)
        keep = _sample_at(planned, sheet_frames)
        follow = [_Follow() for _ in runs]
        done = 0
        for index, frame in _frames(path, every, frames):
            traces = _run_sets(runs, frame, turn)
            turn += 1
            for k in range(1, len(runs)):
                val.rows += [_row(runs[k].name, path.name, index, r)
                             for r in judge_frame(runs[0], runs[k], frame, traces[0], traces[k])]
            val.rows.append(_row(runs[0].name, path.name, index, Row("output", CHAINED, "outside_changed",
                                                                     float(outside_changed(frame, traces[0])))))
            if is_video_path(path):
                val.rows += [_row(name, path.name, index, r) for name, r in _temporal(runs, traces, follow)]
            if done in keep:
                val.samples.append(Sample(path.name, index, frame, {r.name: t.out for r, t in zip(runs, traces)},
                                          [f.box for f in traces[0].faces if f.swapped]))
            done += 1
            progress(path.name, done, planned)
        val.targets.append({"path": str(path), "kind": "video" if is_video_path(path) else "image", "frames": done})
    val.speed = {r.name: {"frames": r.frames, "seconds": r.seconds,
                          "frames_per_second": r.frames / r.seconds if r.seconds else math.nan} for r in runs}
    swap_seconds = sum(r.seconds for r in runs)
    val.timing = {"wall_seconds": time.perf_counter() - wall, "swap_seconds": swap_seconds,
                  "overhead_ratio": (time.perf_counter() - wall) / swap_seconds if swap_seconds else math.nan}
    val.memory = {"rss_start_mb": rss_start, "rss_end_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
    return val


def _row(set_name: str, target: str, frame: int, row: Row) -> dict:
    return {"set": set_name, "target": target, "frame": frame, **dataclasses.asdict(row)}
