"""The swap options of ``POST /swap`` and ``POST /jobs``: form fields named as ``ffkit swap``'s options.

Each field is the option without its dashes, ``-`` written ``_`` (``--max-faces 2`` ->
``max_faces=2``, ``--mask box,region`` -> ``mask=box,region``, ``--color-match`` ->
``color_match=true``), with the same default and meaning; a value out of range or not one of
the allowed ones is a 422 (``{"error": "<field>: <what is wrong>"}``). A ``reference`` upload
switches to reference matching, as ``ffkit swap --reference`` does. ``/jobs`` also takes the
video-only ``detect_every`` and ``smooth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from fastapi import Depends, Form
from fastapi.exceptions import RequestValidationError

from ffkit.recipes import REGISTRY
from ffkit.recipes.errors import FfkitError
from ffkit.runtime.detector import DetectParams
from ffkit.runtime.face_masks import DEFAULT_REGIONS, region_names
from ffkit.runtime.face_tracker import TrackOptions
from ffkit.runtime.frame_enhancer import FrameEnhanceOptions
from ffkit.runtime.frame_pipeline import SwapOptions

__all__ = ["SwapForm", "JobForm", "swap_form", "job_form", "FRAME_ENHANCERS", "MASKS"]

#: What ``frame_enhance`` may name: every frame enhancer recipe, or ``auto`` (the best one loaded).
FRAME_ENHANCERS = tuple(r.name for r in REGISTRY.values() if r.role == "frame_enhancer") + ("auto",)
FrameEnhancerName = Literal[FRAME_ENHANCERS]  # type: ignore[valid-type]
#: The paste masks ``mask`` combines (``ffkit swap --mask``).
MASKS = ("box", "region")


@dataclass(frozen=True)
class SwapForm:
    """The per-request swap options (see ``ffkit swap --help`` for each); ``mask`` and
    ``mask_regions`` are already split and checked."""

    select: Literal["all", "largest"] = "all"
    max_faces: int = 0
    min_face_size: float = 0.0
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_side: int = 640
    similarity: float = 0.4
    enhance: bool = False
    enhance_blend: float = 0.8
    mask: tuple[str, ...] = ("box",)
    mask_regions: tuple[str, ...] = DEFAULT_REGIONS
    color_match: bool = False
    landmarks: Literal[5, 68] = 5
    frame_enhance: Optional[str] = None
    tile: int = -1
    frame_enhance_size: Literal["native", "input"] = "native"

    def options(self, with_reference: bool) -> SwapOptions:
        """The :class:`SwapOptions` ``ffkit swap`` builds from the same options
        (``select`` becomes ``reference`` when a reference image is given)."""
        return SwapOptions(
            detect=DetectParams(max_side=self.max_side, score_threshold=self.score_threshold,
                                nms_threshold=self.nms_threshold),
            select="reference" if with_reference else self.select, max_faces=self.max_faces,
            min_face_size=self.min_face_size, similarity=self.similarity, enhance_blend=self.enhance_blend,
            mask=self.mask, mask_regions=self.mask_regions, color_match=self.color_match, landmarks=self.landmarks,
            frame_enhance=FrameEnhanceOptions(tile=self.tile, size=self.frame_enhance_size))


@dataclass(frozen=True)
class JobForm:
    """The options of a video job: the swap's, and how faces are followed between frames."""

    swap: SwapForm
    detect_every: int = 1
    smooth: float = 0.0

    def tracking(self) -> TrackOptions:
        """The :class:`TrackOptions` ``ffkit swap --detect-every --smooth`` builds."""
        return TrackOptions(detect_every=self.detect_every, smooth=self.smooth)


def _invalid(field: str, message: str) -> RequestValidationError:
    """A 422 for ``field``, worded as FastAPI's own field errors (``field: message``)."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def parse_masks(text: str) -> tuple[str, ...]:
    """``"box,region"`` -> ``("box", "region")``, split as ``ffkit swap --mask`` splits it.

    Raises:
        RequestValidationError: empty, or a name other than ``box`` / ``region`` (a 422).
    """
    masks = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in masks if m not in MASKS]
    if unknown or not masks:
        raise _invalid("mask", f"masks are box and/or region (e.g. box,region), got {text!r}")
    return masks


def parse_regions(text: str) -> tuple[str, ...]:
    """``"skin,nose"`` -> the checked region names (:func:`~ffkit.runtime.face_masks.region_names`).

    Raises:
        RequestValidationError: an unknown region name, or none (a 422 listing the valid ones).
    """
    try:
        return region_names(tuple(r.strip() for r in text.split(",") if r.strip()))
    except FfkitError as e:
        raise _invalid("mask_regions", str(e)) from None


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
    mask: str = Form("box", description="Paste masks, combined by their minimum: box, region (the face "
                                        "parser's regions) or box,region."),
    mask_regions: str = Form(",".join(DEFAULT_REGIONS), description="mask region: face regions to swap, "
                                                                    "comma-separated (FaceFusion's names)."),
    color_match: bool = Form(False, description="Match the swapped face's colour (LAB mean/std) to the target's."),
    landmarks: int = Form(5, description="Align from the detector's 5 points, or 68 (the server's fan_2dfan4)."),
    frame_enhance: Optional[FrameEnhancerName] = Form(None, description="Upscale the whole output with this frame "
                                                                        "enhancer (auto: the best one loaded)."),
    tile: int = Form(-1, ge=-1, description="frame_enhance: tile side in pixels (0 = whole frame; -1, the default: "
                                            "whole frame up to 1 MP, else 512)."),
    frame_enhance_size: Literal["native", "input"] = Form("native", description="frame_enhance: native (upscaled) "
                                                                                "or input (resized back)."),
) -> SwapForm:
    """FastAPI dependency: the swap option fields of a multipart form (a bad value: 422)."""
    if landmarks not in (5, 68):
        raise _invalid("landmarks", f"Input should be 5 or 68, got {landmarks}")
    return SwapForm(select, max_faces, min_face_size, score_threshold, nms_threshold, max_side, similarity,
                    enhance, enhance_blend, parse_masks(mask), parse_regions(mask_regions), color_match, landmarks,
                    frame_enhance, tile, frame_enhance_size)


def job_form(
    swap: SwapForm = Depends(swap_form),
    detect_every: int = Form(1, ge=1, description="Detect on every k-th frame, follow the faces in between."),
    smooth: float = Form(0.0, ge=0, lt=1, description="Landmark filter weight 0 <= s < 1 (0 = off)."),
) -> JobForm:
    """FastAPI dependency: the swap fields plus ``detect_every`` and ``smooth`` (``/jobs``)."""
    return JobForm(swap, detect_every, smooth)
