"""Model inputs from a folder of ordinary images (or ready tensors), for INT8 calibration and
for ``ffkit verify --calib``. Torch-free.

Each usable file becomes ONE sample: a ``{input name: float32 array}`` dict with batch 1, in
the recipe's input order and layout:

- detectors (RetinaFace): the whole image, its long side scaled DOWN to
  :data:`DETECTOR_MAX_SIDE` (never up), padded bottom/right to a multiple of 32 with the mean
  colour, BGR minus (104, 117, 123), ``1 x 3 x H x W``;
- everything else: the centred square crop resized to the recipe's ``crop_size`` and
  normalised as the recipe's ``pixels`` say: ArcFace 112 RGB in [-1, 1], SimSwap/inswapper
  RGB in [0, 1], GFPGAN 512 RGB in [-1, 1];
- further inputs (the swappers' identity latent): rows of ``latents`` (cycled) when given,
  else drawn as the recipe says (unit-norm normal vectors) from ``default_rng(seed)``.

``.npy`` (the first input, ``N x ...``) and ``.npz`` (keys = input names, or ``input_0`` ...)
files are ready tensors, used as they are (split into batch-1 samples; missing inputs drawn).
Unreadable or unusable files are skipped and counted; a folder with none usable is a one-line
:class:`CalibrationError`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import cv2
import numpy as np

from ffkit.recipes.errors import FfkitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TENSOR_SUFFIXES = (".npy", ".npz")
#: Long side a detector input is scaled down to (the runtime's default detection size).
DETECTOR_MAX_SIDE = 640
#: Detector inputs are padded to a multiple of this (RetinaFace's coarsest stride).
DETECTOR_STRIDE = 32


class CalibrationError(FfkitError):
    """A calibration folder or latents file that cannot be used."""


@dataclass
class CalibrationSet:
    """Batch-1 input samples for one recipe, and what was skipped on the way."""

    recipe_name: str
    samples: list[dict[str, np.ndarray]]
    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.samples)

    @property
    def digest(self) -> str:
        """sha256 of every sample's names, shapes and bytes, in order: the set's identity."""
        h = hashlib.sha256()
        for sample in self.samples:
            for name, value in sample.items():
                h.update(f"{name}{value.shape}{value.dtype}".encode())
                h.update(np.ascontiguousarray(value).tobytes())
        return h.hexdigest()

    def summary(self) -> dict:
        """JSON-friendly description (recorded in the artifact history)."""
        return {"samples": len(self.samples), "skipped": len(self.skipped), "digest": self.digest[:16]}


def read_latents(path: str | os.PathLike) -> np.ndarray:
    """A ``K x 512`` (or ``512``) float ``.npy`` of identity latents, as float32 ``K x 512``."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such latents file")
    try:
        latents = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy raises assorted types on garbage
        raise CalibrationError(f"{path}: not a .npy array ({type(err).__name__})") from None
    latents = np.atleast_2d(latents)
    if latents.ndim != 2 or latents.shape[1] != 512 or not np.issubdtype(latents.dtype, np.floating):
        raise CalibrationError(f"{path}: latents must be a K x 512 float array, got {latents.dtype} {latents.shape}")
    if not np.all(np.isfinite(latents)):
        raise CalibrationError(f"{path}: latents contain NaN or Inf")
    return latents.astype(np.float32)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of an ``H x W x 3`` uint8 image, resized to ``size x size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    square = image[y:y + side, x:x + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def detector_image(image: np.ndarray, max_side: int = DETECTOR_MAX_SIDE, stride: int = DETECTOR_STRIDE
                   ) -> tuple[np.ndarray, float]:
    """Scale an ``H x W x 3`` image so its long side is at most ``max_side`` (never up); returns
    ``(image, scale)``. Padding to ``stride`` is done in tensor space by :func:`image_inputs`."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return image, scale


def _pad_to_stride(tensor: np.ndarray, stride: int) -> np.ndarray:
    h, w = tensor.shape[-2:]
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        tensor = np.pad(tensor, ((0, 0), (0, 0), (0, ph), (0, pw)))
    return tensor


class _Extras:
    """Draws the inputs after the first (latents) in a fixed order."""

    def __init__(self, recipe, latents: np.ndarray | None, seed: int):
        self.recipe, self.latents, self.rng, self.count = recipe, latents, np.random.default_rng(seed), 0

    def fill(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``sample`` completed with the missing inputs, in the recipe's input order."""
        for spec in self.recipe.inputs:
            if spec.name in sample:
                continue
            if self.latents is not None and tuple(spec.shape[1:]) == (512,):
                sample[spec.name] = self.latents[self.count % len(self.latents)][None].copy()
            else:
                sample[spec.name] = spec.draw(self.rng, {**self.recipe.sample_dims, "N": 1})
        self.count += 1
        return {spec.name: sample[spec.name] for spec in self.recipe.inputs}


def image_inputs(recipe, image: np.ndarray, max_side: int = DETECTOR_MAX_SIDE) -> np.ndarray:
    """The first model input made from one ``H x W x 3`` uint8 BGR image (see module docstring)."""
    if recipe.pixels is None:
        raise CalibrationError(f"{recipe.name}: its first input is not an image; give .npy/.npz tensors")
    if recipe.role == "detector":
        scaled, _ = detector_image(image, max_side)
        return _pad_to_stride(recipe.pixels.to_tensor(scaled), DETECTOR_STRIDE)
    return recipe.pixels.to_tensor(center_crop(image, model_side(recipe)))


def model_side(recipe) -> int:
    """The square side a calibration image is cropped to: the recipe's aligned crop, or for a
    model of any height and width without one (a parser, a frame upscaler), its sample size."""
    if recipe.crop_size:
        return int(recipe.crop_size)
    return int(recipe.sample_dims.get("H", 256))


def _check_tensor(recipe, name: str, value: np.ndarray) -> np.ndarray:
    spec = next(s for s in recipe.inputs if s.name == name)
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating) and not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{name} is {value.dtype}, not numeric")
    if value.ndim == len(spec.shape) - 1:
        value = value[None]
    fixed_ok = value.ndim == len(spec.shape) and all(
        isinstance(d, str) or d == s for d, s in zip(spec.shape, value.shape))
    if not fixed_ok:
        raise ValueError(f"{name} has shape {value.shape}, expected {tuple(spec.shape)}")
    return value.astype(np.float32)


def tensor_inputs(recipe, path: Path) -> list[dict[str, np.ndarray]]:
    """Batch-1 samples from a ``.npy``/``.npz`` file of ready tensors; ValueError if unusable."""
    if path.suffix.lower() == ".npy":
        arrays = {recipe.inputs[0].name: np.load(path, allow_pickle=False)}
    else:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            arrays = {}
            for i, spec in enumerate(recipe.inputs):
                key = spec.name if spec.name in keys else f"input_{i}" if f"input_{i}" in keys else None
                if key is not None:
                    arrays[spec.name] = data[key]
        if not arrays:
            raise ValueError(f"holds none of the inputs {recipe.input_names} (keys: {keys})")
    arrays = {k: _check_tensor(recipe, k, v) for k, v in arrays.items()}
    counts = {v.shape[0] for v in arrays.values()}
    if len(counts) != 1:
        raise ValueError(f"inputs have different batch sizes {sorted(counts)}")
    return [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(counts.pop())]


def list_files(folder: str | os.PathLike) -> list[Path]:
    """The non-hidden regular files of ``folder``, sorted by name; one-line error if no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: no such calibration folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def load_calibration(recipe, folder: str | os.PathLike, samples: int | None = None,
                     latents: np.ndarray | str | os.PathLike | None = None, seed: int = 0,
                     max_side: int = DETECTOR_MAX_SIDE) -> CalibrationSet:
    """Read ``folder`` into a :class:`CalibrationSet` for ``recipe`` (at most ``samples`` samples).

    Files are taken in name order; images (jpg/png/webp/bmp, any size) are decoded with OpenCV,
    ``.npy``/``.npz`` used as ready tensors. Files that cannot be used are skipped and listed in
    ``skipped`` with the reason. Raises :class:`CalibrationError` if nothing is usable.
    """
    from ffkit.runtime.media import read_image

    if latents is not None and not isinstance(latents, np.ndarray):
        latents = read_latents(latents)
    if samples is not None and samples < 1:
        raise CalibrationError(f"--samples must be at least 1, got {samples}")
    files = list_files(folder)
    extras = _Extras(recipe, latents, seed)
    result = CalibrationSet(recipe.name, [])
    for path in files:
        if samples is not None and len(result.samples) >= samples:
            break
        suffix = path.suffix.lower()
        try:
            if suffix in IMAGE_SUFFIXES:
                first = image_inputs(recipe, read_image(path), max_side)
                found = [{recipe.inputs[0].name: first}]
            elif suffix in TENSOR_SUFFIXES:
                found = tensor_inputs(recipe, path)
            else:
                result.skipped[path.name] = "not an image or tensor file"
                continue
        except CalibrationError:
            raise
        except Exception as err:  # noqa: BLE001 - any decode failure means "skip this file"
            result.skipped[path.name] = str(err).splitlines()[0][:160] or type(err).__name__
            continue
        for sample in found:
            if samples is not None and len(result.samples) >= samples:
                break
            result.samples.append(extras.fill(dict(sample)))
        result.files.append(path.name)
    if not result.samples:
        detail = f"{len(files)} file(s), none usable" if files else "it is empty"
        if result.skipped:
            first = next(iter(result.skipped.items()))
            detail += f" (e.g. {first[0]}: {first[1]})"
        raise CalibrationError(f"{folder}: no usable calibration image or tensor: {detail}")
    return result


def sample_set(recipe, dims_list: list[Mapping[str, int]] | None = None, seed: int = 0) -> CalibrationSet:
    """The recipe's own sample inputs (``Recipe.sample_inputs``) at each dims, as a set."""
    dims_list = dims_list or [dict(recipe.sample_dims)]
    return CalibrationSet(recipe.name, [recipe.sample_inputs(seed=seed, **dims) for dims in dims_list],
                          files=[f"sample_inputs(seed={seed}, {dict(d)})" for d in dims_list])
