"""Each wrapper held to its promise when it is written: FaceFusion's decode of the wrapped file
(:mod:`.decode`) equals ffkit's decode of the original artifact.

Tolerances: points and boxes within :data:`PIXEL_TOL` px, scores (and images, heatmaps) within
:data:`VALUE_TOL`. A miss raises :class:`~ffkit.recipes.errors.ParityError` (exit code 3) naming
the file and the worst difference, and the package is not written. Each check returns one line
saying what was compared.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ffkit.recipes import get_recipe
from ffkit.recipes.errors import ParityError
from ffkit.runtime.landmarker import Landmarker, crop_face, decode_heatmaps, face_center_scale
from ffkit.runtime.media import read_image
from ffkit.runtime.retinaface_decode import decode_boxes, decode_landmarks, prior_boxes
from ffkit.runtime.sessions import create_session, run_session
from ffkit.validation.face_metrics import PHOTO

from . import decode

__all__ = ["PIXEL_TOL", "VALUE_TOL", "DETECTOR_SIZE", "FACE_SCORE", "check_simswap", "check_fan", "fan_crops",
           "detector_frames", "check_detector", "CHECKS"]

PIXEL_TOL = 0.01
VALUE_TOL = 1e-5
#: FaceFusion's default ``face_detector_size`` and ``face_detector_score``.
DETECTOR_SIZE = 640
FACE_SCORE = 0.5


def _worst(label: str, a: np.ndarray, b: np.ndarray, tol: float, where: Path) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ParityError(f"{where}: FaceFusion's {label} has shape {a.shape}, ffkit's {b.shape}")
    worst = float(np.max(np.abs(a - b))) if a.size else 0.0
    if not worst <= tol:
        raise ParityError(f"{where}: FaceFusion's {label} differs from ffkit's by {worst:.3g} (tolerance {tol:g}); "
                          "the wrapped file is not written")
    return worst


def _outputs(session, feed) -> list[np.ndarray]:
    result = run_session(session, feed)
    return [np.asarray(result[o.name]) for o in session.get_outputs()]


def check_simswap(original: str | os.PathLike, wrapped: str | os.PathLike, recipe_name: str = "simswap_512",
                  seed: int = 0) -> str:
    """Run the wrapped file as FaceFusion does (inputs by name: ``target``, ``source``) and the
    original with ffkit's names on the same crop and identity: the outputs must agree."""
    recipe = get_recipe(recipe_name)
    size = recipe.crop_size
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.0, 1.0, (1, 3, size, size)).astype(np.float32)
    source = rng.normal(size=(1, 512))
    source = (source / np.linalg.norm(source)).astype(np.float32)
    ff_session, ours = create_session(wrapped), create_session(original)
    names = [i.name for i in ff_session.get_inputs()]
    theirs = _outputs(ff_session, decode.swapper_feed(names, target, source))[0]
    mine = _outputs(ours, {recipe.input_names[0]: target, recipe.input_names[1]: source})[0]
    worst = _worst("swapped crop", theirs, mine, VALUE_TOL, Path(wrapped))
    return f"inputs fed by name (target, source); output equals the original's (max diff {worst:.1e})"


def fan_crops(seed: int = 0) -> np.ndarray:
    """256 x 256 BGR crops to check a landmarker wrapper on: the bundled photo's face cropped as
    face_alignment does, mirrored, shifted and darkened, and a seeded noise crop."""
    photo = read_image(PHOTO)
    box = np.array([180.0, 60.0, 330.0, 250.0])   # around the astronaut's face
    crops = [crop_face(photo, *face_center_scale(b)) for b in (box, box + [20, -10, 20, -10], box * 1.15)]
    crops += [crops[0][:, ::-1], cv2.convertScaleAbs(crops[1], alpha=0.4, beta=0)]
    crops.append(np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    return np.ascontiguousarray(np.stack(crops))


def check_fan(original: str | os.PathLike, wrapped: str | os.PathLike, crops: np.ndarray | None = None) -> str:
    """Per crop: FaceFusion's points (``landmarks[:, :, :2] / 64 * 256`` of the wrapped file fed
    BGR / 255) equal ffkit's (:func:`decode_heatmaps` of the original's heatmaps of the RGB crop,
    times 4) within :data:`PIXEL_TOL` px; the score column equals the heatmap peaks and the
    second output the original's heatmaps within :data:`VALUE_TOL`."""
    crops = fan_crops() if crops is None else crops
    ff_session, ours = create_session(wrapped), Landmarker(create_session(original))
    worst_px = worst_value = 0.0
    for crop in crops:
        outputs = _outputs(ff_session, {ff_session.get_inputs()[0].name: decode.fan_input(crop)})
        points, _ = decode.fan_points(outputs)
        heatmaps = ours.heatmaps(crop[None])
        expected, peaks = decode_heatmaps(heatmaps)
        scale = crop.shape[0] / heatmaps.shape[-1]
        worst_px = max(worst_px, _worst("68 points", points, expected[0] * scale, PIXEL_TOL, Path(wrapped)))
        worst_value = max(worst_value, _worst("point scores", outputs[0][0, :, 2], peaks[0], VALUE_TOL, Path(wrapped)),
                          _worst("heatmaps", outputs[1], heatmaps, VALUE_TOL, Path(wrapped)))
    return (f"{len(crops)} crops fed BGR / 255: points equal ffkit's decode within {worst_px:.1e} px, "
            f"scores and heatmaps within {worst_value:.1e}")


def detector_frames() -> list[np.ndarray]:
    """BGR frames to check a detector wrapper on: the bundled photo, and a 640 x 640 canvas
    holding it three times (two sizes, one mirrored): several faces."""
    photo = read_image(PHOTO)
    canvas = np.full((640, 640, 3), 96, np.uint8)
    for side, (x, y), flip in ((320, (0, 0), False), (200, (400, 40), False), (256, (300, 360), True)):
        face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        canvas[y:y + side, x:x + side] = face[:, ::-1] if flip else face
    return [photo, canvas]


def _ffkit_anchors(session, net_image: np.ndarray, recipe_name: str) -> tuple[np.ndarray, ...]:
    """ffkit's decode of the original RetinaFace on ``net_image``, every prior: boxes, scores, points."""
    recipe = get_recipe(recipe_name)
    spec = recipe.detector_decode
    loc, conf, landms = _outputs(session, {recipe.input_names[0]: recipe.pixels.to_tensor(net_image)})[:3]
    h, w = net_image.shape[:2]
    priors = prior_boxes(h, w, spec.anchor_sizes, spec.strides)
    boxes = decode_boxes(loc[0], priors, spec.variances) * np.float32([w, h, w, h])
    points = decode_landmarks(landms[0], priors, spec.variances).reshape(-1, 5, 2) * np.float32([w, h])
    return boxes, conf[0][:, 1], points


def check_detector(original: str | os.PathLike, wrapped: str | os.PathLike,
                   recipe_name: str = "retinaface_mobilenet0.25", frames: list[np.ndarray] | None = None,
                   size: int = DETECTOR_SIZE, score: float = FACE_SCORE) -> str:
    """Per frame, as FaceFusion's ``retinaface`` slot runs it (restricted to ``size``, pasted on a
    zero canvas, ``(BGR - 127.5) / 128``, 9 outputs decoded by :func:`decode.retinaface_faces`)
    against ffkit's decode of the original on the same canvas: every anchor's score within
    :data:`VALUE_TOL`, the same anchors kept at ``score``, their boxes and points within
    :data:`PIXEL_TOL` px."""
    frames = detector_frames() if frames is None else frames
    ff_session, ours = create_session(wrapped), create_session(original)
    where, faces, worst_px, worst_score = Path(wrapped), 0, 0.0, 0.0
    for frame in frames:
        h, w = frame.shape[:2]
        if h > size or w > size:
            scale = min(size / h, size / w)
            frame = cv2.resize(frame, (int(w * scale), int(h * scale)))
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[:frame.shape[0], :frame.shape[1]] = frame
        outputs = _outputs(ff_session, {ff_session.get_inputs()[0].name: decode.detector_input(frame, size, size)})
        boxes, scores, points = _ffkit_anchors(ours, canvas, recipe_name)
        _, all_scores, _ = decode.retinaface_faces(outputs, size, size, -np.inf)
        worst_score = max(worst_score, _worst("anchor scores", all_scores, scores, VALUE_TOL, where))
        ff_boxes, _, ff_points = decode.retinaface_faces(outputs, size, size, score)
        keep = scores >= score
        if len(ff_boxes) != int(keep.sum()):
            raise ParityError(f"{where}: FaceFusion keeps {len(ff_boxes)} anchors at score {score}, "
                              f"ffkit {int(keep.sum())}; the wrapped file is not written")
        worst_px = max(worst_px, _worst("boxes", ff_boxes, boxes[keep], PIXEL_TOL, where),
                       _worst("5 points", ff_points, points[keep], PIXEL_TOL, where))
        faces += int(keep.sum())
    return (f"{len(frames)} frames at {size} x {size} ((BGR - 127.5) / 128): every anchor's score within "
            f"{worst_score:.1e}; {faces} anchors at score >= {score}: boxes and points within {worst_px:.1e} px")


#: Wrapper name -> its check ``(original, wrapped, recipe name) -> line``.
CHECKS = {"simswap_inputs": lambda o, w, r: check_simswap(o, w, r), "fan_points": lambda o, w, r: check_fan(o, w),
          "retinaface_strides": lambda o, w, r: check_detector(o, w, r)}
