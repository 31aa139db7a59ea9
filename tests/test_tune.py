"""``ffkit tune`` on small models: a fragile swapper (one conv whose INT8 error dominates) keeps
that conv in float and quantizes the rest; the greedy search chooses what the exhaustive one
does; ``ffkit swap --models DIR`` then picks the tuned set by itself and says so; a second run
changing only the budget rebuilds no candidate. Plus the search on plain numbers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil

import numpy as np
import onnx
import pytest
from cli_helpers import ffkit
from onnx import TensorProto, helper, numpy_helper
from runtime_helpers import ASTRONAUT, FAST_ARGS, foreign_emap, link
from stage_helpers import write_images

from ffkit.recipes import onnx_file
from ffkit.runtime.models import TUNED_SET, pick_models
from ffkit.runtime.swap_options import swap_settings
from ffkit.toolkit.tune.run import TuneRequest, run_tune
from ffkit.toolkit.tune.search import Option, estimate, exhaustive, frame_seconds, greedy

FRAGILE = "conv_fragile"


def make_fragile_swapper(path):
    """An inswapper-signature graph (no ffkit metadata, emap last) whose ``conv_fragile`` has, in
    every output channel, one weight of 1000 on an input channel that is always 0 next to weights
    near 1: per-channel INT8 (step 1000/127) rounds the useful weights to 0, so this one conv
    ruins the output while ``conv_in`` and ``matmul_src`` quantize harmlessly."""
    rng = np.random.default_rng(0)
    w_in = np.zeros((4, 3, 1, 1), np.float32)
    w_in[0, :, 0, 0] = -1.0                       # channel 0: relu(-x - 10) = 0 always
    w_in[1:, :, 0, 0] = np.eye(3) + rng.normal(size=(3, 3)) * 0.05
    b_in = np.array([-10, 0, 0, 0], np.float32)
    w_f = np.zeros((3, 4, 1, 1), np.float32)
    w_f[:, 0, 0, 0] = 1000.0
    w_f[:, 1:, 0, 0] = np.eye(3) * 2.0 + rng.normal(size=(3, 3)) * 0.1
    inits = [numpy_helper.from_array((rng.normal(size=(512, 3)) * 0.5).astype(np.float32), "w_src"),
             numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "bias_shape"),
             numpy_helper.from_array(w_in, "w_in"), numpy_helper.from_array(b_in, "b_in"),
             numpy_helper.from_array(w_f, "w_f"), numpy_helper.from_array(np.full(3, -1.0, np.float32), "b_f"),
             numpy_helper.from_array(foreign_emap(), "buff2fs")]
    nodes = [helper.make_node("MatMul", ["source", "w_src"], ["b"], name="matmul_src"),
             helper.make_node("Reshape", ["b", "bias_shape"], ["b4"], name="reshape"),
             helper.make_node("Conv", ["target", "w_in", "b_in"], ["c"], name="conv_in"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w_f", "b_f"], ["f"], name=FRAGILE),
             helper.make_node("Add", ["f", "b4"], ["s"], name="add"),
             helper.make_node("Sigmoid", ["s"], ["output"], name="sigmoid")]
    graph = helper.make_graph(
        nodes, "fragile_inswapper",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="not-ffkit")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tuned(artifacts, tmp_path_factory):
    """A folder (seed-0 RetinaFace and ArcFace-18 FP32, the fragile swapper) tuned on its swapper."""
    root = tmp_path_factory.mktemp("tune")
    models = root / "models"
    models.mkdir()
    for name in ("retinaface_mobilenet0.25", "arcface_iresnet18"):
        shutil.copy(artifacts.export(name).path, models / f"{name}.fp32.onnx")
    make_fragile_swapper(models / "inswapper_128.onnx")
    write_images(root / "calib", 4)
    result = ffkit("tune", "--models", models, "--calib", root / "calib", "--validate", ASTRONAUT,
                   "--source", ASTRONAUT, "--roles", "swapper", "--candidates", "fp32,int8,fallback",
                   "--search", "exhaustive", "--time-limit", "10", *FAST_ARGS)
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((models / "tune-report" / "tune.json").read_text())
    return {"root": root, "models": models, "report": report, "output": result.output}


def _request(tuned, **changes):
    settings = swap_settings({"score_threshold": 0.8, "max_faces": 2})
    base = TuneRequest(tuned["models"], tuned["root"] / "calib", [ASTRONAUT], ASTRONAUT, settings,
                       roles=("swapper",), kinds=("fp32", "int8", "fallback"), method="exhaustive")
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
def test_fragile_layer_stays_float_and_the_rest_is_quantized(tuned):
    swapper = {c["label"]: c for c in tuned["report"]["candidates"]["swapper"]}
    for method in ("int8", "int8-percentile"):   # the fragility is in the weights: no calibration method helps
        assert swapper[method]["passed"] is False, swapper[method]
    ranking = tuned["report"]["fallback_ranking"]["swapper"]
    assert ranking[0]["node"] == FRAGILE, ranking
    one = next(c for label, c in swapper.items() if label.endswith("-float1"))
    assert one["excluded_nodes"] == [FRAGILE] and one["passed"] is True, one
    model = onnx_file.load_onnx(one["file"])
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    int8_weights = {n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul")
                    and producers.get(n.input[1]) == "DequantizeLinear"}
    assert int8_weights == {"conv_in", "matmul_src"}, int8_weights   # conv_fragile keeps float weights


@pytest.mark.slow
def test_swap_picks_the_tuned_set_and_says_so(tuned, tmp_path):
    data = json.loads((tuned["models"] / TUNED_SET).read_text())
    assert data["format"] == "ffkit-tuned-set" and set(data["roles"]) >= {"detector", "embedder", "swapper"}
    chosen = pick_models(tuned["models"])
    assert chosen.tuned == tuned["models"] / TUNED_SET
    assert chosen.swapper.path.name == data["roles"]["swapper"]["file"]
    result = ffkit("swap", "--source", ASTRONAUT, "--target", ASTRONAUT, "-o", tmp_path / "out.png",
                   "--models", tuned["models"], *FAST_ARGS)
    assert result.exit_code == 0, result.output
    assert "tuned set" in result.stdout and str(tuned["models"] / TUNED_SET) in " ".join(result.stdout.split())
    explicit = pick_models(tuned["models"], variant="fp32")
    assert explicit.tuned is None and explicit.swapper.path.name == "inswapper_128.onnx"


@pytest.mark.slow
def test_greedy_search_chooses_what_the_exhaustive_search_does(tuned):
    greedy_run = run_tune(_request(tuned, method="greedy"))
    assert greedy_run.method == "greedy" and greedy_run.cache.builds == 0
    exhaustive_choice = {r: c["label"] for r, c in tuned["report"]["chosen"].items()}
    assert {r: c.label for r, c in greedy_run.chosen.items()} == exhaustive_choice


@pytest.mark.slow
def test_rerun_with_only_the_budget_changed_rebuilds_nothing(tuned, tmp_path):
    budget = tmp_path / "budget.json"
    budget.write_text(json.dumps({"swapper.psnr": 25, "output.psnr": 25}))
    again = run_tune(_request(tuned, budget=budget))
    assert again.cache.builds == 0 and again.cache.hits > 0
    assert again.cache.judged == 0 and again.cache.judged_hits > 0


def _brute(options, base, check):
    sets = [dict(zip(options, combo)) for combo in itertools.product(*options.values())]
    return min((s for s in sets if check(s)), key=lambda s: frame_seconds(base, s))


def test_search_on_numbers_equals_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(30):
        options = {}
        for role in ("detector", "embedder", "swapper"):
            opts = [Option(f"{role}-fp32", float(rng.uniform(0.01, 0.05)))]
            for k in range(int(rng.integers(1, 4))):
                opts.append(Option(f"{role}-{k}", float(rng.uniform(0.002, 0.05)),
                                   {"output.psnr": float(rng.uniform(0, 0.9)), f"{role}.x": float(rng.uniform(0, 1))}))
            options[role] = opts

        def check(choice):
            return estimate(choice) <= 1.0

        best = _brute(options, 0.01, check)
        found = exhaustive(options, 0.01, check, max_checks=1000).choice
        assert frame_seconds(0.01, found) == pytest.approx(frame_seconds(0.01, best)), trial
        g = greedy(options, 0.01, check, max_checks=1000).choice
        assert check(g) and frame_seconds(0.01, g) <= frame_seconds(0.01, {r: o[0] for r, o in options.items()})


def test_pick_models_takes_set_json_unless_a_variant_is_given(artifacts, tmp_path):
    """A hand-written set.json naming a second FP32 detector file: picked without --variant (and
    named in swap's table), --variant fp32 ignores it, a set naming a missing file is not used."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("retinaface_mobilenet0.25", "arcface_iresnet18"):
        link(artifacts.export(name).path, models / f"{name}.fp32.onnx")
    shutil.copy(artifacts.export("retinaface_mobilenet0.25").path, models / "retinaface_mobilenet0.25.tuned.fp32.onnx")
    make_fragile_swapper(models / "inswapper_128.onnx")
    tuned_det = models / "retinaface_mobilenet0.25.tuned.fp32.onnx"
    roles = {"detector": {"file": tuned_det.name, "size": tuned_det.stat().st_size}}
    (models / TUNED_SET).write_text(json.dumps({"format": "ffkit-tuned-set", "roles": roles}))
    chosen = pick_models(models)
    assert chosen.detector.path == tuned_det and chosen.tuned == models / TUNED_SET
    assert any("tuned set picked" in n for n in chosen.notes)
    plain = pick_models(models, variant="fp32")
    assert plain.detector.path.name == "retinaface_mobilenet0.25.fp32.onnx" and plain.tuned is None
    roles["detector"]["file"] = "gone.onnx"
    (models / TUNED_SET).write_text(json.dumps({"format": "ffkit-tuned-set", "roles": roles}))
    fallback = pick_models(models)
    assert fallback.tuned is None and any("missing or changed" in n for n in fallback.notes)


def test_demo_budget_passes_what_the_default_budget_fails(tmp_path):
    """The demo judges its synthetic swapper at 28 dB / SSIM 0.9 and also prints the verdict
    under validate's defaults (30 dB / 0.95): the same figures, two verdicts."""
    from types import SimpleNamespace

    from ffkit.toolkit.demo_tune import DEMO_BUDGET, default_budget_verdict
    from ffkit.validation.validate.budgets import load_budgets
    from ffkit.validation.validate.summary import summarise, verdicts

    rows = [{"set": "candidate", "target": "clip.mp4", "frame": f, "stage": "swapper", "mode": mode, "metric": m,
             "value": v, "face": 0}
            for f in (0, 1) for mode in ("isolated", "chained") for m, v in (("psnr", 29.2 - f), ("ssim", 0.93))]
    text = default_budget_verdict(SimpleNamespace(final=SimpleNamespace(rows=rows)))
    assert text.startswith("FAIL") and "swapper" in text and "28.2" in text and ">= 30" in text, text
    assert DEMO_BUDGET == {"swapper.psnr": 28.0, "swapper.ssim": 0.9}
    (tmp_path / "budget.json").write_text(json.dumps(DEMO_BUDGET))
    cells = summarise(rows, load_budgets(tmp_path / "budget.json"))
    assert verdicts(cells, ["fp32", "candidate"])["candidate"]["passed"] is True
