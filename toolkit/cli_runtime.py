"""Runtime commands: ``ffkit swap`` and ``ffkit demo`` (registered on the app); ``ffkit detect``
is :mod:`.cli_detect`.

``detect`` and ``swap`` are torch-free (onnxruntime + numpy + OpenCV + PyAV). ``demo`` builds its
models with torch unless they are already in its output folder.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.paths import refuse_overwrite
from ffkit.runtime.swap_options import OPTION_BY_NAME, SWAP_OPTIONS, swap_settings

from .cli_app import app, friendly
from .console import err, out


#: --mask-regions default (the declaration's; tests/test_pipeline_options.py checks it against the runtime's).
DEFAULT_REGIONS_CLI = OPTION_BY_NAME["mask_regions"].default


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _write_json(path: Path, data: dict) -> None:
    from ffkit.recipes.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _print_models(models, pool) -> None:
    """One line per artifact used: role, file, recipe, variant, the providers its session runs on."""
    used = dict(pool.loaded())
    if getattr(models, "tuned", None) is not None:
        out.print(f"models: the tuned set of {models.tuned} (ffkit tune; --variant overrides it)",
                  soft_wrap=True, highlight=False)
    for role, ref in models.used():
        providers = used.get(str(ref.path.resolve()), ())
        origin = ", foreign file recognised by its I/O" if ref.foreign else ""
        origin += ", tuned set" if getattr(models, "tuned", None) is not None else ""
        out.print(f"{role:<9} {ref.path}  ({ref.recipe.name}, {ref.variant}{origin}; "
                  f"{', '.join(p.replace('ExecutionProvider', '') for p in providers)})",
                  soft_wrap=True, highlight=False)


# ------------------------------------------------------------------------------------ swap

#: The ``swap`` parameters that are not swap options: the files and where the batch runs.
_FILE_PARAMS = (
    ("source", Path, typer.Option(..., "--source", help="Image with the face to paste (the largest face is used).")),
    ("target", Path, typer.Option(..., "--target", help="Image or video to change; or a folder or a .txt list "
                                                        "(one path a line) of them: a batch.")),
    ("output", Path, typer.Option(..., "-o", "--output", help="Output image or video (same kind as the target); "
                                                              "for a batch, the output folder.")),
    ("models", Path, typer.Option(..., "--models", help="Folder of artifacts (what `ffkit build` writes).")),
    ("reference", Optional[Path], typer.Option(None, "--reference",
                                               help="Swap only faces resembling the face in this image.")),
    ("json_out", Optional[Path], typer.Option(None, "--json", help="Write a summary (faces and changed regions) here.")),
    ("ray", Optional[str], typer.Option(None, "--ray", help="Batch only: run it on Ray Data, `local` (this machine), "
                                                            "`auto` (the cluster joined) or an address "
                                                            "(ray://host:port).")),
)


def declared_option(name: str):
    """The ``typer.Option`` of the declared swap option ``name`` (default, flag, help; its range
    and choices are checked by the declaration, so the message is the same everywhere)."""
    spec = OPTION_BY_NAME[name]
    help_text = spec.help
    if spec.choices is not None and not spec.is_list:
        help_text += f" (one of: {', '.join(str(c) for c in spec.choices)})"
    return typer.Option(None if spec.repeat else spec.text_default, *spec.decls, help=help_text)


def _typer_option(spec) -> inspect.Parameter:
    """The typer parameter of one declared swap option."""
    annotation = Optional[list[str]] if spec.repeat else Optional[spec.kind] if spec.optional else spec.kind
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=declared_option(spec.name),
                             annotation=annotation)


def swap_signature() -> inspect.Signature:
    """The ``swap`` command's parameters: the files, then every declared swap option (:data:`SWAP_OPTIONS`)."""
    fixed = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, annotation, option in _FILE_PARAMS]
    return inspect.Signature(fixed + [_typer_option(spec) for spec in SWAP_OPTIONS])


def swap_cmd(**params):
    """Swap the face of SOURCE into the faces of TARGET (image or video), torch-free.

    A folder or a .txt list as TARGET is a batch: one output per input, named as the input, in the
    folder OUTPUT, with OUTPUT/ffkit-batch.json recording each input; a rerun skips finished outputs.
    """
    files = {name: params.pop(name) for name, _, _ in _FILE_PARAMS}
    settings = swap_settings(params, reference=files["reference"] is not None)
    _swap(settings, **files)


swap_cmd.__signature__ = swap_signature()
app.command("swap")(friendly(swap_cmd))


def _check_inputs(source, target, output, reference, json_out, ray):
    """The cheap checks, before anything is loaded or written: ``(batch plan or None, video?)``."""
    from ffkit.runtime.media import is_video_path, probe_video, read_image
    from ffkit.runtime.swap_files import check_output_path

    plan = _batch_plan(target, output, ray, json_out, source, reference)
    if plan is None:
        check_output_path(target, output)
        refuse_overwrite(output, source, target, reference)
    if json_out is not None:
        refuse_overwrite(json_out, source, target, reference, output, option="--json")
    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise FfkitError(f"{json_out}: cannot write output, folder {json_out.resolve().parent} does not exist")
    read_image(source)
    if reference is not None:
        read_image(reference)
    video = is_video_path(target) if plan is None else plan.has_video
    if plan is None and video:
        probe_video(target)
    elif plan is None:
        read_image(target)
    return plan, video


def _load(settings, models, source, reference, video):
    """Pick the models, open their sessions, find the identities: ``(chosen, pipeline, src, ref, workers)``."""
    from ffkit.runtime.frame_pipeline import Pipeline
    from ffkit.runtime.media import read_image
    from ffkit.runtime.sessions import default_threads

    chosen = settings.pick(models)
    for note in chosen.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    workers = settings.frame_workers(video, os.cpu_count() or 1)
    pool = settings.session_pool(workers, default_threads(workers) if video else 0, warn=_warn)
    with err.status("loading models"):
        pipeline = Pipeline.from_models(chosen, pool, settings.options)
        src = pipeline.prepare_source(read_image(source), str(source))
        ref = pipeline.prepare_reference(read_image(reference), str(reference)) if reference is not None else None
    _print_models(chosen, pool)
    return chosen, pipeline, src, ref, workers


def _swap(settings, source, target, output, models, reference, json_out, ray) -> None:
    """``ffkit swap`` once its options are checked: one file, or a batch (here or on Ray)."""
    from ffkit.runtime.swap_files import swap_image

    plan, video = _check_inputs(source, target, output, reference, json_out, ray)
    chosen, pipeline, src, ref, workers = _load(settings, models, source, reference, video)
    if plan is not None:
        _run_batch(plan, ray, pipeline, src, ref, workers, settings, models=models, chosen=chosen)
        return
    if video:
        summary = _run_video(pipeline, src, target, output, ref, workers, settings.tracking)
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


def _run_batch(plan, ray, pipeline, src, ref, workers, settings, *, models, chosen):
    """Swap every input of ``plan`` here (``ray`` None) or on Ray with the same ``settings``;
    summary line, exit 1 if any failed."""
    from ffkit.runtime.swap_files import swap_file

    from .batch import finish, run_batch

    if ray is None:
        manifest = run_batch(plan, lambda item, tick: swap_file(pipeline, src, item.input, item.output, ref,
                                                                 workers=workers, progress=tick,
                                                                 tracking=settings.tracking),
                             console=err)
    else:
        from .ray_batch import SwapSetup, run_ray_batch

        manifest = run_ray_batch(plan, SwapSetup.of(models, chosen, settings=settings, source=src, reference=ref),
                                 ray, console=err)
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
    validate: bool = typer.Option(True, "--validate/--no-validate",
                                  help="End by building the FP16 and INT8 variants of the detector, embedder and "
                                       "swapper, judging those sets against FP32 (ffkit validate) and finding the "
                                       "fastest set within validate's budgets (ffkit tune, writes "
                                       "OUTPUT/models/set.json)."),
):
    """Build every stage from deterministic SYNTHETIC weights and run the whole chain on a photo and a video.

    The weights are filled by ffkit's documented deterministic rule, not trained, so the "swap" is an
    arbitrary but repeatable change of whatever the untrained detector calls a face: this shows the
    pipeline working end to end, not face-swap quality. Models are cached in OUTPUT/models.
    """
    from .demo import run_demo

    run_demo(output, swapper=swapper, enhance=enhance, frames=frames, providers=providers, rebuild=rebuild,
             full=not basic, validate=validate, console=out, status_console=err, warn=_warn)
