"""Smoke of the bench harness on tiny handmade models: discovery from metadata, JSON structure,
ratios from medians, fixed-batch handling, profile summary, one-line errors. No timing limits."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ffkit.recipes import artifact
from ffkit.recipes.errors import ArtifactError, FfkitError
from ffkit.toolkit import bench
from ffkit.toolkit.cli import app


def tiny_embedder(path, stage=None, variant="fp32", batch="N"):
    """An arcface-shaped toy (input [N,3,112,112] -> embedding [N,512]) tagged like an ffkit artifact."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 112, 112])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 512])
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], strides=[8, 8], kernel_shape=[8, 8]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["embedding"], transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((512, 4 * 14 * 14)).astype(np.float32), "g")]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    artifact.set_metadata(model, recipe="arcface_iresnet18", variant=variant)
    artifact.append_history(model, "export", {})
    if stage:
        artifact.append_history(model, stage, {})
    onnx.save(model, str(path))
    return path


# FLOPs of the toy per sample: conv 4x14x14 outputs x 3x8x8 taps, gemm 784 x 512.
TINY_FLOPS = 2 * 4 * 14 * 14 * 3 * 8 * 8 + 2 * 784 * 512


@pytest.fixture()
def model_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    tiny_embedder(d / "a.onnx")
    tiny_embedder(d / "b.onnx", stage="optimize")
    tiny_embedder(d / "c.onnx", stage="int8", variant="int8")
    return d


def test_labels_come_from_metadata_not_file_names():
    assert bench.variant_label("fp32", ["export"]) == ("onnx-fp32", "fp32")
    assert bench.variant_label("fp32", ["export", "simplify"]) == ("simplified", "fp32")
    assert bench.variant_label("fp32", ["export", "simplify", "optimize"]) == ("optimized", "fp32")
    assert bench.variant_label("fp16", ["export", "simplify", "optimize", "fp16"]) == ("fp16", "fp16")
    assert bench.variant_label("int8", ["export", "quantize"]) == ("int8", "int8")
    assert bench.variant_label("fp32-unfused", ["export"]) == ("onnx-fp32+unfused", "fp32")
    assert bench.variant_label("fp32", ["export", "optimize", "prelu_rewrite"]) == ("optimized+prelu_rewrite", "fp32")


def test_discover_sorts_by_variant_and_counts_flops(model_dir):
    vs = bench.discover([model_dir])
    assert [v.label for v in vs] == ["onnx-fp32", "optimized", "int8"]
    assert {v.recipe for v in vs} == {"arcface_iresnet18"}
    bench.count_variant_flops(vs[0], [1, 3])
    assert vs[0].flops == {1: TINY_FLOPS, 3: 3 * TINY_FLOPS}


def test_finish_ratios_are_ratios_of_medians():
    vs = [bench.Variant("torch-eager", "torch", "arcface_iresnet18"),
          bench.Variant("onnx-fp32", "onnx", "arcface_iresnet18", flops={1: 4_000_000_000}),
          bench.Variant("int8", "onnx", "arcface_iresnet18", precision="int8", flops={1: 4_000_000_000})]
    raw = {"arcface_iresnet18/torch-eager": {"batches": [{"batch": 1, "times_s": [0.30, 0.10, 0.20, 9.0, 0.25]}]},
           "arcface_iresnet18/onnx-fp32": {"batches": [{"batch": 1, "times_s": [0.10, 0.11, 0.09]}]},
           "arcface_iresnet18/int8": {"batches": [{"batch": 1, "times_s": [0.05, 0.04, 0.5]}], "peak_mb": 12.0}}
    peak = {"fp32": {"gflops": 100.0}, "int8": {"gflops": 400.0}}
    recs = {r["label"]: r for r in bench.finish(vs, raw, peak)}
    eager, base, q = (recs[k]["batches"][0] for k in ("torch-eager", "onnx-fp32", "int8"))
    assert eager["median_ms"] == pytest.approx(250.0) and base["median_ms"] == pytest.approx(100.0)
    assert q["median_ms"] == pytest.approx(50.0)
    assert base["speedup_vs_eager"] == pytest.approx(2.5) and q["speedup_vs_eager"] == pytest.approx(5.0)
    assert q["speedup_vs_onnx_fp32"] == pytest.approx(2.0) and base["speedup_vs_onnx_fp32"] == pytest.approx(1.0)
    # torch borrows the fp32 graph's FLOPs; int8 is compared with the INT8 peak.
    assert eager["gflops_per_s"] == pytest.approx(16.0) and eager["fraction_of_peak"] == pytest.approx(0.16)
    assert q["gflops_per_s"] == pytest.approx(80.0) and q["fraction_of_peak"] == pytest.approx(0.2)
    assert q["peak_precision"] == "int8" and base["throughput_per_s"] == pytest.approx(10.0)


def test_run_bench_in_process_json_structure(model_dir, tmp_path):
    settings = bench.BenchSettings(batches=(1, 2), warmup=1, repeat=3, min_runs=1, max_seconds=1.0,
                                   session=bench.SessionConfig(threads=1), isolate=False, peak=False,
                                   profile_dir=str(tmp_path / "prof"), profile_runs=2, profile_top=3)
    steps = []
    report = bench.run_bench(bench.discover([model_dir]), settings, on_step=steps.append)
    path = bench.write_json(report, tmp_path / "r.json")
    report = json.loads(path.read_text())
    assert set(report) >= {"machine", "settings", "peak", "results", "flops_convention"}
    assert report["settings"]["session"]["threads"] == 1 and steps
    recs = {r["label"]: r for r in report["results"]}
    assert set(recs) == {"onnx-fp32", "optimized", "int8"}
    for rec in recs.values():
        assert rec["error"] is None and rec["peak_mb"] is not None
        assert [b["batch"] for b in rec["batches"]] == [1, 2]
        for b in rec["batches"]:
            assert b["runs"] == 3 == len(b["times_ms"])
            assert b["gflops"] == pytest.approx(b["batch"] * TINY_FLOPS / 1e9, abs=1e-4)
            assert b["speedup_vs_eager"] is None and b["fraction_of_peak"] is None
            base = recs["onnx-fp32"]["batches"][b["batch"] - 1]
            assert b["speedup_vs_onnx_fp32"] == pytest.approx(
                np.median(base["times_ms"]) / np.median(b["times_ms"]), rel=1e-2)
        prof = rec["profile"]
        assert prof["runs"] == 2 and {"Conv", "Gemm"} & {row["op"] for row in prof["by_op"]}
        assert 0 < sum(r["share"] for r in prof["by_op"]) <= 1.0001
        assert (tmp_path / "prof").is_dir() and prof["file"].endswith(".json")


def test_fixed_batch_artifact_skips_other_batches(tmp_path):
    path = tiny_embedder(tmp_path / "fixed.onnx", batch=1)
    (v,) = bench.discover([path])
    assert v.fixed_batch == 1
    res = bench.measure({"kind": "onnx", "path": str(path), "recipe": v.recipe, "batches": [1, 4], "fixed_batch": 1,
                         "session": {"threads": 1}, "warmup": 0, "repeat": 2, "min_runs": 1})
    assert "times_s" in res["batches"][0] and "fixed batch" in res["batches"][1]["skipped"]


def test_isolated_worker_and_peak_probe(model_dir):
    res = bench.measure_isolated({"kind": "onnx", "path": str(model_dir / "a.onnx"), "recipe": "arcface_iresnet18",
                                  "batches": [1], "session": {"threads": 1}, "warmup": 1, "repeat": 2, "min_runs": 1})
    assert "error" not in res and len(res["batches"][0]["times_s"]) == 2 and res["peak_mb"] >= 0
    peak = bench.peak_probe(bench.SessionConfig(threads=1), isolate=False, shapes=[(64, 64, 64)])
    assert peak["fp32"]["gflops"] > 0 and peak["int8"]["gflops"] > 0 and peak["int8"]["shape"] == [64, 64, 64]


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        bench.discover([tmp_path / "missing.onnx"])
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(ArtifactError, match="not an ONNX model"):
        bench.discover([tmp_path / "junk.onnx"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="no ONNX artifacts"):
        bench.discover([empty])
    with pytest.raises(FfkitError, match="unknown recipe"):
        bench.discover([], recipe="arcfase_iresnet18")
    runner = CliRunner()
    result = runner.invoke(app, ["bench", str(empty)])
    assert result.exit_code == 2 and "no ONNX artifacts" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["bench", str(tmp_path), "--batch", "1,x"])
    assert result.exit_code == 2 and "--batch" in result.output


def test_cli_prints_table_and_writes_json(model_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(model_dir / "a.onnx"), str(model_dir / "b.onnx"), "--batch", "1",
                                      "--threads", "1", "--repeat", "2", "--warmup", "0", "--no-peak", "--in-process",
                                      "--json", str(out), "--markdown", str(tmp_path / "b.md")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "optimized" in result.output and "vs onnx-fp32" in result.output
    report = json.loads(out.read_text())
    assert [r["label"] for r in report["results"]] == ["onnx-fp32", "optimized"]
    md = (tmp_path / "b.md").read_text().splitlines()
    assert md[0].startswith("| recipe |") and len(md) == 4 and "| optimized |" in md[3]


def test_accuracy_is_rejudged_against_the_current_budget():
    from ffkit.recipes import get_recipe

    threshold = get_recipe("arcface_iresnet18").budgets["int8"].threshold
    history = [{"stage": "export", "figures": {}},
               {"stage": "int8", "figures": {"budget_met": True, "accuracy": {"embedding": {
                   "cosine": threshold - 0.001, "criterion": f"cosine >= {threshold - 0.01} (int8 budget)", "passed": True}}}}]
    acc = bench.discovery._accuracy(history, "arcface_iresnet18")
    assert acc["budget_met_when_built"] is True and acc["budget_met"] is False
    assert acc["outputs"]["embedding"]["value"] == pytest.approx(threshold - 0.001)
    assert bench.discovery._accuracy(history[:1], "arcface_iresnet18") is None


@pytest.mark.parametrize("new_spinning, new_entry", [(False, "0"), (None, None)])
def test_compare_settings_times_old_and_new_runtime_settings(model_dir, tmp_path, monkeypatch, new_spinning, new_entry):
    """--compare-settings: every ONNX variant is timed on the old runtime settings (spinning on,
    no provider options) and the current ones (default_spinning), and the sessions really ran with
    them (read back from onnxruntime); the ratio is old median / new median."""
    from ffkit.runtime import sessions

    monkeypatch.setattr(sessions, "default_spinning", lambda workers=1, cores=None, load=None: new_spinning)
    settings = bench.BenchSettings(batches=(1, 2), warmup=0, repeat=3, min_runs=1, max_seconds=1.0,
                                   session=bench.SessionConfig(threads=1), isolate=False, peak=False,
                                   compare_settings=True)
    report = bench.run_bench(bench.discover([model_dir / "a.onnx", model_dir / "b.onnx"]), settings)
    compared = report["settings_compared"]
    assert compared["old"]["spinning"] is True and list(compared["old"]["provider_options"]) == []
    assert compared["old"]["provider_defaults"] is False
    assert compared["new"]["spinning"] is new_spinning and compared["new"]["provider_defaults"] is True
    assert report["settings"]["session"]["spinning"] is new_spinning
    for rec in report["results"]:
        new, old = rec["session_applied"], rec["old_settings"]["session_applied"]
        assert old["allow_spinning"] == "1" and new["allow_spinning"] == new_entry
        for applied in (new, old):
            assert applied["intra_op_threads"] == 1 and applied["providers"] == ["CPUExecutionProvider"]
            assert applied["level"] == "ORT_ENABLE_ALL" and applied["execution_mode"] == "ORT_SEQUENTIAL"
        for b in rec["batches"]:
            assert b["old_settings_median_ms"] > 0
            assert b["speedup_vs_old_settings"] == pytest.approx(b["old_settings_median_ms"] / b["median_ms"], rel=2e-3)
    md = bench.markdown_table(report).splitlines()
    assert md[0].startswith("old settings: spinning on, provider options none (no defaults) | new settings: spinning "
                            + {False: "off", None: "onnxruntime default (on)"}[new_spinning])
    assert md[2].startswith("| recipe |") and "| old-settings ms | new vs old |" in md[2] and len(md) == 2 + 2 + 4
    row = md[4].split("|")
    assert row[2].strip() == "onnx-fp32" and row[14].strip().endswith("x") and len(row) == 17


def test_cli_compare_settings_table_header(model_dir, tmp_path, monkeypatch):
    from ffkit.runtime import sessions

    monkeypatch.setattr(sessions, "default_spinning", lambda workers=1, cores=None, load=None: False)
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["bench", str(model_dir / "a.onnx"), "--batch", "1", "--threads", "1", "--repeat", "2",
                                      "--warmup", "0", "--no-peak", "--in-process", "--compare-settings", "--json", str(out)],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    isa = set(report["machine"]["isa"])
    for flag in ("avx2", "avx512f", "avx512_vnni"):
        assert f"{flag} {'yes' if flag in isa else 'no'}" in result.output
    assert "old-settings ms" in result.output and "new vs old" in result.output
    assert "old settings: spinning on" in result.output and "new settings: spinning off" in result.output
    (line,) = [ln for ln in result.output.splitlines() if "onnx-fp32" in ln and ln.startswith("│")]
    ratio = report["results"][0]["batches"][0]["speedup_vs_old_settings"]
    assert f"{ratio:.2f}x" in line   # the row's ratio on the row's own line


def test_old_settings_session_gets_no_provider_defaults(monkeypatch, model_dir):
    """Both sessions come from the project's one factory; the old-settings one without the
    runtime's provider defaults, the new one with them (the factory merges them)."""
    from ffkit.runtime import sessions
    from ffkit.toolkit.bench import harness

    made, factory = [], sessions.create_session
    monkeypatch.setattr(sessions, "create_session",
                        lambda path, settings, name=None: made.append(settings) or factory(path, settings, name))
    old = bench.config.old_runtime_config(bench.SessionConfig(threads=1, provider_options=(("CUDAExecutionProvider", (("device_id", "0"),)),)))
    assert old.provider_options == () and old.spinning is True
    session = harness._ort_session(model_dir / "a.onnx", old)
    assert harness.session_applied(session)["allow_spinning"] == "1"
    assert made[0].provider_defaults is False and made[0].provider_options == ()
    new = bench.config.new_runtime_config(bench.SessionConfig(threads=1), spinning=False)
    assert harness.session_applied(harness._ort_session(model_dir / "a.onnx", new))["allow_spinning"] == "0"
    assert made[1].provider_defaults is True and made[1].spinning is False
