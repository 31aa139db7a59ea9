"""The swapping side of ``ffkit serve``: models picked once, one SessionPool, ``ffkit swap``'s calls.

:class:`SwapEngine` picks the artifacts at start exactly as ``ffkit swap`` does
(:func:`~ffkit.runtime.models.pick_models`), with every optional role the folder has (enhancer,
landmarker, parser, each frame enhancer recipe), so a request may ask for any of them; it opens one
session per artifact in the one :class:`~ffkit.runtime.sessions.SessionPool` every request
shares, and swaps files with the runtime's own functions (``Pipeline.prepare_source``,
``swap_image``, ``swap_video``), so an answer has the pixels ``ffkit swap`` writes for the same
files and options. Its methods are thread-safe (the stages keep no per-frame state).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from pathlib import Path
from typing import Callable, Optional

from ffkit.recipes.roles import ROLE_TABLE
from ffkit.recipes.errors import FfkitError
from ffkit.runtime.face_tracker import TrackOptions
from ffkit.runtime.frame_enhancer import FrameEnhanceError, FrameEnhancer
from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
from ffkit.runtime.media import read_image
from ffkit.runtime.models import ModelRef, ModelSelection, pick_models, recipes_of, scan_models
from ffkit.runtime.provider_options import parse_provider_options
from ffkit.runtime.sessions import SessionPool, resolve_providers
from ffkit.runtime.swap_files import SwapSummary, swap_image, swap_video

from .errors import InvalidOption
from .settings import ServeSettings

__all__ = ["SwapEngine", "file_sha256"]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), computed once per file version (path, size, mtime)."""
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)


class SwapEngine:
    """The loaded models and the swap calls (images and videos) on their shared sessions."""

    def __init__(self, settings: ServeSettings, warn: Callable[[str], None] = lambda message: None):
        self.variant = settings.variant
        self.models, self.frame_enhancers = self._pick(settings)
        self.pool = SessionPool(resolve_providers(settings.providers), intra_op_threads=settings.session_threads,
                                warn=warn, provider_options=parse_provider_options(settings.provider_options))
        self._stages = Pipeline.from_models(self.models, self.pool)  # opens every session now
        for ref in self.frame_enhancers.values():                    # the other upscalers too
            self.pool.get(ref.path)

    @staticmethod
    def _pick(settings: ServeSettings) -> tuple[ModelSelection, dict[str, ModelRef]]:
        """Every role the models folder has, picked as ``ffkit swap`` picks it (``pick_models``
        with the flags of the optional roles that are there), and every frame enhancer recipe
        there by name (its best file; ``models.frame_enhancer`` is the ``auto`` one)."""
        refs, _ = scan_models(settings.models)
        there = {ref.role for ref in refs}
        optional = {name for name, spec in ROLE_TABLE.items() if not spec.required and name in there}
        upscalers = sorted({ref.recipe.name for ref in refs if ref.role == "frame_enhancer"})
        kwargs = {"swapper": settings.swapper, "variant": settings.variant}
        models = pick_models(settings.models, roles=optional - {"frame_enhancer"},
                             frame_enhance="auto" if upscalers else None, **kwargs)
        by_name = {models.frame_enhancer.recipe.name: models.frame_enhancer} if models.frame_enhancer else {}
        for name in upscalers:
            if name not in by_name:
                other = pick_models(settings.models, frame_enhance=name, **kwargs)
                by_name[name] = other.frame_enhancer
                models.notes.extend(note for note in other.notes if note not in models.notes)
        return models, by_name

    def pipeline(self, options: SwapOptions, enhance: bool = False, frame_enhance: Optional[str] = None) -> Pipeline:
        """A :class:`Pipeline` on the shared stages (and sessions) with this request's options.

        Args:
            options: the request's :class:`SwapOptions` (masks, landmarks, frame enhance tiling...).
            enhance: restore the swapped faces (the server's GFPGAN).
            frame_enhance: a frame enhancer recipe name, ``auto`` (the best one loaded), or None.

        Raises:
            FfkitError: the request needs a role this server did not load (enhancer for
                ``enhance``, parser for ``mask`` region, landmarker for ``landmarks`` 68, the
                named frame enhancer); one line naming the role.
            InvalidOption: a ``tile`` the chosen frame enhancer cannot take (answered 422).
        """
        stages = self._stages
        asked = {"enhance": enhance, "mask": options.mask, "landmarks": options.landmarks}
        for spec in ROLE_TABLE.values():
            if spec.name != "frame_enhancer" and spec.asks(asked) and getattr(stages, spec.name) is None:
                how = spec.option if spec.when is True else f"{spec.option}={spec.when}"
                raise FfkitError(f"{how}: this server loaded {spec.missing(recipes_of(spec.name))} from its "
                                 "models folder")
        upscaler = None
        if frame_enhance is not None:
            ref = self.models.frame_enhancer if frame_enhance == "auto" else self.frame_enhancers.get(frame_enhance)
            if ref is None:
                wanted = "frame_enhancer artifact" + ("" if frame_enhance == "auto" else f" {frame_enhance}")
                raise FfkitError(f"frame_enhance={frame_enhance}: this server loaded no {wanted} from its models "
                                 f"folder (frame enhancers loaded: {', '.join(self.frame_enhancers) or 'none'})")
            try:
                upscaler = FrameEnhancer(self.pool.get(ref.path), ref.recipe, options.frame_enhance)
            except FrameEnhanceError as e:
                raise InvalidOption(f"tile: {e}") from None
        pipeline = copy.copy(stages)  # the same stage objects (and sessions), this request's options
        pipeline.options = options
        pipeline.frame_enhancer = upscaler
        if not enhance:
            pipeline.enhancer = None
        return pipeline

    def _prepare(self, source: Path, reference: Optional[Path], options: SwapOptions, enhance: bool,
                 frame_enhance: Optional[str]):
        """What ``ffkit swap`` does before the target: read the images, find the identities."""
        source_image = read_image(source)
        reference_image = read_image(reference) if reference is not None else None
        pipeline = self.pipeline(options, enhance, frame_enhance)
        src = pipeline.prepare_source(source_image, source.name)
        ref = pipeline.prepare_reference(reference_image, reference.name) if reference_image is not None else None
        return pipeline, src, ref

    def swap_image(self, source: Path, target: Path, output: Path, reference: Optional[Path],
                   options: SwapOptions, enhance: bool = False, frame_enhance: Optional[str] = None) -> SwapSummary:
        """Swap the image file ``target`` into ``output`` (format by suffix), as ``ffkit swap``
        (upscaled when ``frame_enhance`` names a loaded frame enhancer, see :meth:`pipeline`).

        Raises:
            FfkitError: unreadable image, no face in the source or reference, a role not loaded
                (one line).
        """
        pipeline, src, ref = self._prepare(source, reference, options, enhance, frame_enhance)
        return swap_image(pipeline, src, target, output, ref)

    def swap_video(self, source: Path, target: Path, output: Path, reference: Optional[Path],
                   options: SwapOptions, enhance: bool = False, frame_enhance: Optional[str] = None, *,
                   tracking: Optional[TrackOptions] = None, workers: int = 1,
                   progress: Optional[Callable[[int, int], None]] = None) -> SwapSummary:
        """Swap the video file ``target`` into ``output`` (frames, timing, audio kept), as
        ``ffkit swap``; ``tracking`` is ``--detect-every`` / ``--smooth``; ``progress(done,
        total)`` after each frame (raising there aborts, and no output is left)."""
        pipeline, src, ref = self._prepare(source, reference, options, enhance, frame_enhance)
        return swap_video(pipeline, src, target, output, ref, workers=workers, progress=progress, tracking=tracking)

    def _describe(self, ref: ModelRef) -> dict:
        return {"file": os.path.basename(ref.path), "recipe": ref.recipe.name, "variant": ref.variant,
                "foreign": ref.foreign, "providers": list(self.pool.get(ref.path).get_providers()),
                "sha256": file_sha256(ref.path)}

    def describe(self) -> dict:
        """Per role loaded: ``file`` (name), ``recipe``, ``variant``, ``foreign``, the
        ``providers`` its session really runs on (``session.get_providers()``) and the file's
        ``sha256``; the role
        ``frame_enhancer`` maps to a list of those, one per frame enhancer recipe (the ``auto``
        one first)."""
        models = {role: self._describe(ref) for role, ref in self.models.used() if role != "frame_enhancer"}
        if self.frame_enhancers:
            models["frame_enhancer"] = [self._describe(ref) for ref in self.frame_enhancers.values()]
        return models

