"""Verify a candidate artifact against a reference (an ONNX artifact, or a checkpoint + recipe).

Per output: relative L2 error, max abs error, cosine similarity (per sample, worst over the
batch) and, for image outputs, PSNR in dB over the output's nominal range; pass/fail against
the criterion of the candidate's kind:

- FP32-equivalent artifacts (export, simplify, optimize): the recipe's manifest tolerance
  (``numpy.allclose`` with its atol/rtol) on every element;
- FP16 and INT8 artifacts: the recipe's accuracy budget for that precision
  (``Recipe.budgets['fp16'|'int8']``: one metric and threshold, applied to every output).

Inputs: the recipe's sample inputs at its sample shape and at a second shape along every
dynamic axis (default), or a folder of images / ready tensors (see
:mod:`ffkit.validation.calibration`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from ffkit.validation import metrics

from . import artifact
from .errors import ArtifactError, FfkitError
from .inference import make_session, run


@dataclass
class OutputCheck:
    """One output's figures and verdict. ``value`` is the judged figure (tolerance excess for
    FP32: ``<= 0`` passes; the budget metric otherwise); ``criterion`` says what it was held to."""

    name: str
    figures: dict[str, float]
    criterion: str
    value: float
    passed: bool


@dataclass
class VerifyReport:
    """Everything ``ffkit verify`` prints and writes as JSON."""

    candidate: str
    reference: str
    recipe: str
    kind: str
    inputs: str
    samples: int
    outputs: list[OutputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every output meets its criterion."""
        return all(o.passed for o in self.outputs)

    def as_dict(self) -> dict:
        """JSON-friendly (infinities as the strings ``"inf"``/``"-inf"``)."""
        data = asdict(self)
        data["passed"] = self.passed
        return _finite(data)


def _finite(value):
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def output_peaks(recipe) -> dict[str, float | None]:
    """``{output: nominal range width}`` for image outputs (``255 / std`` of ``output_pixels``)."""
    peaks: dict[str, float | None] = {o.name: None for o in recipe.outputs}
    if recipe.output_pixels is not None:
        peaks[recipe.outputs[0].name] = 255.0 / max(recipe.output_pixels.std)
    return peaks


def kind_of(model: onnx.ModelProto) -> str:
    """``fp32`` | ``fp16`` | ``int8``: the criterion class of an artifact (from its graph)."""
    return artifact.precision(model)


def judge(recipe, kind: str, candidates: Sequence[Mapping[str, np.ndarray]],
          references: Sequence[Mapping[str, np.ndarray]]) -> list[OutputCheck]:
    """Compare runs output by output and hold each to the criterion of ``kind``."""
    for cand, ref in zip(candidates, references, strict=True):
        for name, r in ref.items():
            if name not in cand:
                raise FfkitError(f"candidate has no output {name!r}")
            if cand[name].shape != r.shape:
                raise FfkitError(f"output {name} has shape {cand[name].shape} but the reference has {r.shape}")
    figures = metrics.compare_batches(list(candidates), list(references), output_peaks(recipe))
    checks = []
    for name, figs in figures.items():
        if kind == "fp32":
            tol = recipe.tolerance
            excess = max(tol.excess(c[name], r[name]) for c, r in zip(candidates, references))
            checks.append(OutputCheck(name, figs, f"allclose atol {tol.atol:g} rtol {tol.rtol:g}", excess,
                                      bool(excess <= 0)))
            continue
        budget = recipe.budgets.get(kind)
        if budget is None:
            checks.append(OutputCheck(name, figs, f"no {kind} budget", float("nan"), True))
        elif budget.metric not in figs:
            checks.append(OutputCheck(name, figs, f"{budget.metric} n/a", float("nan"), True))
        else:
            op = ">=" if budget.higher_is_better else "<="
            value = figs[budget.metric]
            checks.append(OutputCheck(name, figs, f"{budget.metric} {op} {budget.threshold:g} ({kind} budget)",
                                      value, budget.passes(value)))
    return checks


def run_onnx(model: onnx.ModelProto | str | os.PathLike, samples: Sequence[Mapping[str, np.ndarray]]):
    """Outputs of an ONNX model (CPU provider) for each input dict."""
    session = make_session(model)
    return [run(session, feeds) for feeds in samples]


def run_checkpoint(recipe, checkpoint: str | os.PathLike, samples: Sequence[Mapping[str, np.ndarray]]):
    """Outputs of the recipe's PyTorch model loaded from ``checkpoint`` (needs torch)."""
    import torch

    from ffkit.recipes.checkpoint import load_checkpoint

    model = load_checkpoint(recipe, checkpoint)
    runs = []
    with torch.no_grad():
        for feeds in samples:
            out = model(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in recipe.input_names])
            out = out if isinstance(out, (tuple, list)) else (out,)
            runs.append({spec.name: o.numpy() for spec, o in zip(recipe.outputs, out)})
    return runs


def default_samples(model: onnx.ModelProto, recipe):
    """The recipe's sample inputs at :func:`~ffkit.toolkit.stage.shape_sets` of ``model``."""
    from ffkit.validation.calibration import sample_set

    from .stage import shape_sets

    return sample_set(recipe, shape_sets(model, recipe))


def verify(candidate: str | os.PathLike, reference: str | os.PathLike, *, inputs: str | os.PathLike | None = None,
           samples: int | None = 8, latents: str | os.PathLike | None = None, recipe_name: str | None = None
           ) -> VerifyReport:
    """Verify ``candidate`` (ONNX) against ``reference`` (ONNX, or a checkpoint of the recipe).

    The recipe is the one the candidate records (``recipe_name`` overrides it). ``inputs`` is a
    folder of images or ``.npy``/``.npz`` tensors (at most ``samples`` used); without it, the
    recipe's sample inputs at two shapes.
    """
    from ffkit.recipes import get_recipe
    from ffkit.validation.calibration import load_calibration

    cand_model = artifact.load_onnx(candidate)
    recipe = get_recipe(recipe_name) if recipe_name else artifact.recipe_of(cand_model, candidate)
    reference = Path(reference)
    ref_is_onnx = reference.suffix.lower() == ".onnx"
    if ref_is_onnx:
        ref_model = artifact.load_onnx(reference)
        ref_recipe = artifact.get(ref_model, "recipe")
        if ref_recipe and ref_recipe != recipe.name:
            raise ArtifactError(f"{reference}: is a {ref_recipe} artifact but {candidate} is {recipe.name}")
    elif not reference.is_file():
        raise ArtifactError(f"{reference}: no such reference file")
    if inputs is not None:
        data = load_calibration(recipe, inputs, samples=samples, latents=latents)
        described = f"{inputs} ({len(data)} samples, {len(data.skipped)} skipped)"
    else:
        data = default_samples(cand_model, recipe)
        described = "recipe sample inputs (seed 0) at " + "; ".join(
            "x".join(map(str, s[recipe.inputs[0].name].shape)) for s in data.samples)
    kind = kind_of(cand_model)
    got = run_onnx(cand_model, data.samples)
    del cand_model
    expected = run_onnx(ref_model, data.samples) if ref_is_onnx else run_checkpoint(recipe, reference, data.samples)
    report = VerifyReport(str(candidate), str(reference), recipe.name, kind, described, len(data))
    report.outputs = judge(recipe, kind, got, expected)
    return report
