"""The options of a swap, declared once: ``ffkit swap``'s flags, serve's form fields, the job
record and the Ray setup are all derived from :data:`SWAP_OPTIONS`.

Each :class:`OptionSpec` gives the field name (``max_faces``), the CLI flag (``--max-faces``),
the type, the default, the allowed range or choices, the help, the media it applies to (images,
videos or both) and whether it is a *request* option (chosen per swap: a serve form field) or a
*run* option (how the process runs: providers, precision, threads; a server takes those once at
start). The role an option may ask for is the roles table's
(:data:`ffkit.recipes.roles.ROLE_TABLE`).

:func:`check_values` checks a mapping of values (one :class:`~ffkit.recipes.errors.FfkitError`
line per bad value, the same text wherever the value came from: ``--score-threshold /
score_threshold: 7 is out of range, must be from 0 to 1``) and :func:`swap_settings` turns them
into the runtime's objects (:class:`SwapSettings`). Adding an option is one entry here plus its
use in the pipeline. Torch-free; imports neither typer nor FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

from ffkit.recipes import REGISTRY
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.roles import ROLE_TABLE, RoleSpec

from .detector import DetectParams
from .face_masks import DEFAULT_REGIONS, REGIONS, region_names
from .face_tracker import TrackOptions
from .frame_enhancer import FrameEnhanceOptions
from .frame_pipeline import SwapOptions
from .models import ModelSelection, pick_models
from .provider_options import ProviderOptions, parse_provider_options
from .sessions import SessionPool, default_spinning, resolve_providers

__all__ = ["OptionSpec", "SWAP_OPTIONS", "OPTION_BY_NAME", "SwapSettings", "check_values", "swap_settings",
           "options_for", "defaults"]

IMAGE, VIDEO = "image", "video"
BOTH = frozenset({IMAGE, VIDEO})


@dataclass(frozen=True)
class OptionSpec:
    """One swap option.

    Attributes:
        name: the field name (serve's form field, the key of a values mapping).
        kind: ``int``, ``float``, ``bool`` or ``str`` (a comma list is ``str`` with ``is_list``).
        default: the value when not given (None: unset, for an ``optional`` option).
        help: one sentence for ``--help`` and the OpenAPI description.
        media: the inputs it applies to (``image``, ``video``).
        scope: ``request`` (chosen per swap) or ``run`` (how the process runs).
        low, high: the allowed range (None: open), ``low_open``/``high_open`` when exclusive.
        choices: the allowed values (for a list, the allowed items), or None.
        is_list: a comma list given as one text (``box,region``), checked item by item.
        repeat: given several times (``--provider-option A --provider-option B``).
        optional: None is allowed (and is the default).
        flag_decl: the CLI declaration when not ``--<name with dashes>`` (``--spin/--no-spin``).
    """

    name: str
    kind: type
    default: Any
    help: str
    media: frozenset = BOTH
    scope: str = "request"
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Optional[tuple] = None
    is_list: bool = False
    repeat: bool = False
    optional: bool = False
    flag_decl: Optional[str] = None

    @property
    def flag(self) -> str:
        """The CLI flag, ``--max-faces``."""
        return "--" + self.name.replace("_", "-")

    @property
    def decls(self) -> tuple[str, ...]:
        """What the CLI declares (``("--spin/--no-spin",)``, ``("--max-faces",)``)."""
        return (self.flag_decl or self.flag,)

    @property
    def role(self) -> Optional[RoleSpec]:
        """The optional role this option may ask for (the roles table's), or None."""
        return next((spec for spec in ROLE_TABLE.values() if spec.option == self.name), None)

    @property
    def text_default(self) -> Any:
        """The default as the CLI and a form field spell it (a list joined with commas)."""
        return ",".join(self.default) if self.is_list else self.default

    def schema(self) -> dict:
        """The JSON-schema keywords of its range and choices (``minimum``, ``exclusiveMaximum``, ``enum``)."""
        out: dict = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        if self.choices is not None and not self.is_list:
            out["enum"] = list(self.choices)
        return out

    def check(self, value: Any) -> Any:
        """``value`` checked and normalised (a list as a tuple), or a one-line FfkitError."""
        if value is None:
            if self.optional:
                return None
            value = self.default
        if self.repeat:
            return tuple(value)
        if self.is_list:
            return self._check_list(value)
        if self.kind in (int, float) and not isinstance(value, bool):
            self._check_range(value)
        if self.choices is not None and value not in self.choices:
            self._fail(value, f"is not one of {_spell(self.choices)}")
        return value

    def _check_range(self, value) -> None:
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            self._fail(value, f"is out of range, must be {self.range_text()}")

    def range_text(self) -> str:
        """``from 0 to 1``, ``at least 1``, ``at least 0 and less than 1``."""
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            return f"from {self.low:g} to {self.high:g}"
        parts = []
        if self.low is not None:
            parts.append(f"{'more than' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'less than' if self.high_open else 'at most'} {self.high:g}")
        return " and ".join(parts)

    def _check_list(self, value) -> tuple:
        items = tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else tuple(value)
        if self.name == "mask_regions":
            try:
                return region_names(items)
            except FfkitError as e:
                self._fail(value if isinstance(value, str) else ",".join(items), f"is refused: {e}")
        if not items or any(i not in self.choices for i in items):
            self._fail(",".join(items) if isinstance(value, (tuple, list)) else value,
                       f"must be {' and/or '.join(self.choices)} (e.g. {','.join(self.choices)})")
        return items

    def _fail(self, value, rule: str):
        shown = f"{value!r}" if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else value
        raise FfkitError(f"{self.flag} / {self.name}: {shown} {rule}")


def _spell(choices) -> str:
    texts = [repr(c) if isinstance(c, str) else str(c) for c in choices]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


#: Every frame enhancer recipe, and ``auto`` (the best one there).
FRAME_ENHANCERS = ROLE_TABLE["frame_enhancer"].recipes(REGISTRY) + ("auto",)
_REQ, _VIDEO = "request", frozenset({VIDEO})

#: The one declaration of the swap options, in ``--help`` order.
SWAP_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("swapper", str, None, "Swapper recipe (inswapper_128, simswap_224, simswap_512), file in --models, "
               "or path to an inswapper_128-style ONNX.", scope="run", optional=True),
    OptionSpec("enhance", bool, False, "Restore swapped faces with the GFPGAN artifact."),
    OptionSpec("enhance_blend", float, 0.8, "Share of the restored face (0..1).", low=0.0, high=1.0),
    OptionSpec("similarity", float, 0.4, "With a reference: minimum ArcFace cosine similarity (-1..1).",
               low=-1.0, high=1.0),
    OptionSpec("select", str, "all", "Without a reference: all faces or the largest.", choices=("all", "largest")),
    OptionSpec("max_faces", int, 0, "At most this many faces per frame, best score first (0 = all).", low=0),
    OptionSpec("min_face_size", float, 0.0, "Ignore faces smaller than this (pixels).", low=0.0),
    OptionSpec("score_threshold", float, 0.5, "Detector score threshold (0..1).", low=0.0, high=1.0),
    OptionSpec("nms_threshold", float, 0.4, "Detector NMS IoU threshold (0..1).", low=0.0, high=1.0),
    OptionSpec("max_side", int, 640, "Detect on frames shrunk to this longer side (0 = as is).", low=0),
    OptionSpec("providers", str, "auto", "auto (CUDA, CoreML, DirectML if present, then CPU) or a comma list of "
               "tensorrt,cuda,coreml,directml,cpu.", scope="run"),
    OptionSpec("variant", str, None, "Prefer this precision (default fp32).", scope="run",
               choices=("fp32", "fp16", "int8"), optional=True),
    OptionSpec("workers", int, 0, "Video: frames processed at once (0 = auto).", media=_VIDEO, scope="run", low=0),
    OptionSpec("mask", str, ("box",), "Paste masks, combined by their minimum: box (feathered box, insightface's), "
               "region (the face parser's regions), box,region.", choices=("box", "region"), is_list=True),
    OptionSpec("mask_regions", str, DEFAULT_REGIONS, "With mask region: face regions to swap, comma-separated "
               "(FaceFusion's names).", choices=tuple(REGIONS), is_list=True),
    OptionSpec("color_match", bool, False, "Match the swapped face's colour (LAB mean/std) to the target's "
               "before pasting."),
    OptionSpec("landmarks", int, 5, "Align from the detector's 5 points, or 68 (fan_2dfan4 in the models, turned "
               "into 5 as FaceFusion does).", choices=(5, 68)),
    OptionSpec("frame_enhance", str, None, "Upscale every output frame with this frame enhancer ("
               f"{' | '.join(FRAME_ENHANCERS)}; auto: the best one there).", choices=FRAME_ENHANCERS, optional=True),
    OptionSpec("tile", int, -1, "With frame_enhance: tile side in pixels (0 = whole frame; -1, the default: whole "
               "frame up to 1 MP, else 512).", low=-1),
    OptionSpec("frame_enhance_size", str, "native", "With frame_enhance: native (upscaled) or input (resized back).",
               choices=("native", "input")),
    OptionSpec("provider_option", str, (), "PROVIDER:KEY=VALUE for onnxruntime, repeatable (e.g. cuda:device_id=1, "
               "tensorrt:trt_fp16_enable=0).", scope="run", repeat=True),
    OptionSpec("spin", bool, None, "onnxruntime thread spin-waiting (default: off with several workers or on a busy "
               "machine, else onnxruntime's own).", scope="run", optional=True, flag_decl="--spin/--no-spin"),
    OptionSpec("detect_every", int, 1, "Video: detect on every k-th frame, follow the faces in between (detector "
               "on a crop around each).", media=_VIDEO, low=1),
    OptionSpec("smooth", float, 0.0, "Video: landmark filter weight 0 <= s < 1 (exponential; 0 = off, 0.5 = lags "
               "one frame's motion).", media=_VIDEO, low=0.0, high=1.0, high_open=True),
)

OPTION_BY_NAME: Mapping[str, OptionSpec] = MappingProxyType({o.name: o for o in SWAP_OPTIONS})


def options_for(scope: Optional[str] = None, media: Optional[str] = None) -> tuple[OptionSpec, ...]:
    """The declared options of ``scope`` (``request``/``run``, None: both) applying to ``media``
    (``image``/``video``, None: any), in declaration order."""
    return tuple(o for o in SWAP_OPTIONS if (scope is None or o.scope == scope) and (media is None or media in o.media))


def defaults(scope: Optional[str] = None, media: Optional[str] = None) -> dict[str, Any]:
    """``{name: default}`` of :func:`options_for` ``(scope, media)``."""
    return {o.name: o.default for o in options_for(scope, media)}


def check_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option's value: ``values``'s, checked and normalised, else its default.

    Raises:
        FfkitError: a value out of its range or not among its choices (one line:
            ``--flag / name: value rule``), or a name that is no declared option.
    """
    unknown = sorted(set(values) - set(OPTION_BY_NAME))
    if unknown:
        raise FfkitError(f"{', '.join(unknown)}: not a swap option ({', '.join(OPTION_BY_NAME)})")
    return {o.name: o.check(values.get(o.name)) for o in SWAP_OPTIONS}


@dataclass(frozen=True)
class SwapSettings:
    """The checked option values and the runtime objects made of them (picklable: Ray sends it).

    Attributes:
        values: every declared option's value (:func:`check_values`).
        options: the :class:`SwapOptions` of the pipeline (``select`` is ``reference`` with a
            reference face).
        tracking: the video's :class:`TrackOptions` (``detect_every``, ``smooth``).
        provider_options: the parsed ``provider_option`` texts.
    """

    values: dict
    options: SwapOptions
    tracking: TrackOptions
    provider_options: ProviderOptions = field(default=())

    @property
    def roles(self) -> frozenset[str]:
        """The optional roles these values ask for (the roles table's :meth:`RoleSpec.asks`)."""
        return frozenset(name for name, spec in ROLE_TABLE.items() if not spec.required and spec.asks(self.values))

    def pick(self, folder) -> ModelSelection:
        """The artifacts of ``folder`` these values need (:func:`~.models.pick_models` with the
        ``swapper``, ``variant`` and every role the values ask for)."""
        v = self.values
        return pick_models(folder, swapper=v["swapper"], variant=v["variant"], frame_enhance=v["frame_enhance"],
                           roles=self.roles - {"frame_enhancer"})

    def session_pool(self, workers: int, intra_op_threads: int = 0,
                     warn: Callable[[str], None] = lambda message: None) -> SessionPool:
        """The :class:`SessionPool` of ``providers``, ``provider_option`` and ``spin`` (unset:
        :func:`default_spinning` for ``workers`` frames at once)."""
        spin = self.values["spin"]
        return SessionPool(resolve_providers(self.values["providers"]), intra_op_threads=intra_op_threads, warn=warn,
                           provider_options=self.provider_options,
                           spinning=spin if spin is not None else default_spinning(workers))

    def frame_workers(self, video: bool, cpus: int) -> int:
        """Frames processed at once: ``workers``, or auto (a video: up to 4 of ``cpus``; an image: 1)."""
        return self.values["workers"] if self.values["workers"] > 0 else (min(4, cpus) if video else 1)


def swap_settings(values: Mapping[str, Any], reference: bool = False) -> SwapSettings:
    """The :class:`SwapSettings` of ``values`` (name -> value; missing names take their default),
    with ``select`` = ``reference`` when ``reference`` (a reference face is given).

    Raises:
        FfkitError: a bad value (:func:`check_values`'s one line), or a bad ``provider_option``.
    """
    v = check_values(values)
    options = SwapOptions(
        detect=DetectParams(max_side=v["max_side"], score_threshold=v["score_threshold"],
                            nms_threshold=v["nms_threshold"]),
        select="reference" if reference else v["select"], max_faces=v["max_faces"],
        min_face_size=v["min_face_size"], similarity=v["similarity"], enhance_blend=v["enhance_blend"],
        mask=v["mask"], mask_regions=v["mask_regions"], color_match=v["color_match"], landmarks=v["landmarks"],
        frame_enhance=FrameEnhanceOptions(tile=v["tile"], size=v["frame_enhance_size"]))
    tracking = TrackOptions(detect_every=v["detect_every"], smooth=v["smooth"])
    return SwapSettings(v, options, tracking, parse_provider_options(v["provider_option"]))
