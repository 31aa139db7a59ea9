"""The one parity routine (:mod:`ffkit.validation.parity`) against hand-computed verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from ffkit.recipes import get_recipe
from ffkit.recipes.errors import ParityError
from ffkit.recipes.spec import AccuracyBudget
from ffkit.validation.parity import fp32_parity, judge, shape_sets

RECIPE = get_recipe("arcface_iresnet18")   # tolerance atol/rtol from the manifest; output "embedding"


def _runs(values):
    return [{"embedding": np.asarray(values, np.float64).reshape(1, -1)}]


def test_fp32_tolerance_is_allclose():
    tol = RECIPE.tolerance
    ref = np.linspace(-2, 2, 512)
    inside = ref + 0.9 * (tol.atol + tol.rtol * np.abs(ref))
    outside = ref.copy()
    outside[7] += 1.1 * (tol.atol + tol.rtol * abs(ref[7]))
    assert judge(RECIPE, "fp32", _runs(inside), _runs(ref))[0].passed
    check = judge(RECIPE, "fp32", _runs(outside), _runs(ref))[0]
    assert not check.passed and check.value == pytest.approx(0.1 * (tol.atol + tol.rtol * abs(ref[7])), rel=1e-3)


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_never_passes(kind, bad):
    ref = np.ones(512)
    cand = ref.copy()
    cand[3] = bad
    for c, r in ((cand, ref), (cand, cand)):   # in the candidate, and in both (NaN weights on both sides)
        check = judge(RECIPE, kind, _runs(c), _runs(r))[0]
        assert not check.passed and "non-finite" in check.criterion


def test_budget_passed_in_wins_over_the_recipes():
    ref = np.random.default_rng(0).normal(size=512)
    cand = ref + np.random.default_rng(1).normal(size=512) * 0.05   # cosine ~0.9988
    cos = float(cand @ ref / np.linalg.norm(cand) / np.linalg.norm(ref))
    assert judge(RECIPE, "int8", _runs(cand), _runs(ref), budget=AccuracyBudget("cosine", cos - 1e-4))[0].passed
    assert not judge(RECIPE, "int8", _runs(cand), _runs(ref), budget=AccuracyBudget("cosine", cos + 1e-4))[0].passed


def test_shape_sets_move_only_dynamic_axes():
    detector = get_recipe("retinaface_mobilenet0.25")   # sample N1 320x320, alt N2 480x640
    assert shape_sets(detector, {"N", "H", "W"}) == [{"N": 1, "H": 320, "W": 320}, {"N": 2, "H": 480, "W": 640}]
    assert shape_sets(detector, {"H", "W"}) == [{"N": 1, "H": 320, "W": 320}, {"N": 1, "H": 480, "W": 640}]
    assert shape_sets(detector, set()) == [{"N": 1, "H": 320, "W": 320}]


def test_fp32_parity_names_the_file_and_a_frozen_axis():
    ref = {"embedding": np.zeros((2, 512), np.float32)}
    with pytest.raises(ParityError, match=r"^out\.onnx: not written, output embedding has shape \(1, 512\) "
                                          r"instead of \(2, 512\) \(PyTorch\) at \{'N': 2\} \(a dynamic axis was frozen\)"):
        fp32_parity(RECIPE, [({"N": 2}, {"embedding": np.zeros((1, 512), np.float32)}, ref)], "out.onnx", "PyTorch")
    far = {"embedding": np.full((2, 512), 0.5, np.float32)}
    with pytest.raises(ParityError, match=r"differs from its input beyond arcface_iresnet18's FP32 tolerance .* "
                                          r"max abs error 0\.5 at"):
        fp32_parity(RECIPE, [({"N": 2}, far, ref)], "out.onnx", "its input")
    [record] = fp32_parity(RECIPE, [({"N": 2}, ref, ref)], "out.onnx", "its input")
    assert record.passed and record.max_abs == {"embedding": 0.0}
