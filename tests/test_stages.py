"""Conversion stages on the seed-0 exports: simplify, optimize, FP16, INT8, the emap, build, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import reference
from cli_helpers import assert_one_line_error
from conftest import recipe_params
from onnx import TensorProto, helper, numpy_helper
from stage_helpers import write_images
from typer.testing import CliRunner

from ffkit.recipes import artifact, get_recipe, onnx_file
from ffkit.recipes.errors import ArtifactError, ParityError
from ffkit.recipes.spec import AccuracyBudget
from ffkit.runtime.sessions import create_session as make_session
from ffkit.runtime.sessions import run_session as run
from ffkit.toolkit.cli import app
from ffkit.toolkit.fp16 import Fp16Stage, convert, overflowing_nodes
from ffkit.toolkit.int8 import Int8Stage
from ffkit.toolkit.optimize import OptimizeStage
from ffkit.toolkit.simplify import SimplifyStage
from ffkit.toolkit.verify import verify

EMAP = np.random.default_rng(11).normal(size=(512, 512)).astype(np.float32)


class Chain:
    """simplify -> optimize of the session exports, made once per module and shared by the tests."""

    def __init__(self, root: Path, artifacts):
        self.root, self.artifacts, self.done = root, artifacts, {}

    def source(self, name: str, *options: str) -> Path:
        """The FP32 export; inswapper's carries an emap (attached by the export's own finalize hook)."""
        path = self.artifacts.export(name, *options).path
        if name != "inswapper_128":
            return path
        from ffkit.recipes.inswapper.emap import attach_emap

        with_emap = self.root / "inswapper_128.emap.onnx"
        if not with_emap.exists():
            onnx_file.save_onnx(attach_emap(onnx_file.load_onnx(path), EMAP), with_emap)
        return with_emap

    def run(self, name: str, *options: str):
        key = (name, options)
        if key not in self.done:
            tag = "".join(f".{o}" for o in options)
            sim = SimplifyStage().run(self.source(name, *options), self.root / f"{name}{tag}.sim.onnx")
            opt = OptimizeStage().run(sim.path, self.root / f"{name}{tag}.opt.onnx")
            self.done[key] = (sim, opt)
        return self.done[key]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, artifacts):
    return Chain(tmp_path_factory.mktemp("stages"), artifacts)


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """Calibration images and a disjoint held-out set (small synthetic photos)."""
    root = tmp_path_factory.mktemp("calib")
    write_images(root / "calib", 6, seed=1)
    write_images(root / "held", 3, seed=2)
    return root / "calib", root / "held"


def _vectors_within_manifest(path: Path, name: str) -> float:
    recipe, tol = get_recipe(name), reference.manifest(name)["recommended_tolerance"]
    session = make_session(path)
    worst = 0.0
    for inputs, outputs in reference.cases(name):
        got = run(session, dict(zip(recipe.input_names, inputs)))
        for spec, ref in zip(recipe.outputs, outputs):
            np.testing.assert_allclose(got[spec.name], ref, rtol=tol["rtol"], atol=tol["atol"])
            worst = max(worst, float(np.abs(got[spec.name] - ref).max()))
    return worst


def _dim_params(model: onnx.ModelProto) -> dict[str, list]:
    return {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in [*model.graph.input, *model.graph.output]}


# --------------------------------------------------------------------------- simplify / optimize


@pytest.mark.parametrize("name", recipe_params())
def test_simplify_and_optimize_keep_parity_and_dynamic_axes(name, chain):
    recipe = get_recipe(name)
    sim, opt = chain.run(name)
    for result, stage in ((sim, "simplify"), (opt, "optimize")):
        assert _vectors_within_manifest(result.path, name) < 1e-4
        model = onnx.load(str(result.path), load_external_data=False)
        dims = _dim_params(model)
        for spec in (*recipe.inputs, *recipe.outputs):
            for axis, param in spec.dynamic_axes.items():
                if recipe.dynamic_batch or param != "N":
                    assert dims[spec.name][axis] == param, (spec.name, dims[spec.name])
        # checked against its input at the sample shape and at a second shape moving every dynamic axis
        parity = result.figures["parity"]
        assert all(p["passed"] for p in parity)
        assert len(parity) == (2 if recipe.dynamic_batch or recipe.role == "detector" else 1)
        if recipe.role == "detector":
            assert parity[1]["dims"] == {"N": 2, "H": 480, "W": 640}
        history = artifact.history(model)
        assert [h["stage"] for h in history][-2:] == (["export", "simplify"] if stage == "simplify" else
                                                     ["simplify", "optimize"])
        meta = artifact.metadata(model)
        assert meta["ffkit.recipe"] == name and meta["ffkit.variant"] == "fp32"
        assert not any(k.startswith("onnxsim.") for k in meta)


def test_optimize_all_level_records_its_binding(chain, tmp_path):
    sim, _ = chain.run("retinaface_mobilenet0.25")
    result = OptimizeStage(level="all").run(sim.path, tmp_path / "all.onnx")
    bound = json.loads(artifact.metadata(onnx.load(str(result.path)))["ffkit.bound_to"])
    assert bound["provider"] == "CPUExecutionProvider" and bound["cpu"]["model"] and "isa" in bound["cpu"]
    assert artifact.history(onnx.load(str(result.path)))[-1]["params"]["level"] == "all"


# --------------------------------------------------------------------------- FP16


@pytest.mark.parametrize("name", recipe_params(["retinaface_mobilenet0.25", "arcface_iresnet18", "simswap_224",
                                                "gfpgan_v1.4"]))
def test_fp16_runs_on_cpu_within_budget(name, chain, tmp_path):
    sim, _ = chain.run(name)
    result = Fp16Stage().run(sim.path, tmp_path / "fp16.onnx")
    model = onnx.load(str(result.path))
    assert artifact.precision(model) == "fp16" and result.variant == "fp16"
    assert all(vi.type.tensor_type.elem_type == TensorProto.FLOAT for vi in [*model.graph.input, *model.graph.output])
    assert 0.45 < result.size_bytes / sim.path.stat().st_size < 0.56
    report = verify(result.path, chain.source(name))     # CPU provider, sample inputs at two shapes
    assert report.passed and report.kind == "fp16", [(o.name, o.criterion, o.value) for o in report.outputs]
    record = artifact.history(model)[-1]
    assert record["stage"] == "fp16" and "nodes_kept" in record["figures"]
    assert set(get_recipe(name).fp16_keep_float32) <= set(record["figures"]["op_types_kept"])


def test_fp16_block_list_extends_the_default(chain, tmp_path):
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    sim, _ = chain.run("retinaface_mobilenet0.25")
    result = Fp16Stage(keep_float32=("Conv",)).run(sim.path, tmp_path / "fp16.onnx")
    kept = result.figures["op_types_kept"]
    assert "Conv" in kept and set(DEFAULT_OP_BLOCK_LIST) <= set(kept)
    model = onnx.load(str(result.path))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert all(i.data_type == TensorProto.FLOAT for i in model.graph.initializer if i.name in conv_weights)


def _norm_model(scale: float) -> onnx.ModelProto:
    """``y = mean((x*scale - mean(x*scale))^2)``: an instance-norm variance that overflows float16."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"], name="scale"),
             helper.make_node("ReduceMean", ["xs", "axes"], ["m"], name="mean", keepdims=1),
             helper.make_node("Sub", ["xs", "m"], ["c"], name="centre"),
             helper.make_node("Mul", ["c", "c"], ["sq"], name="square"),
             helper.make_node("ReduceMean", ["sq", "axes"], ["y"], name="var", keepdims=1)]
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    return helper.make_model(helper.make_graph(nodes, "norm", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 18)])


def test_fp16_overflow_is_found_by_running_the_model():
    """The nodes whose FP32 activations exceed float16's range are found and kept in float32.

    (onnxruntime's CPU provider computes most float16 ops in float32 behind the scenes, so the
    overflow itself shows on GPU providers, not here: the check runs on FP32 activations.)"""
    model = _norm_model(2000.0)
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32)}
    found = overflowing_nodes(model, feeds, 0.5 * 65504)
    assert set(found) == {"square", "var"}               # (x - mean)^2 reaches ~1e6; its mean too
    assert overflowing_nodes(_norm_model(1.0), feeds, 0.5 * 65504) == {}
    expected = run(make_session(model), feeds)["y"]
    kept = convert(model, [], list(found))
    np.testing.assert_allclose(run(make_session(kept), feeds)["y"], expected, rtol=2e-3)
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(kept).graph.value_info}
    square = next(n for n in kept.graph.node if n.name == "square")
    assert all(elem[i] == TensorProto.FLOAT for i in square.input)
    assert kept.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    naive = convert(model, [], [])
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(naive).graph.value_info}
    assert elem["sq"] == TensorProto.FLOAT16


def test_fp16_lossy_nodes_are_found_by_comparing_tensors(chain):
    """Step 4: the nodes whose float16 output error grows most over their inputs' are ranked,
    and keeping them in float32 lowers the output error."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    from ffkit.toolkit.fp16 import lossy_nodes
    from ffkit.validation.metrics import rel_l2

    name = "retinaface_mobilenet0.25"
    src = onnx.load(str(chain.run(name)[0].path))
    feeds = get_recipe(name).sample_inputs(seed=0)
    ref = run(make_session(src), feeds)
    plain = convert(src, DEFAULT_OP_BLOCK_LIST, [])
    worst = lossy_nodes(src, plain, feeds, 12, {})
    assert len(worst) == 12 and all(gain > 1 for gain in worst.values())
    kept = convert(src, DEFAULT_OP_BLOCK_LIST, list(worst))

    def error(model):
        got = run(make_session(model), feeds)
        return sum(rel_l2(got[k], ref[k]) for k in ref)

    assert error(kept) < error(plain)


# --------------------------------------------------------------------------- INT8


@pytest.mark.parametrize("name, max_ratio", [
    ("retinaface_mobilenet0.25", 0.40),   # 1.7 MB model: Q/DQ node overhead is ~25% of it
    ("arcface_iresnet18", 0.30),
    pytest.param("retinaface_resnet50", 0.30, marks=pytest.mark.slow),
])   # the swapper: inswapper_128 in test_inswapper_emap_survives_every_stage
def test_int8_runs_on_cpu_within_budget_and_size(name, max_ratio, chain, calib, tmp_path):
    sim, _ = chain.run(name)
    result = Int8Stage(calib=calib[0], samples=6, eval_samples=2, progress=False).run(sim.path, tmp_path / "int8.onnx")
    model = onnx.load(str(result.path))
    assert artifact.precision(model) == "int8" and result.variant == "int8"
    assert result.size_bytes / chain.source(name).stat().st_size <= max_ratio
    types = result.figures["types"]
    assert types["activation_type"] == "uint8" and types["weight_type"] == "int8" and types["format"] == "QDQ"
    from ffkit.toolkit.hardware import has_vnni
    assert types["reduce_range"] == (not has_vnni())
    report = verify(result.path, chain.source(name), inputs=calib[1])    # held-out images, CPU provider
    assert report.passed, [(o.name, o.criterion, o.value) for o in report.outputs]


def test_int8_recalibrates_only_for_new_data(chain, calib, tmp_path, monkeypatch):
    sim, _ = chain.run("retinaface_mobilenet0.25")
    first = Int8Stage(calib=calib[0], samples=4, eval_samples=1, progress=False).run(sim.path, tmp_path / "a.onnx")
    assert first.figures["calibration_cache"]["hit"] is False
    cache = Path(first.figures["calibration_cache"]["path"])
    assert cache.parent == tmp_path / ".ffkit-calib" and cache.is_file()

    import ffkit.toolkit.calibrate as calibrate

    def no_collect(*a, **k):
        raise AssertionError("recalibrated")

    monkeypatch.setattr(calibrate, "collect", no_collect)
    conv = next(n.name for n in onnx.load(str(sim.path)).graph.node if n.op_type == "Conv")
    second = Int8Stage(calib=calib[0], samples=4, eval_samples=1, method="percentile", exclude_nodes=(conv,),
                       progress=False).run(sim.path, tmp_path / "b.onnx")
    assert second.figures["calibration_cache"]["hit"] is True and conv in second.figures["excluded_nodes"]
    assert any(n.op_type == "Conv" and n.name == conv for n in onnx.load(str(second.path)).graph.node)
    with pytest.raises(AssertionError, match="recalibrated"):   # another calibration set does recalibrate
        Int8Stage(calib=calib[0], samples=3, eval_samples=1, progress=False).run(sim.path, tmp_path / "c.onnx")


def test_int8_auto_exclude_meets_a_stricter_budget(chain, calib, tmp_path):
    name = "retinaface_mobilenet0.25"
    sim, _ = chain.run(name)
    plain = Int8Stage(calib=calib[0], samples=6, eval_samples=2, progress=False).run(sim.path, tmp_path / "p.onnx")
    worst = max(f["rel_l2"] for f in plain.figures["accuracy"].values())
    strict = AccuracyBudget("rel_l2", worst * 0.6, "test: stricter than plain INT8 reaches")
    result = Int8Stage(calib=calib[0], samples=6, eval_samples=2, auto_exclude=True, budget=strict,
                       progress=False).run(sim.path, tmp_path / "auto.onnx")
    assert result.params["budget"]["threshold"] == strict.threshold   # the budget used is recorded
    figures = result.figures
    assert figures["budget_met"] and figures["excluded_nodes"]
    assert max(f["rel_l2"] for f in figures["accuracy"].values()) <= strict.threshold
    assert figures["auto_exclude"]["trials"][-1]["passed"]
    model = onnx.load(str(result.path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8_convs = [n for n in convs if producers.get(n.input[0]) == "DequantizeLinear"]
    float_convs = [n for n in convs if n not in int8_convs]
    assert 0 < len(int8_convs) < len(convs)                      # mixed precision: float activations in some
    assert {n.name for n in float_convs} <= set(figures["excluded_nodes"])
    # the float convs still store their (large) weights as int8 (weight-only), so the file stays small
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    assert all(producers.get(n.input[1]) == "DequantizeLinear" or sizes[n.input[1]] < 1024 for n in float_convs)
    assert result.size_bytes <= plain.size_bytes * 1.1


# --------------------------------------------------------------------------- the emap


@pytest.mark.slow
def test_inswapper_emap_survives_every_stage(chain, calib, tmp_path):
    """Exported with an emap (the export's finalize hook), it stays the bit-exact LAST initializer."""
    sim, opt = chain.run("inswapper_128")
    fp16 = Fp16Stage(auto=False).run(sim.path, tmp_path / "fp16.onnx")
    int8 = Int8Stage(calib=calib[0], samples=2, eval_samples=1, progress=False).run(sim.path, tmp_path / "int8.onnx")
    # the swapper's INT8: a quarter of the size, within budget on held-out images, on the CPU provider
    assert int8.size_bytes / chain.source("inswapper_128").stat().st_size <= 0.30
    report = verify(int8.path, chain.source("inswapper_128"), inputs=calib[1], samples=2)
    assert report.passed, [(o.name, o.criterion, o.value) for o in report.outputs]
    source = onnx_file.load_onnx(chain.source("inswapper_128"))
    expected = source.graph.initializer[-1]
    assert expected.name == "emap"
    for result in (sim, opt, fp16, int8):
        model = onnx.load(str(result.path))
        last = model.graph.initializer[-1]
        assert last.name == "emap" and last.SerializeToString() == expected.SerializeToString(), result.stage
        np.testing.assert_array_equal(numpy_helper.to_array(last), EMAP)
        assert artifact.metadata(model)["ffkit.emap_sha256"] == artifact.metadata(source)["ffkit.emap_sha256"]
        assert sum(i.name == "emap" for i in model.graph.initializer) == 1


def test_detached_initializers_are_carried_generically(chain, tmp_path):
    """Any initializer no node uses (not only inswapper's) ends up last, bit-exact."""
    src = onnx_file.load_onnx(chain.run("retinaface_mobilenet0.25")[0].path)
    extra = numpy_helper.from_array(np.arange(7, dtype=np.float32), "side_table")
    src.graph.initializer.append(extra)
    path = tmp_path / "with_table.onnx"
    onnx_file.save_onnx(src, path)
    out = Fp16Stage(auto=False).run(path, tmp_path / "fp16.onnx")
    last = onnx.load(str(out.path)).graph.initializer[-1]
    assert last.SerializeToString() == extra.SerializeToString()
    assert out.figures["carried_initializers"] == ["side_table"]


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_one_line_errors_and_no_output(chain, calib, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out.onnx"
    sim, _ = chain.run("retinaface_mobilenet0.25")

    text = tmp_path / "model.onnx"
    text.write_text("this is not a model\n" * 50)
    assert_one_line_error(runner.invoke(app, ["simplify", str(text), "-o", str(out)]), "not an ONNX model")

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(sim.path.read_bytes()[: sim.path.stat().st_size // 2])
    assert_one_line_error(runner.invoke(app, ["optimize", str(truncated), "-o", str(out)]), "truncated")
    assert_one_line_error(runner.invoke(app, ["quantize", str(truncated), "-o", str(out), "--fp16"]), "truncated")

    bad_calib = tmp_path / "bad_calib"
    bad_calib.mkdir()
    (bad_calib / "a.jpg").write_bytes(b"nope")
    int8 = ["-o", str(out), "--int8", "--calib"]
    assert_one_line_error(runner.invoke(app, ["quantize", str(sim.path), *int8, str(bad_calib)]),
                    "no usable calibration image")
    assert_one_line_error(runner.invoke(app, ["quantize", str(sim.path), "-o", str(out), "--int8"]), "--calib")

    fp16 = Fp16Stage(auto=False).run(sim.path, tmp_path / "fp16.onnx")
    assert_one_line_error(runner.invoke(app, ["quantize", str(fp16.path), *int8, str(calib[0])]), "FP16 model", "INT8")
    assert_one_line_error(runner.invoke(app, ["quantize", str(fp16.path), "-o", str(out), "--fp16"]), "FP16 model")
    assert_one_line_error(runner.invoke(app, ["verify", str(truncated), "--reference", str(sim.path)]), "truncated")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.onnx")]


def test_failed_stage_leaves_an_existing_output_untouched(chain, tmp_path, monkeypatch):
    sim, _ = chain.run("retinaface_mobilenet0.25")
    out = tmp_path / "opt.onnx"
    out.write_bytes(b"previous")
    import ffkit.toolkit.stage as stage

    def broken(*a, **k):
        raise ParityError(f"{out}: not written, simulated mismatch")

    monkeypatch.setattr("ffkit.toolkit.optimize.check_fp32", broken)
    with pytest.raises(ParityError):
        OptimizeStage().run(sim.path, out)
    assert out.read_bytes() == b"previous" and stage  # untouched
    with pytest.raises(ArtifactError, match="overwrite the input"):
        OptimizeStage().run(sim.path, sim.path)


# --------------------------------------------------------------------------- build


def test_build_writes_verified_variants_and_reports(artifacts, calib, tmp_path):
    from ffkit.toolkit.build import BuildOptions, build

    outdir = tmp_path / "models"
    runner = CliRunner()
    name = "retinaface_mobilenet0.25"
    # an INT8 budget no INT8 model meets (passed in, as data): the variant is reported and not written
    impossible = AccuracyBudget("rel_l2", 1e-6, "test: impossible")
    opts = BuildOptions(calib=calib[0], fp16=Fp16Stage(), int8=Int8Stage(samples=4, budget=impossible))
    built = build(name, artifacts.checkpoint(name), outdir, opts)
    assert not built.passed
    assert (outdir / f"{name}.fp32.onnx").is_file() and (outdir / f"{name}.fp16.onnx").is_file()
    assert not (outdir / f"{name}.int8.onnx").exists()
    assert not [p for p in outdir.iterdir() if p.name.startswith(".ffkit-build")]
    report = json.loads((outdir / "report.json").read_text())
    variants = {v["variant"]: v for v in report["builds"][name]["variants"]}
    assert variants["fp32"]["passed"] and variants["fp16"]["passed"] and not variants["int8"]["passed"]
    assert variants["int8"]["file"] is None and "not written" in variants["int8"]["error"]
    assert variants["fp16"]["size_ratio"] < 0.56
    assert get_recipe(name).budgets["int8"].threshold > impossible.threshold   # the recipe is untouched

    other = "arcface_iresnet18"
    result = runner.invoke(app, ["build", other, str(artifacts.checkpoint(other)), "-o", str(outdir)])
    assert result.exit_code == 0, result.output
    report = json.loads((outdir / "report.json").read_text())
    assert set(report["builds"]) == {name, other} and report["builds"][other]["passed"]
    assert (outdir / f"{other}.fp32.onnx").is_file() and not (outdir / "report.png").exists()
    assert "ffkit build" in result.output


def test_build_needs_calibration_for_int8(artifacts, tmp_path):
    result = CliRunner().invoke(app, ["build", "arcface_iresnet18", str(artifacts.checkpoint("arcface_iresnet18")),
                                      "-o", str(tmp_path / "o"), "--int8"])
    assert_one_line_error(result, "--calib")
    assert not (tmp_path / "o").exists()


def test_report_png_rows(tmp_path):
    from ffkit.validation.report import comparison_row, comparison_sheet, write_png

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    noisy = np.clip(ref.astype(int) + rng.integers(-9, 9, ref.shape), 0, 255).astype(np.uint8)
    row = comparison_row("x", ref, [("fp16", ref), ("int8", noisy)])
    assert row.shape == (192, 192 * 5, 3)
    sheet = comparison_sheet([row, row[:, :192 * 3]])
    assert sheet.shape == (384, 192 * 5, 3)
    import cv2
    assert cv2.imread(str(write_png(tmp_path / "r.png", sheet))).shape == sheet.shape


# --------------------------------------------------------------------------- chains


@pytest.mark.parametrize("name", recipe_params())
def test_int8_of_an_optimized_artifact(name, chain, calib, tmp_path):
    """``optimize`` then ``quantize --int8``: the fused FusedConv nodes are undone first, so the
    result is the INT8 model of the same arithmetic as the simplified graph's INT8 (figures
    within a small factor of each other), with no onnxruntime-specific op left."""
    sim, opt = chain.run(name)
    settings = dict(calib=calib[0], samples=3, eval_samples=1, progress=False)
    from_opt = Int8Stage(**settings).run(opt.path, tmp_path / "from_opt.onnx")
    from_sim = Int8Stage(**settings).run(sim.path, tmp_path / "from_sim.onnx")
    model = onnx.load(str(from_opt.path))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    for output, figs in from_opt.figures["accuracy"].items():
        other = from_sim.figures["accuracy"][output]
        assert np.isfinite(figs["rel_l2"]) and figs["rel_l2"] <= 1.5 * other["rel_l2"] + 1e-3, (output, figs, other)


def test_int8_of_a_cpu_bound_artifact_is_one_clear_line(chain, calib, tmp_path):
    sim, _ = chain.run("retinaface_mobilenet0.25")
    bound = OptimizeStage(level="all").run(sim.path, tmp_path / "all.onnx")
    result = CliRunner().invoke(app, ["quantize", str(bound.path), "-o", str(tmp_path / "q.onnx"), "--int8",
                                      "--calib", str(calib[0])])
    assert_one_line_error(result, "all.onnx: holds onnxruntime-specific ops", "quantize the exported or simplified")
    assert not (tmp_path / "q.onnx").exists()
