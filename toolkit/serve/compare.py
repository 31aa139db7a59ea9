"""``POST /compare``: one target through two variant sets, side by side, with figures.

A server started with ``--compare-variant V`` loads a second :class:`~.engine.SwapEngine` (the same
models folder, precision ``V`` preferred). :func:`compare_swaps` swaps the same files with the
same options on both and measures what changed, judged by the first set's models:

* ``psnr_db``: PSNR of the two outputs (8-bit, whole image), ``"inf"`` when identical;
* ``face_psnr_db``: the same over the box of the first output's main face;
* ``identity_cosine``: per output, the cosine of the main face's ArcFace identity with the
  source's (the swap's goal: the source's identity), and ``between`` the two outputs' faces.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from ffkit.runtime.frame_pipeline import SwapOptions
from ffkit.runtime.media import read_image
from ffkit.runtime.swap_files import SwapSummary
from ffkit.validation.metrics import psnr

from .engine import SwapEngine

__all__ = ["compare_swaps", "figures"]


def _db(value: float) -> float | str:
    return "inf" if math.isinf(value) else round(value, 3)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)), 5)


def figures(judge: SwapEngine, options: SwapOptions, source: Path, first: Path, second: Path) -> dict:
    """The figures of two outputs of the same swap (see the module docstring); a figure that
    needs a face the judge does not find is None."""
    a, b = read_image(first), read_image(second)
    out: dict = {"psnr_db": _db(psnr(a.astype(np.float64), b.astype(np.float64), peak=255.0)),
                 "face_psnr_db": None, "identity_cosine": None}
    pipeline = judge.pipeline(options)
    try:
        src = pipeline.prepare_source(read_image(source), source.name)
        face_a = pipeline.prepare_source(a, "first output")
        face_b = pipeline.prepare_source(b, "second output")
    except Exception:  # noqa: BLE001 - no face found in an output: no face figures, the images still shown
        return out
    x1, y1, x2, y2 = (int(round(v)) for v in face_a.box[:4])
    h, w = a.shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 > x1 and y2 > y1 and a.shape == b.shape:
        crop_a, crop_b = a[y1:y2, x1:x2].astype(np.float64), b[y1:y2, x1:x2].astype(np.float64)
        out["face_psnr_db"] = _db(psnr(crop_a, crop_b, peak=255.0))
        out["face_box"] = [x1, y1, x2, y2]
    out["identity_cosine"] = {"first": _cos(face_a.embedding, src.embedding),
                              "second": _cos(face_b.embedding, src.embedding),
                              "between": _cos(face_a.embedding, face_b.embedding)}
    return out


def compare_swaps(first: SwapEngine, second: SwapEngine, source: Path, target: Path, folder: Path,
                  reference: Optional[Path], options: SwapOptions, enhance: bool,
                  frame_enhance: Optional[str]) -> tuple[Path, SwapSummary, Path, SwapSummary, dict]:
    """Swap ``target`` on both engines into ``folder`` (``first<suffix>``, ``second<suffix>``):
    ``(first output, its summary, second output, its summary, figures)``."""
    out_a, out_b = folder / f"first{target.suffix}", folder / f"second{target.suffix}"
    summary_a = first.swap_image(source, target, out_a, reference, options, enhance, frame_enhance)
    summary_b = second.swap_image(source, target, out_b, reference, options, enhance, frame_enhance)
    return out_a, summary_a, out_b, summary_b, figures(first, options, source, out_a, out_b)
