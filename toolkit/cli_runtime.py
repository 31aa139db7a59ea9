"""Runtime commands: ``ffkit swap`` and ``ffkit demo`` (registered on the app); ``ffkit detect``
is :mod:`.cli_detect`.

``detect`` and ``swap`` are torch-free (onnxruntime + numpy + OpenCV + PyAV). ``demo`` builds its
models with torch unless they are already in its output folder.
"""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.paths import refuse_overwrite

from .cli_app import app, friendly
from .console import err, out


class SelectChoice(str, Enum):
    all = "all"
    largest = "largest"


class FrameSizeChoice(str, Enum):
    native = "native"
    input = "input"


#: --mask-regions default, spelt here so the CLI module does not import the runtime at start-up
#: (checked equal to ffkit.runtime.face_masks.DEFAULT_REGIONS by tests/test_pipeline_options.py).
DEFAULT_REGIONS_CLI = ("skin", "left-eyebrow", "right-eyebrow", "left-eye", "right-eye", "glasses", "nose", "mouth",
                       "upper-lip", "lower-lip")


class VariantChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _write_json(path: Path, data: dict) -> None:
    from ffkit.recipes.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _print_models(models, pool) -> None:
    """One line per artifact used: role, file, recipe, variant, the providers its session runs on."""
    used = dict(pool.loaded())
    for role, ref in models.used():
        providers = used.get(str(ref.path.resolve()), ())
        origin = ", foreign file recognised by its I/O" if ref.foreign else ""
        out.print(f"{role:<9} {ref.path}  ({ref.recipe.name}, {ref.variant}{origin}; "
                  f"{', '.join(p.replace('ExecutionProvider', '') for p in providers)})",
                  soft_wrap=True, highlight=False)


# ------------------------------------------------------------------------------------ swap

@app.command("swap")
@friendly
def swap_cmd(
    source: Path = typer.Option(..., "--source", help="Image with the face to paste (the largest face is used)."),
    target: Path = typer.Option(..., "--target", help="Image or video to change; or a folder or a .txt list "
                                                     "(one path a line) of them: a batch."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image or video (same kind as the target); "
                                                            "for a batch, the output folder."),
    models: Path = typer.Option(..., "--models", help="Folder of artifacts (what `ffkit build` writes)."),
    swapper: Optional[str] = typer.Option(None, "--swapper",
                                          help="Swapper recipe (inswapper_128, simswap_224, simswap_512), file in "
                                               "--models, or path to an inswapper_128-style ONNX."),
    enhance: bool = typer.Option(False, "--enhance", help="Restore swapped faces with the GFPGAN artifact."),
    enhance_blend: float = typer.Option(0.8, "--enhance-blend", min=0.0, max=1.0,
                                        help="Share of the restored face (0..1)."),
    reference: Optional[Path] = typer.Option(None, "--reference",
                                             help="Swap only faces resembling the face in this image."),
    similarity: float = typer.Option(0.4, "--similarity", help="--reference: minimum ArcFace cosine similarity."),
    select: SelectChoice = typer.Option(SelectChoice.all, "--select", help="Without --reference: all faces or the largest."),
    max_faces: int = typer.Option(0, "--max-faces", help="At most this many faces per frame, best score first (0 = all)."),
    min_face_size: float = typer.Option(0.0, "--min-face-size", help="Ignore faces smaller than this (pixels)."),
    score_threshold: float = typer.Option(0.5, "--score-threshold", help="Detector score threshold (0..1)."),
    nms_threshold: float = typer.Option(0.4, "--nms-threshold", help="Detector NMS IoU threshold."),
    max_side: int = typer.Option(640, "--max-side", help="Detect on frames shrunk to this longer side (0 = as is)."),
    providers: str = typer.Option("auto", "--providers",
                                  help="auto (CUDA, CoreML, DirectML if present, then CPU) or a comma list of "
                                       "tensorrt,cuda,coreml,directml,cpu."),
    variant: Optional[VariantChoice] = typer.Option(None, "--variant", help="Prefer this precision (default fp32)."),
    workers: int = typer.Option(0, "--workers", help="Video: frames processed at once (0 = auto)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write a summary (faces and changed regions) here."),
    mask: str = typer.Option("box", "--mask", help="Paste masks, combined by their minimum: box (feathered box, "
                                                    "insightface's), region (the face parser's regions), box,region."),
    mask_regions: str = typer.Option(",".join(DEFAULT_REGIONS_CLI), "--mask-regions",
                                     help="--mask region: face regions to swap (names as FaceFusion's)."),
    color_match: bool = typer.Option(False, "--color-match",
                                     help="Match the swapped face's colour (LAB mean/std) to the target's before pasting."),
    landmarks: int = typer.Option(5, "--landmarks", help="Align from the detector's 5 points, or 68 (fan_2dfan4 "
                                                          "in --models, turned into 5 as FaceFusion does)."),
    frame_enhance: Optional[str] = typer.Option(None, "--frame-enhance",
                                                help="Upscale every output frame: realesrgan_x4plus | realesrgan_x2plus."),
    tile: int = typer.Option(-1, "--tile", min=-1, help="--frame-enhance: tile side in pixels (0 = whole frame; "
                                                         "-1, the default: whole frame up to 1 MP, else 512)."),
    frame_enhance_size: FrameSizeChoice = typer.Option(FrameSizeChoice.native, "--frame-enhance-size",
                                                       help="--frame-enhance: native (upscaled) or input (resized back)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Batch only: run it on Ray Data, `local` (this machine), "
                                                          "`auto` (the cluster joined) or an address (ray://host:port)."),
    provider_option: Optional[list[str]] = typer.Option(None, "--provider-option",
                                                        help="PROVIDER:KEY=VALUE for onnxruntime, repeatable "
                                                             "(e.g. cuda:device_id=1, tensorrt:trt_fp16_enable=0)."),
    spin: Optional[bool] = typer.Option(None, "--spin/--no-spin",
                                        help="onnxruntime thread spin-waiting (default: off with several workers "
                                             "or on a busy machine, else onnxruntime's own)."),
    detect_every: int = typer.Option(1, "--detect-every", help="Video: detect on every k-th frame, follow the faces "
                                                               "in between (detector on a crop around each)."),
    smooth: float = typer.Option(0.0, "--smooth", help="Video: landmark filter weight 0 <= s < 1 (exponential; "
                                                       "0 = off, 0.5 = lags one frame's motion)."),
):
    """Swap the face of SOURCE into the faces of TARGET (image or video), torch-free.

    A folder or a .txt list as TARGET is a batch: one output per input, named as the input, in the
    folder OUTPUT, with OUTPUT/ffkit-batch.json recording each input; a rerun skips finished outputs.
    """
    from ffkit.runtime.detector import DetectParams
    from ffkit.runtime.face_tracker import TrackOptions
    from ffkit.runtime.frame_enhancer import FrameEnhanceOptions
    from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
    from ffkit.runtime.media import is_video_path, probe_video, read_image
    from ffkit.runtime.models import pick_models
    from ffkit.runtime.provider_options import parse_provider_options
    from ffkit.runtime.sessions import SessionPool, default_spinning, default_threads, resolve_providers
    from ffkit.runtime.swap_files import check_output_path, swap_image

    provider_options = parse_provider_options(provider_option or ())
    tracking = TrackOptions(detect_every=detect_every, smooth=smooth)
    # Cheap checks first: nothing is loaded or written before the inputs are known good.
    plan = _batch_plan(target, output, ray, json_out, source, reference)
    if plan is None:
        check_output_path(target, output)
        refuse_overwrite(output, source, target, reference)
    if json_out is not None:
        refuse_overwrite(json_out, source, target, reference, output, option="--json")
    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise FfkitError(f"{json_out}: cannot write output, folder {json_out.resolve().parent} does not exist")
    source_image = read_image(source)
    reference_image = read_image(reference) if reference is not None else None
    video = is_video_path(target) if plan is None else plan.has_video
    if plan is None and video:
        probe_video(target)
    elif plan is None:
        read_image(target)
    masks = tuple(m.strip() for m in mask.split(",") if m.strip())
    options = SwapOptions(
        detect=DetectParams(max_side=max_side, score_threshold=score_threshold, nms_threshold=nms_threshold),
        select="reference" if reference is not None else select.value, max_faces=max_faces,
        min_face_size=min_face_size, similarity=similarity, enhance_blend=enhance_blend,
        mask=masks, mask_regions=tuple(r.strip() for r in mask_regions.split(",") if r.strip()),
        color_match=color_match, landmarks=landmarks,
        frame_enhance=FrameEnhanceOptions(tile=tile, size=frame_enhance_size.value))
    chosen = pick_models(models, swapper=swapper, variant=variant.value if variant else None, enhance=enhance,
                         landmarks68=landmarks == 68, parser="region" in masks, frame_enhance=frame_enhance)
    for note in chosen.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)

    n_workers = workers if workers > 0 else (min(4, os.cpu_count() or 1) if video else 1)
    pool = SessionPool(resolve_providers(providers), intra_op_threads=default_threads(n_workers) if video else 0,
                       warn=_warn, provider_options=provider_options,
                       spinning=spin if spin is not None else default_spinning(n_workers))
    with err.status("loading models"):
        pipeline = Pipeline.from_models(chosen, pool, options)
        src = pipeline.prepare_source(source_image, str(source))
        ref = pipeline.prepare_reference(reference_image, str(reference)) if reference_image is not None else None
    _print_models(chosen, pool)

    if plan is not None:
        _run_batch(plan, ray, pipeline, src, ref, n_workers, tracking, models=models, chosen=chosen, providers=providers,
                   options=options)
        return
    if video:
        summary = _run_video(pipeline, src, target, output, ref, n_workers, tracking)
    else:
        with err.status(f"swapping {target.name}"):
            summary = swap_image(pipeline, src, target, output, ref)
    if json_out is not None:
        _write_json(json_out, {**summary.as_dict(), "models": {r: str(m.path) for r, m in chosen.used()}})
    _print_summary(summary)


def _batch_plan(target, output, ray, json_out, *inputs):
    """The batch plan when ``target`` is a folder or a .txt list, else None (refusing ``--ray``)."""
    from .batch import MANIFEST_NAME, is_batch_target, plan_batch

    if not is_batch_target(target):
        if ray is not None:
            raise FfkitError(f"--ray runs a batch: give --target a folder or a .txt list, not "
                             f"{target}{'' if target.exists() else ' (no such file or folder)'}")
        return None
    if json_out is not None:
        raise FfkitError(f"--json: a batch records every input in {output / MANIFEST_NAME}; drop --json")
    if ray is not None:
        from .ray_batch import import_ray

        import_ray()
    plan = plan_batch(target, output)
    for item in plan.items:
        refuse_overwrite(item.output, *inputs)
    return plan


def _run_batch(plan, ray, pipeline, src, ref, workers, tracking=None, **setup):
    """Swap every input of ``plan`` here (``ray`` None) or on Ray; summary line, exit 1 if any failed."""
    from ffkit.runtime.swap_files import swap_file

    from .batch import finish, run_batch

    if ray is None:
        manifest = run_batch(plan, lambda item, tick: swap_file(pipeline, src, item.input, item.output, ref,
                                                                 workers=workers, progress=tick, tracking=tracking),
                             console=err)
    else:
        from .ray_batch import SwapSetup, run_ray_batch

        models, chosen = setup.pop("models"), setup.pop("chosen")
        manifest = run_ray_batch(plan, SwapSetup.of(models, chosen, source=src, reference=ref, **setup), ray,
                                 console=err)
    finish(manifest, console=out)


def _run_video(pipeline, src, target, output, ref, workers, tracking=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ffkit.runtime.swap_files import swap_video

    start = time.perf_counter()
    with Progress(TextColumn("swapping {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]:.2f} frames/s"), TimeRemainingColumn(), console=err,
                  transient=False) as progress:
        task = progress.add_task(Path(target).name, total=None, rate=0.0)

        def tick(done: int, total: int) -> None:
            elapsed = time.perf_counter() - start
            progress.update(task, completed=done, total=total or None, rate=done / elapsed if elapsed > 0 else 0.0)

        return swap_video(pipeline, src, target, output, ref, workers=workers, progress=tick, tracking=tracking)


def _print_summary(summary) -> None:
    table = Table(title="swap summary", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [("target", str(summary.target)), ("size", f"{summary.width}x{summary.height}")]
    if summary.kind == "video":
        rows += [("frames", str(summary.frames)), ("fps", summary.fps),
                 ("frames with swapped faces", str(summary.frames_with_faces)),
                 ("frames passed through (no face)", str(summary.frames_without_faces)),
                 ("audio", "copied" if summary.has_audio else "none in the target"),
                 ("speed", f"{summary.frames_per_second:.2f} frames/s")]
    else:
        rows += [("faces detected", str(len(summary.faces)))]
    rows += [("faces swapped", str(summary.faces_swapped)), ("time", f"{summary.seconds:.1f} s")]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if summary.faces_swapped == 0:
        _warn(f"no face was swapped in {summary.target}; the output equals the input")
    if summary.not_kept:
        _warn(f"{summary.output}: this format cannot keep the target's {' and '.join(summary.not_kept)} "
              "(write .png to keep them)")
    out.print(f"wrote {summary.output}")


# ------------------------------------------------------------------------------------ demo

@app.command("demo")
@friendly
def demo_cmd(
    output: Path = typer.Option(Path("ffkit-demo"), "-o", "--output", help="Folder for models and results (reused)."),
    swapper: str = typer.Option("inswapper_128", "--swapper", help="inswapper_128 or simswap_224."),
    enhance: bool = typer.Option(False, "--enhance", help="Also build GFPGAN v1.4 and restore the swapped faces."),
    frames: int = typer.Option(12, "--frames", min=1, help="Length of the generated video in frames."),
    providers: str = typer.Option("auto", "--providers", help="Execution providers (see ffkit swap)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the models even if cached."),
    basic: bool = typer.Option(False, "--basic", help="Skip the photo through every stage (68-point landmarker, "
                                                      "face parser mask, colour match, Real-ESRGAN x2)."),
):
    """Build every stage from deterministic SYNTHETIC weights and run the whole chain on a photo and a video.

    The weights are filled by ffkit's documented deterministic rule, not trained, so the "swap" is an
    arbitrary but repeatable change of whatever the untrained detector calls a face: this shows the
    pipeline working end to end, not face-swap quality. Models are cached in OUTPUT/models.
    """
    from .demo import run_demo

    run_demo(output, swapper=swapper, enhance=enhance, frames=frames, providers=providers, rebuild=rebuild,
             full=not basic, console=out, status_console=err, warn=_warn)
