"""The candidate files of one role: FP32 as given, FP32 simplified and optimized, FP16, INT8 and
INT8 with chosen nodes kept in float, each made by its stage (never re-implemented here) and
cached by content (:class:`~.cache.TuneCache`: input sha256, stage, its parameters, calibration
digest). Every file records its candidate label as its variant (``int8-float3``: INT8 with 3
nodes kept in float), so ``ffkit swap --variant int8`` still prefers a plain INT8 build."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ffkit.recipes import artifact, onnx_file

from .cache import TuneCache, content_key

__all__ = ["Candidate", "KINDS", "DEFAULT_KINDS", "INT8_METHODS", "build_candidate", "int8_stage", "int8_method"]

#: What ``--candidates`` may list, in the order they are built.
KINDS = ("fp32", "simplified", "optimized", "fp16", "int8", "fallback")
DEFAULT_KINDS = ("fp32", "optimized", "fp16", "int8", "fallback")


@dataclass
class Candidate:
    """One file a role may use. ``latency_ms``: batch -> median ms (bench harness);
    ``spend``: ``stage.metric.mode`` -> share of its budget used, alone (the rest of the set at
    FP32); ``passed`` / ``reason``: validate's verdict alone."""

    role: str
    label: str
    path: Path
    recipe: str
    record: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    spend: dict = field(default_factory=dict)
    passed: Optional[bool] = None
    reason: str = ""

    @property
    def excluded(self) -> list[str]:
        return list(self.record.get("excluded_nodes", []))

    def as_dict(self) -> dict:
        return {"role": self.role, "label": self.label, "file": str(self.path), "recipe": self.recipe,
                "latency_ms": self.latency_ms, "passed": self.passed, "reason": self.reason,
                "spend": {k: round(v, 4) for k, v in self.spend.items()},
                "excluded_nodes": self.excluded, "built_by": self.record.get("stage")}


#: The calibration methods tune builds an INT8 candidate with, and their labels. Measured on the
#: demo's inswapper (pipeline calibration, isolated swapped-crop PSNR on 3 faces): minmax 28.2 to
#: 29.1 dB, percentile 28.7 to 29.7 dB, entropy 24.2 to 24.3 dB (not built).
INT8_METHODS = {"int8": "minmax", "int8-percentile": "percentile"}


def int8_stage(calibration, cache: TuneCache, exclude: tuple[str, ...] = (), method: str = "minmax"):
    """The INT8 stage tune runs: the calibration set given once, statistics cached beside the
    candidates, ranges by ``method``, nodes kept in float truly float (weights too: the float
    fallback exists for accuracy, so a kept node keeps its float weights)."""
    from ..int8 import Int8Stage

    return Int8Stage(calibration=calibration, cache_dir=cache.root / "calib", progress=False, method=method,
                     int8_weights_in_float_nodes=False, exclude_nodes=tuple(exclude), eval_samples=2)


def int8_method(candidate: "Candidate") -> str:
    """The calibration method an INT8 candidate was built with (``minmax`` when not recorded)."""
    return (candidate.record.get("params") or {}).get("method", "minmax")


def _stage_for(kind: str):
    if kind == "simplified":
        from ..simplify import SimplifyStage

        return SimplifyStage()
    if kind == "optimized":
        from ..optimize import OptimizeStage

        return OptimizeStage()
    if kind == "fp16":
        from ..fp16 import Fp16Stage

        return Fp16Stage()
    raise ValueError(kind)


def build_candidate(cache: TuneCache, base: Candidate, label: str, stage, calibration=None) -> Candidate:
    """``base``'s file through ``stage`` (cached), its variant recorded as ``label``."""
    key = content_key(cache.sha(base.path), stage.name, stage.params(), calibration.digest if calibration else None,
                      label)

    def build(out: Path) -> dict:
        result = stage.run(base.path, out, recipe=base.recipe)
        model = onnx_file.load_onnx(out)
        artifact.set_metadata(model, variant=label)
        onnx_file.save_onnx(model, out)
        figures = result.figures or {}
        return {"stage": stage.name, "label": label, "params": stage.params(),
                "excluded_nodes": list(figures.get("excluded_nodes", [])),
                "budget_met": figures.get("budget_met"), "seconds": round(result.seconds, 2)}

    path, record = cache.candidate(base.recipe, key, build)
    return Candidate(base.role, label, path, base.recipe, record)


def plain_candidates(cache: TuneCache, base: Candidate, kinds, calibration, on_step=lambda m: None,
                     time_left=lambda: 1.0) -> tuple[list[Candidate], list[str]]:
    """``base`` (FP32 as given) and its simplified, optimized, FP16 and INT8 candidates among
    ``kinds`` (``int8``: one per :data:`INT8_METHODS`); ``(candidates, notes)`` (a stage that
    fails or is skipped for time is a note)."""
    from ffkit.recipes.errors import FfkitError

    out, notes = [base], []   # FP32 as given: always a candidate (the reference)
    labels = {"simplified": "fp32-simplified", "optimized": "fp32-optimized", "fp16": "fp16"}
    wanted = [(labels[k], k) for k in ("simplified", "optimized", "fp16") if k in kinds]
    wanted += [(label, "int8") for label in INT8_METHODS if "int8" in kinds]
    for label, kind in wanted:
        if time_left() <= 0:
            notes.append(f"{base.role}: {label} not built, the time limit was reached")
            continue
        on_step(f"{base.role}: {label}")
        try:
            stage = int8_stage(calibration, cache, method=INT8_METHODS[label]) if kind == "int8" else _stage_for(kind)
            out.append(build_candidate(cache, base, label, stage, calibration if kind == "int8" else None))
        except FfkitError as e:
            notes.append(f"{base.role}: no {label} candidate ({str(e).splitlines()[0]})")
    return out, notes
