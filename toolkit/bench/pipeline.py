"""``ffkit bench --pipeline``: frames/s of the ``ffkit swap`` chain, with the time split per stage.

The chain is the runtime's own (:mod:`ffkit.runtime`): models chosen by
``pick_models`` from ``--models``, sessions from a ``SessionPool``, frames decoded with
``iter_frames`` and encoded with ``VideoWriter``. One **sequential** pass (one frame at a time,
every session with all the threads) is instrumented, so each stage's share is its own:

========  ======================================================================================
decode    pulling the next frame from the decoder (``iter_frames``)
detect    ``Detector.detect``: resize, RetinaFace, anchor decode and NMS
embed     ``Embedder.embed`` on frames (``--reference`` mode only; the source face is embedded
          once, before the timed loop, and reported as ``source_s``)
swap      the swapper's ``session.run`` (the model alone)
paste     ``Swapper.swap_into`` and ``Enhancer.enhance_into`` minus their model runs: warping
          the crop in, and the feathered paste back
enhance   the enhancer's ``session.run`` (``--enhance`` models only)
encode    ``VideoWriter.write``
other     the rest of the loop (face selection, frame copy)
========  ======================================================================================

Optionally a second pass runs the library's threaded ``swap_video`` (``workers`` frames at
once) for the end-to-end frames/s a user of ``ffkit swap`` gets.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

from ffkit.recipes.errors import FfkitError

STAGES = ("decode", "detect", "embed", "swap", "paste", "enhance", "encode", "other")


class _TimedSession:
    """Wraps an InferenceSession: ``run`` adds its wall time to ``clock[key]``; all else delegates."""

    def __init__(self, session, clock: dict, key: str):
        self._session, self._clock, self._key = session, clock, key

    def run(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._clock[self._key] += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _timed(fn: Callable, clock: dict, key: str) -> Callable:
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t0

    return wrapper


def instrument(pipeline, clock: dict) -> None:
    """Make ``pipeline``'s stages add their time to ``clock`` (see the module docstring)."""
    pipeline.detector.detect = _timed(pipeline.detector.detect, clock, "detect")
    pipeline.embedder.embed = _timed(pipeline.embedder.embed, clock, "embed")
    if pipeline.swapper is not None:
        pipeline.swapper.session = _TimedSession(pipeline.swapper.session, clock, "swap")
        pipeline.swapper.swap_into = _timed(pipeline.swapper.swap_into, clock, "_swap_into")
    if pipeline.enhancer is not None:
        pipeline.enhancer.session = _TimedSession(pipeline.enhancer.session, clock, "enhance")
        pipeline.enhancer.enhance_into = _timed(pipeline.enhancer.enhance_into, clock, "_enhance_into")


def _source_image(source: Optional[Path]):
    from ffkit.runtime.media import read_image

    if source is not None:
        return read_image(source), str(source)
    from ..demo_media import asset_photo

    path = asset_photo()
    return read_image(path)[:, ::-1].copy(), f"{path} (mirrored)"


def pipeline_bench(models: Path, target: Path, *, source: Optional[Path] = None, frames: int = 0,
                   threads: int = 0, providers: str = "cpu", enhance: bool = False, swapper: Optional[str] = None,
                   variant: Optional[str] = None, score_threshold: float = 0.5, max_faces: int = 0,
                   workers: int = 0, on_step: Callable[[str], None] = lambda m: None) -> dict:
    """Run the swap chain on ``target`` (a video) and return per-stage seconds and frames/s.

    Returns ``{"models", "video", "frames", "faces_swapped", "seconds", "frames_per_s",
    "stages": {stage: {"seconds", "ms_per_frame", "share"}}, "bottleneck", "source_s",
    "threaded"?: {"workers", "frames_per_s", "seconds"}}``.
    """
    models, target, info = _check_inputs(models, target)
    from ffkit.runtime import DetectParams, Pipeline, SessionPool, SwapOptions, pick_models, resolve_providers

    from .machine import physical_cores

    threads = threads or physical_cores()
    chosen = pick_models(models, swapper=swapper, variant=variant, enhance=enhance)
    pool = SessionPool(resolve_providers(providers), intra_op_threads=threads)
    options = SwapOptions(detect=DetectParams(score_threshold=score_threshold), max_faces=max_faces)
    on_step("loading models")
    pipeline = Pipeline.from_models(chosen, pool, options)
    image, source_name = _source_image(source)
    t0 = time.perf_counter()
    src = pipeline.prepare_source(image, source_name)
    source_s = time.perf_counter() - t0

    clock: dict[str, float] = defaultdict(float)
    instrument(pipeline, clock)
    threaded = None
    with tempfile.TemporaryDirectory(prefix="ffkit-bench-pipeline-") as tmp:
        done, swapped, total = _sequential_pass(pipeline, src, target, info, frames, clock, Path(tmp), on_step)
        if workers > 0 and done:
            on_step(f"threaded pass ({workers} workers)")
            clip = _clip(target, info, done, Path(tmp)) if frames else target
            threaded = _threaded_pass(chosen, options, providers, threads, workers, image, source_name, clip,
                                      Path(tmp) / f"out2{target.suffix}")
    if done == 0:
        raise FfkitError(f"{target}: no frames decoded")
    report = {
        "models": {role: {"path": str(ref.path), "recipe": ref.recipe.name, "variant": ref.variant}
                   for role, ref in chosen.used()},
        "video": {"path": str(target), "width": info.width, "height": info.height, "fps": str(info.fps),
                  "frame_count": info.frame_count},
        "threads": threads, "providers": list(pool.providers), "frames": done, "faces_swapped": swapped,
        "seconds": round(total, 3), "frames_per_s": round(done / total, 3), "source_s": round(source_s, 3),
        **_stage_report(clock, total, done),
    }
    if threaded:
        report["threaded"] = threaded
    return report


def _check_inputs(models: Optional[Path], target: Optional[Path]):
    """``(models folder, target video, its probe)``, or a one-line FfkitError naming what is wrong
    (the runtime missing, no models folder, a target that is not a video)."""
    try:
        import ffkit.runtime  # noqa: F401
        from ffkit.runtime.media import is_video_path, probe_video
    except ImportError as err:  # pragma: no cover - depends on the runtime being present
        raise FfkitError(f"--pipeline needs the runtime pipeline (ffkit.runtime): {err}") from None
    if models is None or target is None:
        raise FfkitError("--pipeline needs --models DIR and --target VIDEO")
    models, target = Path(models), Path(target)
    if not models.is_dir():
        raise FfkitError(f"{models}: no such models folder")
    if not is_video_path(target):
        raise FfkitError(f"{target}: --pipeline benchmarks a video target (.mp4, .mov, .mkv, .avi, .webm, .m4v)")
    return models, target, probe_video(target)


def _sequential_pass(pipeline, src, target: Path, info, frames: int, clock: dict, tmp: Path,
                     on_step: Callable[[str], None]) -> tuple[int, int, float]:
    """Decode, swap and encode ``target`` one frame at a time (at most ``frames``; 0: all), adding
    decode and encode time to ``clock``. Returns ``(frames done, faces swapped, seconds)``."""
    from ffkit.runtime.media import VideoWriter, iter_frames

    limit = frames if frames > 0 else info.frame_count or 0
    done = swapped = 0
    it = iter_frames(target)
    start = time.perf_counter()
    try:
        with VideoWriter(tmp / f"out{target.suffix}", info) as writer:
            while not frames or done < frames:
                t = time.perf_counter()
                frame = next(it, None)
                clock["decode"] += time.perf_counter() - t
                if frame is None:
                    break
                on_step(f"frame {done + 1}/{limit or '?'}")
                result = pipeline.process_frame(frame, src)
                t = time.perf_counter()
                writer.write(result.image)
                clock["encode"] += time.perf_counter() - t
                done += 1
                swapped += result.swapped
    finally:
        it.close()
    return done, swapped, time.perf_counter() - start


def _clip(target: Path, info, count: int, tmp: Path) -> Path:
    """The first ``count`` frames of ``target`` re-encoded into ``tmp`` (what the threaded pass swaps)."""
    from ffkit.runtime.media import VideoWriter, iter_frames

    clip = tmp / f"clip{target.suffix}"
    it = iter_frames(target)
    try:
        with VideoWriter(clip, info) as w:
            for _ in range(count):
                w.write(next(it))
    finally:
        it.close()
    return clip


def _threaded_pass(chosen, options, providers: str, threads: int, workers: int, image, source_name: str,
                   clip: Path, out_path: Path) -> dict:
    """The library's threaded ``swap_video`` on ``clip`` with fresh sessions of ``threads // workers``
    intra-op threads each; its workers, threads, frames, seconds and frames/s."""
    from ffkit.runtime import Pipeline, SessionPool, resolve_providers, swap_video

    fresh = Pipeline.from_models(chosen, SessionPool(resolve_providers(providers),
                                                     intra_op_threads=max(1, threads // workers)), options)
    fsrc = fresh.prepare_source(image, source_name)
    t = time.perf_counter()
    summary = swap_video(fresh, fsrc, clip, out_path, workers=workers)
    secs = time.perf_counter() - t
    return {"workers": workers, "intra_op_threads": max(1, threads // workers), "frames": summary.frames,
            "seconds": round(secs, 3), "frames_per_s": round(summary.frames / secs, 3) if secs else None}


def _stage_report(clock: dict, total: float, done: int) -> dict:
    """``{"stages": {stage: {"seconds", "ms_per_frame", "share"}}, "bottleneck"}`` from ``clock``:
    paste is the swap and enhance calls minus their model runs, other the rest of ``total``."""
    stages = {k: clock.get(k, 0.0) for k in STAGES}
    stages["paste"] = max(0.0, clock.get("_swap_into", 0.0) - clock.get("swap", 0.0)) + \
        max(0.0, clock.get("_enhance_into", 0.0) - clock.get("enhance", 0.0))
    stages["other"] = max(0.0, total - sum(v for k, v in stages.items() if k != "other"))
    return {"stages": {k: {"seconds": round(v, 4), "ms_per_frame": round(v / done * 1e3, 2),
                           "share": round(v / total, 4) if total else 0.0} for k, v in stages.items()},
            "bottleneck": max(STAGES, key=lambda k: stages[k])}


def pipeline_table(report: dict):
    """A rich table of the per-stage split."""
    from rich.table import Table

    v = report["video"]
    table = Table(title=(f"ffkit bench --pipeline: {report['frames']} frames of {v['width']}x{v['height']}, "
                         f"{report['faces_swapped']} faces swapped, {report['frames_per_s']:.2f} frames/s "
                         f"(sequential, {report['threads']} threads)"))
    for col in ("stage", "ms/frame", "share", ""):
        table.add_column(col, justify="left" if col in ("stage", "") else "right")
    for name in STAGES:
        s = report["stages"][name]
        bar = "#" * int(round(s["share"] * 40))
        style = "bold red" if name == report["bottleneck"] else ""
        table.add_row(f"[{style}]{name}[/]" if style else name, f"{s['ms_per_frame']:.1f}",
                      f"{s['share'] * 100:.1f}%", bar)
    return table


def pipeline_bench_cli(*, models, target, source, frames, threads, providers, json_out, enhance=False,
                       swapper=None, variant=None, score_threshold=0.5, max_faces=0, workers=0) -> dict:
    """The ``ffkit bench --pipeline`` command body (prints the table, writes the JSON)."""
    from ..console import err, out

    if json_out is not None:
        from ffkit.recipes.atomic import check_writable

        check_writable(Path(json_out))
    provider_text = "cpu" if providers == "CPUExecutionProvider" else providers
    with err.status("pipeline bench") as status:
        report = pipeline_bench(models, target, source=source, frames=frames, threads=threads,
                                providers=provider_text, enhance=enhance, swapper=swapper, variant=variant,
                                score_threshold=score_threshold, max_faces=max_faces, workers=workers,
                                on_step=lambda m: status.update(m))
    out.print(pipeline_table(report))
    if report.get("threaded"):
        t = report["threaded"]
        out.print(f"threaded swap_video ({t['workers']} workers x {t['intra_op_threads']} threads): "
                  f"{t['frames_per_s']:.2f} frames/s")
    out.print(f"bottleneck: {report['bottleneck']} ({report['stages'][report['bottleneck']]['share'] * 100:.0f}% of the time)")
    if json_out is not None:
        from .report import write_json

        write_json({"pipeline": report}, json_out)
        out.print(f"wrote {json_out}")
    return report
