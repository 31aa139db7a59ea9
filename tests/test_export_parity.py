"""Each recipe: seed-0 weights in the published layout -> recipe loader -> reference vectors.

Checked in PyTorch and through the exported ONNX in onnxruntime, at the manifest tolerance, and
the dynamic axes against PyTorch on the same inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import reference
import torch
from conftest import recipe_params

from ffkit.recipes import artifact, get_recipe
from ffkit.recipes.checkpoint import load_checkpoint
from ffkit.runtime.sessions import create_session as make_session
from ffkit.runtime.sessions import run_session as run


def manifest_tolerance(name):
    tol = reference.manifest(name)["recommended_tolerance"]
    return tol["atol"], tol["rtol"]


@pytest.mark.parametrize("name", recipe_params())
def test_recipe_io_matches_manifest(name):
    recipe, m = get_recipe(name), reference.manifest(name)
    assert recipe.input_names == [i["name"] for i in m["inputs"]]
    assert recipe.output_names == [o["name"] for o in m["outputs"]]
    assert (recipe.tolerance.atol, recipe.tolerance.rtol) == manifest_tolerance(name)
    assert [tuple(o) for o in m.get("fill_overrides", [])] == [tuple(o) for o in recipe.fill_overrides]


@pytest.mark.parametrize("name", recipe_params())
def test_state_dict_layout_matches_manifest(name):
    model = get_recipe(name).build_model()
    prefix = reference.manifest(name).get("key_prefix", "")
    expected = [(k[len(prefix):], list(s), d) for k, s, d in reference.manifest(name)["state_dict"]]
    got = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    assert got == expected


@pytest.mark.parametrize("name", recipe_params())
def test_pytorch_matches_reference_vectors(name, artifacts):
    model = load_checkpoint(get_recipe(name), artifacts.checkpoint(name))
    atol, rtol = manifest_tolerance(name)
    for inputs, outputs in reference.cases(name):
        with torch.no_grad():
            got = model(*[torch.from_numpy(x) for x in inputs])
        got = got if isinstance(got, tuple) else (got,)
        for g, ref in zip(got, outputs):
            np.testing.assert_allclose(g.numpy(), ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", recipe_params())
def test_onnx_matches_reference_vectors(name, artifacts):
    result = artifacts.export(name)
    recipe = get_recipe(name)
    atol, rtol = manifest_tolerance(name)
    session = make_session(result.path)
    assert [i.name for i in session.get_inputs()] == recipe.input_names
    assert [o.name for o in session.get_outputs()] == recipe.output_names
    for inputs, outputs in reference.cases(name):
        got = run(session, dict(zip(recipe.input_names, inputs)))
        for spec, ref in zip(recipe.outputs, outputs):
            np.testing.assert_allclose(got[spec.name], ref, rtol=rtol, atol=atol)
    assert all(c.passed for c in result.checks)


@pytest.mark.parametrize("name", recipe_params())
def test_artifact_records_provenance(name, artifacts):
    result = artifacts.export(name)
    model = onnx.load(str(result.path), load_external_data=False)
    meta = artifact.metadata(model)
    assert meta["ffkit.recipe"] == name
    assert meta["ffkit.opset"] == "17" and model.opset_import[0].version == 17
    from ffkit.recipes.checkpoint import sha256_of
    assert meta["ffkit.checkpoint_sha256"] == sha256_of(artifacts.checkpoint(name))
    assert artifact.history(model)[0]["stage"] == "export"
    parity = artifact.get(model, "parity", parse=True)
    assert all(p["passed"] for p in parity) and max(max(p["max_abs"].values()) for p in parity) < 1e-4


def _assert_dynamic(name, artifacts, dims_list):
    recipe = get_recipe(name)
    model = load_checkpoint(recipe, artifacts.checkpoint(name))
    session = make_session(artifacts.export(name).path)
    for dims in dims_list:
        feeds = recipe.sample_inputs(seed=7, **dims)
        with torch.no_grad():
            expected = model(*[torch.from_numpy(v) for v in feeds.values()])
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = run(session, feeds)
        for spec, ref in zip(recipe.outputs, expected):
            assert got[spec.name].shape == tuple(ref.shape)
            np.testing.assert_allclose(got[spec.name], ref.numpy(), rtol=recipe.tolerance.rtol, atol=recipe.tolerance.atol)


def test_arcface_dynamic_batch(artifacts):
    _assert_dynamic("arcface_iresnet18", artifacts, [{"N": 3}])


def test_retinaface_dynamic_size_and_batch(artifacts):
    _assert_dynamic("retinaface_mobilenet0.25", artifacts, [{"N": 1, "H": 480, "W": 640}, {"N": 2, "H": 320, "W": 320}])
    session = make_session(artifacts.export("retinaface_mobilenet0.25").path)
    shape = session.get_inputs()[0].shape
    assert shape[0] == "N" and shape[2:] == ["H", "W"]


@pytest.mark.slow
def test_retinaface_resnet50_dynamic_size_and_batch(artifacts):
    _assert_dynamic("retinaface_resnet50", artifacts, [{"N": 1, "H": 480, "W": 640}, {"N": 2, "H": 320, "W": 320}])


def test_loader_accepts_prefix_and_wrapper_variants(artifacts, tmp_path):
    """RetinaFace files may or may not carry ``module.`` and may be wrapped in ``{'state_dict': ...}``."""
    name = "retinaface_mobilenet0.25"
    recipe = get_recipe(name)
    sd = torch.load(artifacts.checkpoint(name), weights_only=True)
    bare = {k.removeprefix("module."): v for k, v in sd.items()}
    inputs, outputs = reference.cases(name)[0]
    for i, obj in enumerate([bare, {"state_dict": sd}, {"state_dict": bare}]):
        path = tmp_path / f"v{i}.pth"
        torch.save(obj, path)
        with torch.no_grad():
            loc = load_checkpoint(recipe, path)(torch.from_numpy(inputs[0]))[0]
        # the same weights load whatever the wrapping: equal to the reference within float32
        # reassociation (kernels differ between CPUs, so not bit for bit)
        np.testing.assert_allclose(loc.numpy(), outputs[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_gfpgan_unfused_modulation_matches_reference_with_dynamic_batch(artifacts):
    """The unfused export stays within the manifest tolerance and takes any batch."""
    name = "gfpgan_v1.4"
    result = artifacts.export(name, "unfused_modulation")
    atol, rtol = manifest_tolerance(name)
    session = make_session(result.path)
    (x,), (ref,) = reference.cases(name)[0]
    np.testing.assert_allclose(run(session, {"input": x})["image"], ref, rtol=rtol, atol=atol)
    batch = np.concatenate([x, x[:, :, ::-1].copy()])
    out = run(session, {"input": batch})["image"]
    assert out.shape == (2, 3, 512, 512)
    np.testing.assert_allclose(out[:1], ref, rtol=rtol, atol=atol)
    assert session.get_inputs()[0].shape[0] == "N"
    conv_weights_static = {n.input[1] for n in onnx.load(str(result.path)).graph.node if n.op_type == "Conv"}
    inits = {i.name for i in onnx.load(str(result.path)).graph.initializer}
    assert conv_weights_static <= inits


def test_swapper_output_depends_on_latent(artifacts):
    name = "simswap_224"
    session = make_session(artifacts.export(name).path)
    recipe = get_recipe(name)
    a = recipe.sample_inputs(seed=1)
    b = dict(a, source_latent=recipe.sample_inputs(seed=2)["source_latent"])
    diff = np.abs(run(session, a)["output"] - run(session, b)["output"]).mean()
    assert diff > 0.05


@pytest.mark.slow
def test_inswapper_output_depends_on_latent_and_emap_reads_back(artifacts, tmp_path):
    from ffkit.recipes.inswapper.emap import find_emap

    emap = np.random.default_rng(5).normal(0, 0.05, (512, 512)).astype(np.float32)
    np.save(tmp_path / "emap.npy", emap)
    result = artifacts.export("inswapper_128", emap=tmp_path / "emap.npy")
    model = onnx.load(str(result.path))
    assert model.graph.initializer[-1].name == "emap"
    from onnx import numpy_helper
    assert numpy_helper.to_array(model.graph.initializer[-1]).tobytes() == emap.tobytes()
    assert find_emap(model).tobytes() == emap.tobytes()
    assert artifact.get(model, "emap") == "stored"
    session = make_session(result.path)
    recipe = get_recipe("inswapper_128")
    a = recipe.sample_inputs(seed=1)
    b = dict(a, source=recipe.sample_inputs(seed=2)["source"])
    assert np.abs(run(session, a)["output"] - run(session, b)["output"]).mean() > 0.05


@pytest.mark.slow
def test_inswapper_without_emap_records_none(artifacts):
    model = onnx.load(str(artifacts.export("inswapper_128").path), load_external_data=False)
    assert artifact.get(model, "emap") == "none"
