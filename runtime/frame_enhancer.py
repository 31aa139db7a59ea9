"""Whole-frame super-resolution with a Real-ESRGAN artifact, as xinntao/Real-ESRGAN's RealESRGANer.

:class:`FrameEnhancer` reproduces ``realesrgan/utils.py`` ``RealESRGANer.enhance`` (commit
a4abfb2) around the bare network, torch-free:

1. uint8 pixels / 255 in float32; BGR -> RGB (grey: 3 equal channels; BGRA: the alpha plane
   is upscaled by the same network as a grey image, RealESRGANer's ``alpha_upsampler='realesrgan'``);
2. ``pre_process``: reflect padding of ``pre_pad`` rows/columns on the BOTTOM and RIGHT only,
   then for scale 2 (1) reflect padding bottom/right up to a multiple of 2 (4) (mod padding);
3. one network pass (``tile == 0``) or ``tile_process``: a row-major grid of ``ceil(W / tile)`` x
   ``ceil(H / tile)`` tiles of the padded image, each run with ``tile_pad`` pixels of context
   clipped to the image, and only its core placed in the output (no blending);
4. ``post_process``: the mod padding, then the pre padding, cropped off the output (``* scale``);
5. clamp to [0, 1], RGB -> BGR (grey: BGR2GRAY), ``(x * 255).round()`` to uint8;
6. ``size="input"``: ``cv2.resize`` back to the input size with ``INTER_LANCZOS4``, as
   RealESRGANer does for ``outscale != scale`` (here ``outscale = 1``); ``size="native"``
   keeps the upscaled size (``outscale = scale``: no resize).

Only uint8 frames are taken (RealESRGANer's 16-bit path is refused in one line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.spec import Recipe

from .sessions import run_session

__all__ = [
    "MOD_SCALE",
    "SIZE_MODES",
    "FrameEnhanceError",
    "FrameEnhanceOptions",
    "FrameEnhancer",
    "tile_grid",
    "upscale_factor",
]

SizeMode = Literal["native", "input"]
SIZE_MODES = ("native", "input")

#: RealESRGANer.pre_process: scale -> the multiple H and W are reflect-padded to (none for 4).
MOD_SCALE = {2: 2, 1: 4}


class FrameEnhanceError(FfkitError):
    """A frame or an option the frame enhancer cannot take."""


@dataclass(frozen=True)
class FrameEnhanceOptions:
    """How RealESRGANer is run (defaults: ``inference_realesrgan.py``'s).

    Attributes:
        tile: tile side in pixels of the padded image (0: the whole frame in one pass; memory
            grows with the frame: 64 float32 feature maps at the upscaled size, about 8 GB for
            x4plus on a 1080p frame). For scale 2 it must be even (scale 1: a multiple of 4).
            :data:`AUTO` (-1): one pass up to :data:`AUTO_MAX_PIXELS` input pixels, tiles of
            :data:`AUTO_TILE` above (decided per frame).
        tile_pad: context pixels around each tile, computed and thrown away (even for scale 2).
        pre_pad: reflect padding added bottom/right before the network and cropped after
            (RealESRGANer's own default is 10, ``inference_realesrgan.py``'s 0).
        size: ``native`` keeps the upscaled size; ``input`` resizes the result back to the input
            frame's size (Lanczos-4).
    """

    tile: int = 0
    tile_pad: int = 10
    pre_pad: int = 0
    size: SizeMode = "native"


#: ``FrameEnhanceOptions.tile`` value asking for the automatic rule.
AUTO = -1
#: The automatic rule: frames up to this many pixels in one pass, larger ones in AUTO_TILE tiles.
AUTO_MAX_PIXELS = 1024 * 1024
AUTO_TILE = 512


def upscale_factor(recipe: Recipe) -> int:
    """The integer ratio of a frame enhancer's output height to its input height (4 for
    ``realesrgan_x4plus``, whose output axis is named ``4H``)."""
    ones = {"N": 1, "H": 1, "W": 1}
    out_h = recipe.outputs[0].concrete_shape(ones)[2]
    in_h = recipe.inputs[0].concrete_shape(ones)[2]
    if out_h % in_h:
        raise FrameEnhanceError(f"{recipe.name}: output height {recipe.outputs[0].shape[2]} is not a whole "
                                f"multiple of input height {recipe.inputs[0].shape[2]}")
    return out_h // in_h


def tile_grid(height: int, width: int, tile: int, tile_pad: int) -> list[tuple[tuple[int, int, int, int],
                                                                              tuple[int, int, int, int]]]:
    """RealESRGANer.tile_process's tiles of an ``height x width`` (padded) image, row-major.

    Returns ``[((y0, y1, x0, x1), (py0, py1, px0, px1)), ...]``: the core each tile fills
    (``x0 = x * tile``, ``x1 = min(x0 + tile, width)``, same for y) and the input window it is
    run on (the core grown by ``tile_pad``, clipped to the image); ends are exclusive."""
    tiles = []
    for y in range(math.ceil(height / tile)):
        for x in range(math.ceil(width / tile)):
            x0, y0 = x * tile, y * tile
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            window = (max(y0 - tile_pad, 0), min(y1 + tile_pad, height), max(x0 - tile_pad, 0),
                      min(x1 + tile_pad, width))
            tiles.append(((y0, y1, x0, x1), window))
    return tiles


class FrameEnhancer:
    """A Real-ESRGAN session with RealESRGANer's pre/post-processing and tiling.

    Args:
        session: onnxruntime session of a frame enhancer artifact (input ``N x 3 x H x W`` RGB
            [0, 1] -> output ``N x 3 x sH x sW``), e.g. from :class:`~ffkit.runtime.sessions.SessionPool`.
        recipe: its recipe (``realesrgan_x4plus`` / ``realesrgan_x2plus``): gives the scale.
        options: tile, tile_pad, pre_pad, size (:class:`FrameEnhanceOptions`).

    Raises:
        FrameEnhanceError: a negative option, an unknown size mode, or a tile / tile_pad that is
            not a multiple of the scale's mod padding (scale 2: even).
    """

    def __init__(self, session: ort.InferenceSession, recipe: Recipe,
                 options: FrameEnhanceOptions = FrameEnhanceOptions()):
        self.session = session
        self.recipe = recipe
        self.options = options
        self.scale = upscale_factor(recipe)
        self.mod_scale = MOD_SCALE.get(self.scale)
        self.input_name = session.get_inputs()[0].name
        self.input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
        self._check_options()

    def _check_options(self) -> None:
        o = self.options
        for what, value in (("tile", max(o.tile, 0) if o.tile == AUTO else o.tile), ("tile_pad", o.tile_pad),
                            ("pre_pad", o.pre_pad)):
            if int(value) != value or value < 0:
                raise FrameEnhanceError(f"{self.recipe.name}: {what} must be a whole number >= 0, got {value}")
        if o.size not in SIZE_MODES:
            raise FrameEnhanceError(f"{self.recipe.name}: unknown frame enhance size {o.size!r} "
                                    f"(one of {', '.join(SIZE_MODES)})")
        if self.mod_scale and o.tile != 0 and ((o.tile > 0 and o.tile % self.mod_scale) or o.tile_pad % self.mod_scale):
            raise FrameEnhanceError(f"{self.recipe.name}: tile {o.tile} and tile_pad {o.tile_pad} must be multiples "
                                    f"of {self.mod_scale} (the network folds {self.mod_scale}x{self.mod_scale} "
                                    "pixel blocks into channels)")

    # ------------------------------------------------------------------ the steps of RealESRGANer

    def pre_process(self, image: np.ndarray) -> tuple[np.ndarray, int, int]:
        """``H x W x 3`` float32 RGB [0, 1] -> ``(1 x 3 x H' x W'`` padded tensor, mod_pad_h,
        mod_pad_w)``: ``pre_pad`` then mod padding, both reflect, bottom/right only."""
        x = np.ascontiguousarray(image.transpose(2, 0, 1))[None]
        if self.options.pre_pad:
            x = self._reflect(x, self.options.pre_pad, self.options.pre_pad, "pre_pad")
        mod_h = mod_w = 0
        if self.mod_scale:
            h, w = x.shape[2:]
            mod_h = (self.mod_scale - h % self.mod_scale) if h % self.mod_scale else 0
            mod_w = (self.mod_scale - w % self.mod_scale) if w % self.mod_scale else 0
            x = self._reflect(x, mod_h, mod_w, "mod padding")
        return x, mod_h, mod_w

    def _reflect(self, x: np.ndarray, pad_h: int, pad_w: int, what: str) -> np.ndarray:
        """torch ``F.pad(x, (0, pad_w, 0, pad_h), 'reflect')``: which needs each pad < that side."""
        h, w = x.shape[2:]
        if pad_h >= h or pad_w >= w:
            raise FrameEnhanceError(f"a {h}x{w} frame is too small for {what} of {max(pad_h, pad_w)} pixels "
                                    "(reflect padding needs a side longer than the pad)")
        return np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")

    def network(self, x: np.ndarray) -> np.ndarray:
        """One pass of the model: ``1 x 3 x h x w`` float32 -> ``1 x 3 x sh x sw`` float32."""
        feeds = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        return np.asarray(next(iter(run_session(self.session, feeds).values())), dtype=np.float32)

    def tile_for(self, height: int, width: int) -> int:
        """The tile side used for a ``height x width`` padded frame (0: one pass): the options'
        own, or for :data:`AUTO` the automatic rule."""
        if self.options.tile != AUTO:
            return self.options.tile
        return 0 if height * width <= AUTO_MAX_PIXELS else AUTO_TILE

    def tile_process(self, x: np.ndarray, tile: int | None = None) -> np.ndarray:
        """RealESRGANer.tile_process on the padded ``1 x 3 x H x W`` tensor (see :func:`tile_grid`)
        with ``tile`` (default: the options')."""
        s = self.scale
        _, c, h, w = x.shape
        out = np.zeros((1, c, h * s, w * s), np.float32)
        tile = self.options.tile if tile is None else tile
        for (y0, y1, x0, x1), (py0, py1, px0, px1) in tile_grid(h, w, tile, self.options.tile_pad):
            result = self.network(x[:, :, py0:py1, px0:px1])
            oy, ox = (y0 - py0) * s, (x0 - px0) * s
            out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = result[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
        return out

    def post_process(self, out: np.ndarray, mod_h: int, mod_w: int) -> np.ndarray:
        """Crop the mod padding, then the pre padding (``* scale``) off the bottom/right."""
        s = self.scale
        if self.mod_scale:
            h, w = out.shape[2:]
            out = out[:, :, 0:h - mod_h * s, 0:w - mod_w * s]
        if self.options.pre_pad:
            h, w = out.shape[2:]
            out = out[:, :, 0:h - self.options.pre_pad * s, 0:w - self.options.pre_pad * s]
        return out

    def upscale_rgb(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` float32 RGB [0, 1] -> ``sH x sW x 3`` float32 **BGR** clamped to [0, 1]
        (pre_process, network or tiles, post_process, clamp, channels [2, 1, 0])."""
        x, mod_h, mod_w = self.pre_process(image)
        tile = self.tile_for(*x.shape[2:])
        out = self.tile_process(x, tile) if tile > 0 else self.network(x)
        out = np.clip(self.post_process(out, mod_h, mod_w)[0], 0.0, 1.0)
        return np.ascontiguousarray(out[[2, 1, 0]].transpose(1, 2, 0))

    # ------------------------------------------------------------------ the public call

    def enhance(self, frame: np.ndarray) -> np.ndarray:
        """Upscale one frame as ``RealESRGANer.enhance`` does (see the module docstring).

        Args:
            frame: ``H x W x 3`` uint8 BGR (also ``H x W`` grey or ``H x W x 4`` BGRA, kept so).

        Returns:
            uint8 of the same channel layout, ``sH x sW`` (``size="native"``) or ``H x W``
            (``size="input"``).

        Raises:
            FrameEnhanceError: not uint8, an unsupported channel count, or a frame too small for
                the reflect padding.
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise FrameEnhanceError(f"frame enhancer takes uint8 frames, got {frame.dtype}")
        channels = 1 if frame.ndim == 2 else frame.shape[2] if frame.ndim == 3 else 0
        if channels not in (1, 3, 4) or frame.size == 0:
            raise FrameEnhanceError(f"frame enhancer takes H x W grey, H x W x 3 BGR or H x W x 4 BGRA frames, "
                                    f"got shape {frame.shape}")
        h_in, w_in = frame.shape[:2]
        image = frame.astype(np.float32) / 255
        if channels == 1:
            result = cv2.cvtColor(self.upscale_rgb(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)), cv2.COLOR_BGR2GRAY)
        elif channels == 3:
            result = self.upscale_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        else:
            colour = self.upscale_rgb(cv2.cvtColor(image[:, :, 0:3], cv2.COLOR_BGR2RGB))
            alpha = self.upscale_rgb(cv2.cvtColor(np.ascontiguousarray(image[:, :, 3]), cv2.COLOR_GRAY2RGB))
            result = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
            result[:, :, 3] = cv2.cvtColor(alpha, cv2.COLOR_BGR2GRAY)
        result = (result * 255.0).round().astype(np.uint8)
        if self.options.size == "input" and self.scale != 1:   # RealESRGANer: outscale (1) != scale
            result = cv2.resize(result, (w_in, h_in), interpolation=cv2.INTER_LANCZOS4)
        return result
