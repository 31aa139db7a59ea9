"""The one parity routine: hold a candidate's outputs to a reference's, output by output.

Everything that decides whether an artifact is good enough goes through :func:`judge`:
``ffkit export`` (ONNX Runtime against PyTorch), every conversion stage (the new artifact
against its input), ``ffkit verify`` and ``ffkit build`` (a variant against the FP32 export).
The criterion depends on the candidate's kind:

- ``fp32`` (export, simplify, optimize): the recipe's manifest tolerance (``numpy.allclose``
  with its atol/rtol) on every element;
- ``fp16`` / ``int8``: an accuracy budget (one metric and threshold, applied to every output),
  the recipe's for that precision unless one is passed in. A detector's
  :class:`~ffkit.recipes.spec.FaceBudget` is judged on the decoded faces instead
  (:mod:`.face_metrics`: same faces, worst box IoU, worst landmark error) whenever the ``inputs``
  are given and any of them shows a face on either side; the raw-tensor figures stay in the
  figures, and the raw criterion holds when there is no face to judge. A landmarker's heatmaps
  also get the figures of the points they decode to (:mod:`.landmark_metrics`: ``landmark_nme``...),
  which its budget may name.

A candidate or reference with a NaN or infinity never passes. The test shapes come from
:func:`shape_sets`: the recipe's sample dims and a second set moving every dynamic axis the
model has, so a frozen axis fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from ffkit.recipes.errors import ParityError
from ffkit.recipes.spec import AccuracyBudget, FaceBudget, Recipe

from . import face_metrics, landmark_metrics, metrics

__all__ = ["OutputCheck", "ShapeParity", "output_peaks", "shape_sets", "judge", "fp32_parity"]


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
class ShapeParity:
    """FP32 parity at one set of input dims: per-output max abs error and the verdict."""

    dims: dict
    max_abs: dict[str, float]
    excess: float  # max over outputs of |a-b| - (atol + rtol|b|); <= 0 passes; nan: non-finite
    passed: bool

    def as_dict(self) -> dict:
        return {"dims": self.dims, "max_abs": self.max_abs, "passed": self.passed}


def output_peaks(recipe: Recipe) -> dict[str, float | None]:
    """``{output: nominal range width}`` for image outputs (``255 / std`` of ``output_pixels``)."""
    peaks: dict[str, float | None] = {o.name: None for o in recipe.outputs}
    if recipe.output_pixels is not None:
        peaks[recipe.outputs[0].name] = 255.0 / max(recipe.output_pixels.std)
    return peaks


def shape_sets(recipe: Recipe, dynamic: Iterable[str]) -> list[dict[str, int]]:
    """The recipe's sample dims, plus a second set moving every axis named in ``dynamic``
    (``dim_param`` names such as ``N``, ``H``, ``W``) that ``alt_dims`` gives a size for."""
    named = set(dynamic)
    first = dict(recipe.sample_dims)
    second = {**first, **{k: v for k, v in recipe.alt_dims.items() if k in named}}
    return [first] if second == first else [first, second]


def _non_finite(runs: Sequence[Mapping[str, np.ndarray]], name: str) -> bool:
    return any(not np.all(np.isfinite(np.asarray(run[name], dtype=np.float64))) for run in runs)


def judge(recipe: Recipe, kind: str, candidates: Sequence[Mapping[str, np.ndarray]],
          references: Sequence[Mapping[str, np.ndarray]], budget: AccuracyBudget | None = None,
          what: str = "the reference", inputs: Sequence[Mapping[str, np.ndarray]] | None = None
          ) -> list[OutputCheck]:
    """Compare runs (one ``{output: array}`` per input, candidate and reference alike) output by
    output and hold each to the criterion of ``kind`` (``fp32`` | ``fp16`` | ``int8``).

    Args:
        budget: the budget an ``fp16``/``int8`` candidate is held to (default: the recipe's).
        what: how messages name the reference ("PyTorch", "its input").
        inputs: the feeds of each run (same order); a :class:`FaceBudget` needs them (the network
            input's ``H x W`` decodes the faces), without them its raw criterion holds.

    Raises:
        ParityError: a candidate lacks an output, or has another shape than the reference's.
    """
    for cand, ref in zip(candidates, references, strict=True):
        for name, r in ref.items():
            if name not in cand:
                raise ParityError(f"candidate has no output {name!r}")
            if np.shape(cand[name]) != np.shape(r):
                raise ParityError(f"output {name} has shape {np.shape(cand[name])} but {what} gives {np.shape(r)}")
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite runs are judged below, not warned about
        figures = metrics.compare_batches(list(candidates), list(references), output_peaks(recipe))
        if recipe.role == "landmarker" and kind != "fp32":   # also where the user looks: the decoded points
            landmark_metrics.add_landmark_figures(recipe, figures, candidates, references)
    budget = budget if budget is not None or kind == "fp32" else recipe.budgets.get(kind)
    per_output, raw_note = {}, ""
    if isinstance(budget, FaceBudget) and kind != "fp32":
        if inputs is None:
            raw_note = "; faces not judged: no input sizes given"
        else:
            faces = face_metrics.compare_faces(recipe, candidates, references, inputs, budget)
            if faces.judged:
                per_output = face_metrics.face_checks(recipe, figures, faces, budget, kind)
            else:
                raw_note = "; " + face_metrics.raw_reason(faces, budget)
    checks = []
    for name, figs in figures.items():
        bad = [side for side, runs in (("candidate", candidates), (what, references)) if _non_finite(runs, name)]
        if bad:
            checks.append(OutputCheck(name, figs, f"non-finite values (NaN/Inf) in {' and '.join(bad)}",
                                      float("nan"), False))
        elif kind == "fp32":
            tol = recipe.tolerance
            excess = max(tol.excess(c[name], r[name]) for c, r in zip(candidates, references))
            checks.append(OutputCheck(name, figs, f"allclose atol {tol.atol:g} rtol {tol.rtol:g}", excess,
                                      bool(excess <= 0)))
        elif budget is None:
            checks.append(OutputCheck(name, figs, f"no {kind} budget", float("nan"), True))
        elif name in per_output:
            checks.append(OutputCheck(name, *per_output[name]))
        elif budget.metric not in figs:
            checks.append(OutputCheck(name, figs, f"{budget.metric} n/a", float("nan"), True))
        else:
            op = ">=" if budget.higher_is_better else "<="
            value = figs[budget.metric]
            checks.append(OutputCheck(name, figs, f"{budget.metric} {op} {budget.threshold:g} ({kind} budget"
                                      f"{raw_note})", value, budget.passes(value)))
    return checks


def fp32_parity(recipe: Recipe, runs: Sequence[tuple[Mapping[str, int], Mapping[str, np.ndarray],
                                                     Mapping[str, np.ndarray]]],
                out_path: str | os.PathLike, what: str) -> list[ShapeParity]:
    """FP32 parity of a new artifact at each of its test shapes, or a one-line ParityError.

    Args:
        runs: ``(dims, candidate outputs, reference outputs)`` per test shape (:func:`shape_sets`).
        out_path: the artifact being written (named in the message: "not written, ...").
        what: the reference, as the message names it ("PyTorch", "its input").

    Returns:
        One :class:`ShapeParity` per shape, all passed.
    """
    records = []
    for dims, got, ref in runs:
        for name, r in ref.items():
            if name in got and np.shape(got[name]) != np.shape(r):
                raise ParityError(f"{out_path}: not written, output {name} has shape {np.shape(got[name])} instead "
                                  f"of {np.shape(r)} ({what}) at {dict(dims)} (a dynamic axis was frozen)")
        checks = judge(recipe, "fp32", [got], [ref], what=what)
        max_abs = {c.name: c.figures["max_abs"] for c in checks}
        excess = max(c.value for c in checks) if all(np.isfinite(c.value) for c in checks) else float("nan")
        record = ShapeParity(dict(dims), max_abs, excess, all(c.passed for c in checks))
        records.append(record)
        if not record.passed:
            worst = next(c for c in checks if not c.passed)
            tol = recipe.tolerance
            if not np.isfinite(worst.value):
                raise ParityError(f"{out_path}: not written, {worst.name} has {worst.criterion} at {dict(dims)}")
            raise ParityError(f"{out_path}: not written, differs from {what} beyond {recipe.name}'s FP32 tolerance "
                              f"(atol {tol.atol:g}, rtol {tol.rtol:g}): {worst.name} max abs error "
                              f"{worst.figures['max_abs']:.3g} at {dict(dims)}")
    return records
