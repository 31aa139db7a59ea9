"""The swap options of ``POST /swap`` and ``POST /jobs``: form fields named as ``ffkit swap``'s options.

Each field is the option without its dashes, ``-`` written ``_`` (``--max-faces 2`` ->
``max_faces=2``), with the same default and meaning; a value out of range is a 422. A
``reference`` upload switches to reference matching, as ``ffkit swap --reference`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Form

from ffkit.runtime.detector import DetectParams
from ffkit.runtime.frame_pipeline import SwapOptions

__all__ = ["SwapForm", "swap_form"]


@dataclass(frozen=True)
class SwapForm:
    """The per-request swap options (see ``ffkit swap --help`` for each)."""

    select: Literal["all", "largest"] = "all"
    max_faces: int = 0
    min_face_size: float = 0.0
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_side: int = 640
    similarity: float = 0.4
    enhance: bool = False
    enhance_blend: float = 0.8

    def options(self, with_reference: bool) -> SwapOptions:
        """The :class:`SwapOptions` ``ffkit swap`` builds from the same options
        (``select`` becomes ``reference`` when a reference image is given)."""
        return SwapOptions(
            detect=DetectParams(max_side=self.max_side, score_threshold=self.score_threshold,
                                nms_threshold=self.nms_threshold),
            select="reference" if with_reference else self.select, max_faces=self.max_faces,
            min_face_size=self.min_face_size, similarity=self.similarity, enhance_blend=self.enhance_blend)


def swap_form(
    select: Literal["all", "largest"] = Form("all", description="Without a reference: all faces or the largest."),
    max_faces: int = Form(0, ge=0, description="At most this many faces per frame, best score first (0 = all)."),
    min_face_size: float = Form(0.0, ge=0, description="Ignore faces smaller than this (pixels)."),
    score_threshold: float = Form(0.5, ge=0, le=1, description="Detector score threshold (0..1)."),
    nms_threshold: float = Form(0.4, ge=0, le=1, description="Detector NMS IoU threshold."),
    max_side: int = Form(640, ge=0, description="Detect on frames shrunk to this longer side (0 = as is)."),
    similarity: float = Form(0.4, ge=-1, le=1, description="With a reference: minimum ArcFace cosine similarity."),
    enhance: bool = Form(False, description="Restore swapped faces with the server's GFPGAN artifact."),
    enhance_blend: float = Form(0.8, ge=0, le=1, description="Share of the restored face (0..1)."),
) -> SwapForm:
    """FastAPI dependency: the swap option fields of a multipart form."""
    return SwapForm(select, max_faces, min_face_size, score_threshold, nms_threshold, max_side, similarity,
                    enhance, enhance_blend)
