"""Verify a candidate artifact against a reference (an ONNX artifact, or a checkpoint + recipe).

Per output: relative L2 error, max abs error, cosine similarity (per sample, worst over the
batch) and, for image outputs, PSNR in dB over the output's nominal range; pass/fail against
the criterion of the candidate's kind, decided by the one parity routine
(:func:`ffkit.validation.parity.judge`):

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

from ffkit.recipes import artifact, onnx_file
from ffkit.recipes.errors import ArtifactError
from ffkit.runtime.sessions import create_session, run_session
from ffkit.validation.face_metrics import photo_inputs
from ffkit.validation.parity import OutputCheck, judge


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


def run_onnx(model: onnx.ModelProto | str | os.PathLike, samples: Sequence[Mapping[str, np.ndarray]],
             name: str | os.PathLike | None = None):
    """Outputs of an ONNX model (CPU provider) for each input dict; ``name``: the file a proto was
    read from, named by any error."""
    session = create_session(model, name=str(name) if name is not None else None)
    return [run_session(session, feeds) for feeds in samples]


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
    """The recipe's sample inputs at :func:`~ffkit.toolkit.stage.model_shape_sets` of ``model``."""
    from ffkit.validation.calibration import sample_set

    from .stage import model_shape_sets

    return sample_set(recipe, model_shape_sets(model, recipe))


def verify(candidate: str | os.PathLike, reference: str | os.PathLike, *, inputs: str | os.PathLike | None = None,
           samples: int | None = 8, latents: str | os.PathLike | None = None, recipe_name: str | None = None
           ) -> VerifyReport:
    """Verify ``candidate`` (ONNX) against ``reference`` (ONNX, or a checkpoint of the recipe).

    The recipe is the one the candidate records (``recipe_name`` overrides it). ``inputs`` is a
    folder of images or ``.npy``/``.npz`` tensors (at most ``samples`` used); without it, the
    recipe's sample inputs at two shapes.
    """
    from ffkit.validation.calibration import load_calibration

    cand_model = onnx_file.load_onnx(candidate)
    recipe = artifact.recipe_of(cand_model, candidate, recipe_name)
    reference = Path(reference)
    ref_is_onnx = reference.suffix.lower() == ".onnx"
    if ref_is_onnx:
        ref_model = onnx_file.load_onnx(reference)
        ref_recipe = artifact.get(ref_model, "recipe")
        if ref_recipe and ref_recipe != recipe.name:
            raise ArtifactError(f"{reference}: is a {ref_recipe} artifact but {candidate} is {recipe.name}")
        if ref_recipe:   # what it records must be what it is
            artifact.recipe_of(ref_model, reference)
    elif not reference.is_file():
        raise ArtifactError(f"{reference}: no such reference file")
    if inputs is not None:
        data = load_calibration(recipe, inputs, samples=samples, latents=latents)
        described = f"{inputs} ({len(data)} samples, {len(data.skipped)} skipped)"
    else:
        data = default_samples(cand_model, recipe)
        described = "recipe sample inputs (seed 0) at " + "; ".join(
            "x".join(map(str, s[recipe.inputs[0].name].shape)) for s in data.samples)
    kind = artifact.precision(cand_model)
    if inputs is None and kind != "fp32" and photo_inputs(recipe):   # a detector's budget is judged on faces
        data.samples += photo_inputs(recipe)
        described += " + the bundled photo"
    got = run_onnx(cand_model, data.samples, name=candidate)
    del cand_model
    expected = run_onnx(ref_model, data.samples, name=reference) if ref_is_onnx else run_checkpoint(recipe, reference, data.samples)
    report = VerifyReport(str(candidate), str(reference), recipe.name, kind, described, len(data))
    report.outputs = judge(recipe, kind, got, expected, inputs=data.samples)
    return report
