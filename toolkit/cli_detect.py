"""``ffkit detect``: faces, scores, 5 (or 68) landmarks, aligned crops and drawings, torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import typer
from rich.table import Table

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.paths import refuse_overwrite

from .cli_app import app, friendly
from .cli_runtime import _warn, _write_json
from .console import err, out


@app.command("detect")
@friendly
def detect_cmd(
    images: list[Path] = typer.Argument(..., help="Images to search for faces."),
    detector: Path = typer.Option(..., "--detector",
                                  help="A detector ONNX file (RetinaFace, SCRFD, YOLOFace: the family is read from it)."),
    score_threshold: float = typer.Option(0.5, "--score-threshold", help="Keep faces scoring above this (0..1)."),
    nms_threshold: float = typer.Option(0.4, "--nms-threshold", help="IoU above which overlapping boxes are merged."),
    max_side: int = typer.Option(640, "--max-side",
                                 help="Shrink images to this longer side before detecting (0 = feed as is)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every face (image coordinates) here."),
    crops: Optional[Path] = typer.Option(None, "--crops", help="Write aligned face crops into this folder."),
    crop_size: int = typer.Option(112, "--crop-size", help="Crop side: 112 ArcFace, 128 inswapper, 224 SimSwap, 512 FFHQ."),
    template: Optional[str] = typer.Option(None, "--template",
                                           help="arcface_112 | arcface_128 | simswap_224 | ffhq_512 (default: from --crop-size)."),
    draw: Optional[Path] = typer.Option(None, "--draw",
                                        help="Draw boxes and landmarks: a file for one image, a folder for several."),
    providers: str = typer.Option("auto", "--providers", help="auto, or a comma list: cuda,coreml,directml,tensorrt,cpu."),
    landmarks: int = typer.Option(5, "--landmarks", help="5 (the detector's), or 68: also run --landmarker on each face."),
    landmarker: Optional[Path] = typer.Option(None, "--landmarker", help="--landmarks 68: a fan_2dfan4 ONNX artifact."),
    provider_option: Optional[list[str]] = typer.Option(None, "--provider-option",
                                                        help="PROVIDER:KEY=VALUE for onnxruntime, repeatable "
                                                             "(e.g. cuda:device_id=1, tensorrt:trt_fp16_enable=0)."),
):
    """Find faces (box, score, 5 landmarks) with a detector artifact; optionally save aligned crops.

    With --landmarks 68 each face also gets "landmarks_68" (68 x [x, y], face_alignment's decode of
    2D-FAN-4 heatmaps from the face box); crops are then aligned from those (68 -> 5 as FaceFusion).

    With --max-side 0 the faces equal what Pytorch_Retinaface's detect.py keeps above the score
    threshold (top_k 5000, keep_top_k 750). JSON: {"images": [{"path", "width", "height",
    "faces": [{"box": [x1, y1, x2, y2], "score", "landmarks": [[x, y] x 5]}]}]}, faces by score.
    """
    from ffkit.runtime.detection import DetectParams
    from ffkit.runtime.provider_options import parse_provider_options

    provider_options = parse_provider_options(provider_option or ())
    template = _crop_template(template, crop_size)
    _check_outputs(images, json_out, crops, draw)
    det, fan, name = _open_models(detector, landmarks, landmarker, providers, provider_options)
    params = DetectParams(max_side=max_side, score_threshold=score_threshold, nms_threshold=nms_threshold)
    results = _detect_all(images, det, fan, params)   # a bad image fails before anything is written
    report = _report(results)
    _write_images(results, crops, draw, template, crop_size)
    if json_out is not None:
        _write_json(json_out, report)
    _print_summary(report, f"{name}, score > {score_threshold:g}",
                   (("json", json_out), ("crops", crops), ("drawing", draw)))


def _crop_template(template: Optional[str], crop_size: int) -> str:
    """The crop template: ``template`` checked, or the one ``crop_size`` implies; one line when
    the name is unknown or the pair cannot make a crop."""
    from ffkit.runtime.templates import TEMPLATES, arcface_template, norm_matrix, template_for_size

    if template is None:
        try:
            template = template_for_size(crop_size)
        except ValueError as e:
            raise FfkitError(f"--crop-size {crop_size}: {e}") from None
    elif template not in TEMPLATES:
        raise FfkitError(f"--template {template}: unknown (known: {', '.join(TEMPLATES)})")
    try:  # the template/size pair must make sense before any work is done
        norm_matrix(template, arcface_template(112).astype("float64") * 2 + 10, crop_size)
    except ValueError as e:
        raise FfkitError(f"--template {template} --crop-size {crop_size}: {e}") from None
    return template


def _check_outputs(images: Sequence[Path], json_out: Optional[Path], crops: Optional[Path],
                   draw: Optional[Path]) -> None:
    """Refuse, before any work, outputs that cannot be written or would overwrite an input."""
    from ffkit.runtime.media import is_image_path

    if crops is not None and (crops.exists() and not crops.is_dir()):
        raise FfkitError(f"{crops}: --crops needs a folder")
    for path in (json_out, draw if draw is not None and len(images) == 1 else None):
        if path is not None and not path.resolve().parent.is_dir():
            raise FfkitError(f"{path}: cannot write output, folder {path.resolve().parent} does not exist")
    for path, option in ((json_out, "--json"), (draw, "--draw")):
        if path is not None:
            refuse_overwrite(path, *images, option=option)
    if draw is not None and len(images) == 1 and not is_image_path(draw):
        raise FfkitError(f"{draw}: --draw for one image needs an image suffix (.png, .jpg, ...)")
    if draw is not None and len(images) > 1 and draw.exists() and not draw.is_dir():
        raise FfkitError(f"{draw}: --draw for several images needs a folder")


def _open_models(detector: Path, landmarks: int, landmarker: Optional[Path], providers: str, provider_options):
    """``(detector, landmarker or None, detector recipe name)`` opened on one session pool; the
    detector's family is picked from its recipe (:func:`ffkit.runtime.detectors.open_detector`)."""
    from ffkit.runtime.detectors import open_detector
    from ffkit.runtime.models import require_role
    from ffkit.runtime.sessions import SessionPool, resolve_providers

    if landmarks not in (5, 68):
        raise FfkitError(f"--landmarks {landmarks}: 5 or 68")
    if (landmarks == 68) != (landmarker is not None):
        raise FfkitError("--landmarks 68 and --landmarker FILE go together (a fan_2dfan4 artifact)")
    ref = require_role(detector, "detector", "--detector")
    lm_ref = require_role(landmarker, "landmarker", "--landmarker") if landmarker is not None else None
    pool = SessionPool(resolve_providers(providers), warn=_warn, provider_options=provider_options)
    det = open_detector(ref, pool.get(ref.path))
    fan = None
    if lm_ref is not None:
        from ffkit.runtime.landmarker import Landmarker

        fan = Landmarker(pool.get(lm_ref.path), pixels=lm_ref.recipe.pixels)
    return det, fan, ref.recipe.name


def _detect_all(images: Sequence[Path], det, fan, params) -> list[tuple]:
    """``(path, image shape, Detections, 68 points K x 68 x 2 or None)`` per image; with a
    landmarker the 5 points are replaced by those its 68 points give (crops align from them,
    as the swap does)."""
    from ffkit.runtime.media import read_image

    results = []
    with err.status("detecting") as status:
        for i, path in enumerate(images):
            status.update(f"detecting {path.name} ({i + 1}/{len(images)})")
            image = read_image(path)
            dets = det.detect(image, params)
            points = fan.landmarks(image, dets.boxes)[0] if fan is not None else None
            if points is not None and len(dets):
                from ffkit.runtime.landmarker import landmarks_68_to_5

                dets.landmarks[:] = np.stack([landmarks_68_to_5(p) for p in points])
            results.append((path, image.shape, dets, points))
    return results


def _report(results: Sequence[tuple]) -> dict:
    """The JSON report of :func:`_detect_all`'s results (image coordinates, faces by score)."""
    report = {"images": []}
    for path, shape, dets, points in results:
        faces = [{"box": [float(v) for v in dets.boxes[k]], "score": float(dets.scores[k]),
                  "landmarks": [[float(x), float(y)] for x, y in dets.landmarks[k]]} for k in range(len(dets))]
        for k, face in enumerate(faces if points is not None else []):
            face["landmarks_68"] = [[float(x), float(y)] for x, y in points[k]]
        report["images"].append({"path": str(path), "width": int(shape[1]), "height": int(shape[0]), "faces": faces})
    return report


def _write_images(results: Sequence[tuple], crops: Optional[Path], draw: Optional[Path], template: str,
                  crop_size: int) -> None:
    """Aligned crops (``crops/<stem>.face<k>.png``) and drawings (``draw``: a file for one
    image, ``draw/<stem>.png`` for several)."""
    if crops is None and draw is None:
        return
    from ffkit.runtime.detector import draw_detections
    from ffkit.runtime.geometry import warp_face
    from ffkit.runtime.media import read_image, write_image
    from ffkit.runtime.templates import norm_matrix

    if crops is not None:
        crops.mkdir(parents=True, exist_ok=True)
    if draw is not None and len(results) > 1:
        draw.mkdir(parents=True, exist_ok=True)
    for path, _, dets, _ in results:
        image = read_image(path)
        if crops is not None:
            for k in range(len(dets)):
                m = norm_matrix(template, dets.landmarks[k], crop_size, lmeds=False)
                write_image(crops / f"{path.stem}.face{k}.png", warp_face(image, m, crop_size))
        if draw is not None:
            target = draw if len(results) == 1 else draw / f"{path.stem}.png"
            write_image(target, draw_detections(image, dets))


def _print_summary(report: dict, title: str, written: Sequence[tuple[str, Optional[Path]]]) -> None:
    """The faces table (image, size, faces, best score) and the files written."""
    table = Table(title=f"faces ({title})")
    for col in ("image", "size", "faces", "best score"):
        table.add_column(col)
    for entry in report["images"]:
        faces = entry["faces"]
        table.add_row(entry["path"], f"{entry['width']}x{entry['height']}", str(len(faces)),
                      f"{faces[0]['score']:.3f}" if faces else "-")
    out.print(table)
    for label, path in written:
        if path is not None:
            out.print(f"wrote {label}: {path}")
