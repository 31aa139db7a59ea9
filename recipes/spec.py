"""Declarative description of one exportable model: everything about a recipe in one object.

A :class:`Recipe` is plain data (no torch import), so the runtime, the calibration readers and
``ffkit recipes`` can read it on a machine without torch. Only :meth:`Recipe.build_model`
imports the architecture module, which needs torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

import numpy as np

from .roles import ROLE_NAMES

#: What a model does in the pipeline (the runtime picks artifacts by role): one of the roles of
#: :data:`ffkit.recipes.roles.ROLE_TABLE` (what each does, whether a swap needs it, which option asks for it).
Role = Literal[ROLE_NAMES]  # type: ignore[valid-type]


def axis_size(name: str, dims: Mapping[str, int]) -> int:
    """The size of the dynamic axis ``name``: ``dims[name]``, or for ``"<k><name>"`` (``"4H"``)
    ``k * dims[name]``; a KeyError names the axis when ``dims`` lacks it."""
    if name in dims:
        return int(dims[name])
    digits = len(name) - len(name.lstrip("0123456789"))
    if 0 < digits < len(name) and name[digits:] in dims:
        return int(name[:digits]) * int(dims[name[digits:]])
    raise KeyError(name)


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output.

    ``shape`` holds ints for fixed axes and strings for dynamic axes (``"N"``, ``"H"``,
    ``"W"``, ``"A"``); the strings become the ONNX ``dim_param`` names. A name that is a whole
    multiple of another (``"4H"``: an upscaler's output) is sized ``4 * dims["H"]``.
    ``sample`` says how to draw a test input: ``("uniform", low, high)`` or ``("unit_norm",)``
    (a standard normal vector divided by its L2 norm, as an identity latent is).
    """

    name: str
    shape: tuple[int | str, ...]
    semantics: str = ""
    dtype: str = "float32"
    sample: tuple = ("uniform", -1.0, 1.0)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with each dynamic axis replaced by ``dims[name]`` (``"4H"``: ``4 * dims["H"]``)."""
        return tuple(d if isinstance(d, int) else axis_size(d, dims) for d in self.shape)

    def draw(self, rng: np.random.Generator, dims: Mapping[str, int]) -> np.ndarray:
        """A float32 array of this input's shape drawn as ``sample`` says."""
        shape = self.concrete_shape(dims)
        kind = self.sample[0]
        if kind == "uniform":
            return rng.uniform(self.sample[1], self.sample[2], shape).astype(np.float32)
        if kind == "unit_norm":
            v = rng.normal(0.0, 1.0, shape)
            return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)
        raise ValueError(f"unknown sample kind {kind!r}")


@dataclass(frozen=True)
class Tolerance:
    """Element-wise closeness as ``numpy.allclose``: ``|a - b| <= atol + rtol * |b|``."""

    atol: float
    rtol: float

    def excess(self, candidate: np.ndarray, reference: np.ndarray) -> float:
        """Largest ``|a-b| - (atol + rtol*|b|)``; ``<= 0`` means within tolerance."""
        a = np.asarray(candidate, dtype=np.float64)
        b = np.asarray(reference, dtype=np.float64)
        return float(np.max(np.abs(a - b) - (self.atol + self.rtol * np.abs(b))))

    def holds(self, candidate: np.ndarray, reference: np.ndarray) -> bool:
        return self.excess(candidate, reference) <= 0.0


@dataclass(frozen=True)
class AccuracyBudget:
    """What a reduced-precision variant (fp16, int8) may cost, measured on one output.

    ``metric`` is one of ``cosine`` (higher is better: embeddings), ``psnr`` (dB over the
    output's nominal ``peak`` range, higher is better: images), ``max_abs`` (lower is better),
    ``rel_l2`` (lower is better: detector heads) or ``landmark_nme`` (lower is better: a
    landmarker's heatmaps, judged on the points they decode to: the mean distance of a point from
    the reference's over the heatmap width, :mod:`ffkit.validation.landmark_metrics`). ``note``
    records the measurement it was set from.
    """

    metric: Literal["cosine", "psnr", "max_abs", "rel_l2", "landmark_nme"]
    threshold: float
    note: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("cosine", "psnr")

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


@dataclass(frozen=True, kw_only=True)
class FaceBudget(AccuracyBudget):
    """A detector's budget judged on the faces its outputs decode to, where the user looks.

    The candidate's and the reference's outputs are both decoded as Pytorch_Retinaface's
    ``detect.py`` does (:func:`ffkit.runtime.retinaface_decode.detect_faces`, at the network
    input's size) and must find the same faces scoring above ``score_threshold`` (0..1; the
    default is ``ffkit detect``'s), matched one to one by box IoU >= ``match_iou``: a face above
    the threshold on one side must be above it on the other too, unless it is borderline (scores
    within ``score_margin`` of the threshold on both sides). Over the matched faces clearly above
    the threshold (score > threshold + margin on either side), the worst box IoU must be
    >= ``min_iou`` and the worst landmark error (a landmark's distance from the reference's, over
    the reference box size ``sqrt(w * h)``) <= ``max_landmark_error``.

    Faces are judged only on images where the reference is a face map: its median anchor scores
    at most ``max_median_score`` (a trained detector calls most anchors background; random
    weights call a third of them faces, and those "faces" mean nothing). The inherited
    ``metric``/``threshold`` are the raw-tensor criterion, held to on every output when no such
    image shows a face above the threshold on either side (nothing to judge faces on).
    """

    min_iou: float
    max_landmark_error: float
    score_margin: float
    max_median_score: float
    score_threshold: float = 0.5
    match_iou: float = 0.5


@dataclass(frozen=True)
class PixelFormat:
    """How uint8 pixels map to a model tensor: ``tensor = (pixel - mean) / std`` per channel.

    ``colour`` is the channel order the model expects (``"RGB"`` or ``"BGR"``); ``mean`` and
    ``std`` are in pixel units (0..255) and in that channel order.
    """

    colour: Literal["RGB", "BGR"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_tensor(self, images_bgr: np.ndarray) -> np.ndarray:
        """``N x H x W x 3`` (or ``H x W x 3``) uint8 BGR -> ``N x 3 x H x W`` float32."""
        x = np.asarray(images_bgr)
        if x.ndim == 3:
            x = x[None]
        if self.colour == "RGB":
            x = x[..., ::-1]
        x = (x.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def to_pixels(self, tensor: np.ndarray) -> np.ndarray:
        """``N x 3 x H x W`` float32 -> ``N x H x W x 3`` uint8 BGR, rounded and clipped."""
        x = np.asarray(tensor, dtype=np.float32).transpose(0, 2, 3, 1)
        x = x * np.float32(self.std) + np.float32(self.mean)
        if self.colour == "RGB":
            x = x[..., ::-1]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DetectorDecode:
    """How a detector's outputs become faces: what the runtime's detector table reads.

    Fields:
      decoder: the name of the runtime's implementation (a key of
        ``ffkit.runtime.detectors.FAMILIES``: ``"retinaface"``); several recipe families may
        share one decoder.
      strides: feature-map stride of each pyramid level, in network-input pixels, in the order
        the outputs list the levels (RetinaFace: ``(8, 16, 32)``).
      anchor_sizes: per level, the square anchor sides in network-input pixels (RetinaFace's
        ``min_sizes``: ``((16, 32), (64, 128), (256, 512))``); ``()`` for an anchor-free head.
      variances: ``(centre, size)`` scaling of the box regressions (RetinaFace: ``(0.1, 0.2)``);
        ``()`` where the decode has none.
      input_size: ``(H, W)`` a frame is fitted into before detection for a fixed-size network;
        ``None`` where any input size is fed.
    """

    decoder: str
    strides: tuple[int, ...] = ()
    anchor_sizes: tuple[tuple[int, ...], ...] = ()
    variances: tuple[float, ...] = ()
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ExportOption:
    """A recipe-specific switch of ``ffkit export`` (e.g. GFPGAN's ``--unfused-modulation``).

    When on, ``build_kwargs`` go to the architecture builder and ``dynamic_axes`` (input/output
    name -> axes) replace the default ones; ``variant`` names the artifact variant.
    """

    name: str
    help: str
    build_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dynamic_batch: bool | None = None
    variant: str = ""


@dataclass(frozen=True)
class Recipe:
    """Everything about one exportable model family member, registered once.

    Fields:
      name: the published model's name, as in the reference manifests.
      role: one of :data:`~ffkit.recipes.roles.ROLE_NAMES` (the runtime picks artifacts by role).
      inputs/outputs: ONNX names, shapes with named dynamic axes, semantics; order is the ONNX order.
      architecture: ``"module:function"`` building the ``torch.nn.Module`` (imported lazily); ``""`` for a
        recipe declared only to adopt published ONNX files (nothing to export).
      key_prefix: optional prefix some published files carry (``"module."``); accepted or not.
      wrappers: dict keys that may wrap the state_dict in the published file, in priority order.
      tolerance: FP32 parity (exported ONNX vs PyTorch, and vs the reference vectors).
      budgets: accuracy budgets of the reduced-precision variants, keyed ``fp16`` / ``int8``
        (a :class:`FaceBudget` for detectors).
      pixels: how uint8 pixels become the first input (None when it is not an image).
      output_pixels: how the first output becomes pixels (None when it is not an image).
      crop_size / template: the aligned crop the model takes, and the 5-point template name.
      sample_dims: dynamic-axis sizes used for the export trace and the parity check;
      alt_dims: a second set used to prove the dynamic axes survive.
      fill_overrides: the deterministic synthetic-weight rule's per-model overrides.
      fp16_keep_float32: op types known to break in float16 (kept in float32 by default).
      dynamic_batch: whether the default export has a dynamic batch axis.
      finalize: ``"module:function"`` that edits the exported ONNX proto before it is checked
        and saved (e.g. inswapper attaches its emap); called with the export's finalize kwargs.
      num_params: parameters of the published checkpoint (the manifest's ``num_params``); tells
        apart files ffkit did not make whose I/O signatures are alike (IResNet-18/50/100).
      io_aliases: other names published ONNX files give an input or output
        (``{"landms": ("landmarks",)}``), for recognising files ffkit did not make.
      checkpoint_format: how the published file is laid out: ``"state_dict"`` (tensors, maybe
        wrapped; read with ``weights_only=True``) or ``"pickled_module"`` (``torch.save(model)``
        of a whole module, read with its classes replaced by empty stubs; a plain state_dict of
        the same keys is accepted too).
      pickled_classes: for ``"pickled_module"``, the ``module.Class`` globals its pickle may name
        (each becomes an empty stub); a pickle naming any other global is refused.
      identity_space: for an embedder, the identity space it produces; for a swapper, the one it
        consumes (a swapper pairs only with an embedder of its space); None for other roles.
      source_crop: for an embedder, how a face is cropped for it: ``"own"`` (its ``template`` at
        ``crop_size``) or ``"swapper"`` (aligned with the paired swapper's template at the
        swapper's crop size, then resized to ``crop_size`` with nearest sampling, as SimSwap does).
      state_dict_adapter: ``"module:function"`` mapping a read state_dict whose keys are another
        publisher's spelling of the same network (e.g. yakhyo/face-parsing's BiSeNet) to this
        recipe's keys; called with the unwrapped, prefix-stripped dict, returns it unchanged when
        it is already in the recipe's layout (torch-free: it only renames and drops keys).
      torchscript_archives: whether a TorchScript archive (``torch.jit.save`` zip) of the same module
        tree is accepted too: its parameters and buffers are read without running its code
        (:mod:`ffkit.recipes.torchscript_archive`); otherwise such a file is refused.
      detector_decode: for a detector, how its outputs decode to faces (:class:`DetectorDecode`:
        the runtime's implementation and the constants it needs); None for other roles.
    """

    name: str
    family: str
    role: Role
    summary: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    architecture: str
    tolerance: Tolerance
    budgets: Mapping[str, AccuracyBudget] = field(default_factory=dict)
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    key_prefix: str = ""
    wrappers: tuple[str, ...] = ()
    pixels: PixelFormat | None = None
    output_pixels: PixelFormat | None = None
    crop_size: int | None = None
    template: str | None = None
    sample_dims: Mapping[str, int] = field(default_factory=lambda: {"N": 1})
    alt_dims: Mapping[str, int] = field(default_factory=lambda: {"N": 2})
    fill_overrides: tuple[tuple[str, str, float, float], ...] = ()
    export_options: tuple[ExportOption, ...] = ()
    fp16_keep_float32: tuple[str, ...] = ()
    dynamic_batch: bool = True
    finalize: str | None = None
    opset: int = 17
    num_params: int | None = None
    io_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    checkpoint_format: Literal["state_dict", "pickled_module"] = "state_dict"
    pickled_classes: tuple[str, ...] = ()
    identity_space: str | None = None
    source_crop: Literal["own", "swapper"] = "own"
    state_dict_adapter: str | None = None
    torchscript_archives: bool = False
    detector_decode: DetectorDecode | None = None

    def __post_init__(self) -> None:
        # A frozen Recipe holds no mutable mapping: budgets and arch kwargs are read-only views.
        object.__setattr__(self, "budgets", MappingProxyType(dict(self.budgets)))
        object.__setattr__(self, "arch_kwargs", MappingProxyType(dict(self.arch_kwargs)))
        object.__setattr__(self, "sample_dims", MappingProxyType(dict(self.sample_dims)))
        object.__setattr__(self, "alt_dims", MappingProxyType(dict(self.alt_dims)))
        object.__setattr__(self, "io_aliases", MappingProxyType(dict(self.io_aliases)))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self, dynamic_batch: bool = True) -> dict[str, dict[int, str]]:
        """ONNX ``dynamic_axes`` for ``torch.onnx.export``; without a dynamic batch, N is fixed."""
        axes = {}
        for t in (*self.inputs, *self.outputs):
            dyn = {i: d for i, d in t.dynamic_axes.items() if dynamic_batch or d != "N"}
            if dyn:
                axes[t.name] = dyn
        return axes

    def sample_inputs(self, seed: int = 0, **dims: int) -> dict[str, np.ndarray]:
        """Deterministic test inputs, drawn in input order from ``default_rng(seed)``.

        ``dims`` override ``sample_dims`` (e.g. ``N=3`` or ``H=480, W=640``).
        """
        rng = np.random.default_rng(seed)
        all_dims = {**self.sample_dims, **dims}
        return {t.name: t.draw(rng, all_dims) for t in self.inputs}

    def build_model(self, **options: Any):
        """Build the ``torch.nn.Module`` in eval mode (imports torch and the architecture).

        A recipe declared only to adopt published ONNX files (``architecture`` empty: SCRFD,
        YOLOFace) has none: a one-line FfkitError says so (``ffkit export`` / ``build`` refuse it)."""
        if not self.architecture:
            from .errors import FfkitError

            raise FfkitError(f"{self.name}: declared only to adopt published ONNX files (no PyTorch architecture "
                             "to export); give the .onnx file to detect, swap, simplify, quantize, verify or bench")
        module_name, func_name = self.architecture.split(":")
        builder = getattr(importlib.import_module(module_name), func_name)
        model = builder(**{**self.arch_kwargs, **options})
        return model.eval()

    def finalize_artifact(self, proto, **kwargs):
        """Apply the recipe's ``finalize`` hook to an exported ONNX proto (identity if none)."""
        if not self.finalize:
            return proto
        module_name, func_name = self.finalize.split(":")
        return getattr(importlib.import_module(module_name), func_name)(proto, **kwargs)

    def option(self, name: str) -> ExportOption:
        for opt in self.export_options:
            if opt.name == name:
                return opt
        raise KeyError(name)
