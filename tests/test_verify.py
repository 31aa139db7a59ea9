"""``ffkit verify``: its figures against a direct numpy computation, its verdicts, its CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ffkit.recipes import artifact, get_recipe
from ffkit.toolkit.cli import app
from ffkit.toolkit.verify import verify
from ffkit.validation import metrics

SIZE = 224  # simswap_224: inputs target (N,3,224,224) + source_latent (N,512); output (N,3,224,224) in [0,1]
A, B = 0.9, 0.05


def _model(path, scale=None, half=False, offset=B):
    """A simswap_224-shaped artifact: ``output = target * scale + offset`` (identity when scale is None)."""
    target = helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    latent = helper.make_tensor_value_info("source_latent", TensorProto.FLOAT, ["N", 512])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    if scale is None:
        nodes, inits = [helper.make_node("Identity", ["target"], ["output"])], []
    else:
        dtype = np.float16 if half else np.float32
        inits = [numpy_helper.from_array(np.array(scale, dtype), "a"),
                 numpy_helper.from_array(np.array(offset, np.float32), "b")]
        nodes = [helper.make_node("Cast", ["a"], ["a32"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["target", "a32"], ["scaled"]),
                 helper.make_node("Add", ["scaled", "b"], ["output"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [target, latent], [output], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    artifact.set_metadata(model, recipe="simswap_224", variant="fp16" if half else "fp32")
    onnx.save(model, str(path))
    return path


@pytest.fixture
def known(tmp_path):
    """Two known input samples (as ready tensors) and the expected output arrays."""
    rng = np.random.default_rng(5)
    targets = rng.uniform(0, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    targets[1] *= 0.5
    latents = rng.normal(size=(2, 512)).astype(np.float32)
    folder = tmp_path / "inputs"
    folder.mkdir()
    np.savez(folder / "cases.npz", target=targets, source_latent=latents)
    return folder, targets


def _numpy_figures(targets, scale, offset=B):
    """Each figure computed directly with numpy, per sample, then the worst over the samples."""
    rel, mx, cos, psnr = [], [], [], []
    for t in targets.astype(np.float64):
        cand = (t.astype(np.float32) * np.float32(scale) + np.float32(offset)).astype(np.float64)
        d = cand - t
        rel.append(np.sqrt((d ** 2).sum()) / np.sqrt((t ** 2).sum()))
        mx.append(np.abs(d).max())
        cos.append((cand * t).sum() / np.sqrt((cand ** 2).sum() * (t ** 2).sum()))
        psnr.append(10 * np.log10(1.0 / (d ** 2).mean()))
    return {"rel_l2": max(rel), "max_abs": max(mx), "cosine": min(cos), "psnr": min(psnr)}


def test_verify_figures_match_numpy(tmp_path, known):
    folder, targets = known
    cand = _model(tmp_path / "cand.onnx", A)
    ref = _model(tmp_path / "ref.onnx")
    report = verify(cand, ref, inputs=folder)
    assert report.samples == 2 and report.kind == "fp32" and report.recipe == "simswap_224"
    (out,) = report.outputs
    expected = _numpy_figures(targets, A)
    for key, value in expected.items():
        assert out.figures[key] == pytest.approx(value, rel=1e-9), key
    # FP32 kind: held to the manifest tolerance, which a 0.9x+0.05 model misses
    tol = get_recipe("simswap_224").tolerance
    excess = max(float(np.max(np.abs(t * np.float32(A) + np.float32(B) - t) - (tol.atol + tol.rtol * np.abs(t))))
                 for t in targets)
    assert not out.passed and out.value == pytest.approx(excess, rel=1e-6)
    assert "allclose" in out.criterion and not report.passed


def test_fp16_kind_is_held_to_the_budget(tmp_path, known):
    folder, targets = known
    budget = get_recipe("simswap_224").budgets["fp16"]
    ref = _model(tmp_path / "ref.onnx")
    verdicts = []
    for scale in (1.0, 0.9):
        cand = _model(tmp_path / f"cand{scale}.onnx", scale, half=True, offset=1e-3)
        report = verify(cand, ref, inputs=folder)
        (out,) = report.outputs
        assert report.kind == "fp16" and budget.metric == "psnr"
        # float16 rounding of the scale is part of the model: compare with numpy on the rounded value
        expected = _numpy_figures(targets, float(np.float16(scale)), 1e-3)
        assert out.value == pytest.approx(expected["psnr"], rel=1e-9)
        assert out.passed == (expected["psnr"] >= budget.threshold)
        verdicts.append(out.passed)
    assert verdicts == [True, False]            # 60 dB passes the 50 dB budget, ~21 dB does not


def test_metric_contracts():
    a = np.array([[3.0, 4.0], [0.0, 0.0]])
    b = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert metrics.cosine(a, b) == 1.0 and metrics.rel_l2(a, b) == 0.0 and metrics.psnr(a, b) == math.inf
    assert metrics.cosine(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == 0.0
    assert metrics.cosine(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])) == 0.0
    assert metrics.rel_l2(np.ones(3), np.zeros(3)) == math.inf
    assert metrics.psnr(np.zeros(4), np.full(4, 0.1), peak=2.0) == pytest.approx(10 * math.log10(4 / 0.01))
    assert metrics.sqnr(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.max_abs(np.zeros(2), np.zeros(3))


def test_sqnr_is_onnxruntime_formula():
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio as ort_sqnr

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = x + rng.normal(scale=0.01, size=x.shape).astype(np.float32)
    assert metrics.sqnr(y, x) == pytest.approx(ort_sqnr(x, y), rel=1e-6)


def test_cli_verify_json_and_exit_codes(tmp_path, known):
    folder, _ = known
    ref = _model(tmp_path / "ref.onnx")
    bad = _model(tmp_path / "bad.onnx", A)
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(bad), "--reference", str(ref), "--inputs", str(folder),
                                 "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 3, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False and data["outputs"][0]["name"] == "output"
    good = runner.invoke(app, ["verify", str(ref), "--reference", str(ref), "--inputs", str(folder)])
    assert good.exit_code == 0, good.output
    missing = runner.invoke(app, ["verify", str(tmp_path / "nope.onnx"), "--reference", str(ref)])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_verify_against_a_checkpoint(artifacts):
    name = "retinaface_mobilenet0.25"
    report = verify(artifacts.export(name).path, artifacts.checkpoint(name))
    assert report.passed and report.kind == "fp32" and report.samples == 2
    assert all(o.figures["max_abs"] < 1e-4 for o in report.outputs)
