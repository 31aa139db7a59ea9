"""The swapping side of ``ffkit serve``: models picked once, one SessionPool, ``ffkit swap``'s calls.

:class:`SwapEngine` picks the artifacts at start exactly as ``ffkit swap`` does
(:func:`~ffkit.runtime.models.pick_models`; the enhancer too when the folder has one), opens one
session per artifact in the one :class:`~ffkit.runtime.sessions.SessionPool` every request
shares, and swaps files with the runtime's own functions (``Pipeline.prepare_source``,
``swap_image``, ``swap_video``), so an answer has the pixels ``ffkit swap`` writes for the same
files and options. Its methods are thread-safe (the stages keep no per-frame state).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable, Optional

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
from ffkit.runtime.media import read_image
from ffkit.runtime.models import ModelSelection, pick_models
from ffkit.runtime.provider_options import parse_provider_options
from ffkit.runtime.sessions import SessionPool, resolve_providers
from ffkit.runtime.swap_files import SwapSummary, swap_image, swap_video

from .settings import ServeSettings

__all__ = ["SwapEngine"]


class SwapEngine:
    """The loaded models and the swap calls (images and videos) on their shared sessions."""

    def __init__(self, settings: ServeSettings, warn: Callable[[str], None] = lambda message: None):
        self.models: ModelSelection = self._pick(settings)
        self.pool = SessionPool(resolve_providers(settings.providers), intra_op_threads=settings.session_threads,
                                warn=warn, provider_options=parse_provider_options(settings.provider_options))
        self._stages = Pipeline.from_models(self.models, self.pool)  # opens every session now

    @staticmethod
    def _pick(settings: ServeSettings) -> ModelSelection:
        kwargs = {"swapper": settings.swapper, "variant": settings.variant}
        try:
            return pick_models(settings.models, enhance=True, **kwargs)
        except FfkitError:  # no enhancer: serve without (a request asking to enhance is a 400)
            return pick_models(settings.models, enhance=False, **kwargs)

    def pipeline(self, options: SwapOptions, enhance: bool) -> Pipeline:
        """A :class:`Pipeline` on the shared stages with this request's options.

        Raises:
            FfkitError: ``enhance`` asked for, but the models folder had no enhancer.
        """
        if enhance and self._stages.enhancer is None:
            raise FfkitError("enhance: this server loaded no enhancer artifact (gfpgan_v1.4) from its models folder")
        pipeline = copy.copy(self._stages)  # the same stage objects (and sessions), this request's options
        pipeline.options = options
        if not enhance:
            pipeline.enhancer = None
        return pipeline

    def _prepare(self, source: Path, reference: Optional[Path], options: SwapOptions, enhance: bool):
        """What ``ffkit swap`` does before the target: read the images, find the identities."""
        source_image = read_image(source)
        reference_image = read_image(reference) if reference is not None else None
        pipeline = self.pipeline(options, enhance)
        src = pipeline.prepare_source(source_image, source.name)
        ref = pipeline.prepare_reference(reference_image, reference.name) if reference_image is not None else None
        return pipeline, src, ref

    def swap_image(self, source: Path, target: Path, output: Path, reference: Optional[Path],
                   options: SwapOptions, enhance: bool = False) -> SwapSummary:
        """Swap the image file ``target`` into ``output`` (format by suffix), as ``ffkit swap``.

        Raises:
            FfkitError: unreadable image, no face in the source or reference (one line).
        """
        pipeline, src, ref = self._prepare(source, reference, options, enhance)
        return swap_image(pipeline, src, target, output, ref)

    def swap_video(self, source: Path, target: Path, output: Path, reference: Optional[Path],
                   options: SwapOptions, enhance: bool = False, *, workers: int = 1,
                   progress: Optional[Callable[[int, int], None]] = None) -> SwapSummary:
        """Swap the video file ``target`` into ``output`` (frames, timing, audio kept), as
        ``ffkit swap``; ``progress(done, total)`` after each frame (raising there aborts, and no
        output is left)."""
        pipeline, src, ref = self._prepare(source, reference, options, enhance)
        return swap_video(pipeline, src, target, output, ref, workers=workers, progress=progress)

    def describe(self) -> dict:
        """Per role: ``file`` (name), ``recipe``, ``variant``, ``foreign`` and the ``providers``
        its session really runs on (``session.get_providers()``)."""
        return {role: {"file": os.path.basename(ref.path), "recipe": ref.recipe.name, "variant": ref.variant,
                       "foreign": ref.foreign, "providers": list(self.pool.get(ref.path).get_providers())}
                for role, ref in self.models.used()}
