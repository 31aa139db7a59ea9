"""Each recipe: seed-0 weights in the published layout -> recipe loader -> reference vectors.

Checked in PyTorch and through the exported ONNX in onnxruntime, at the manifest tolerance, and
the dynamic axes against PyTorch on the same inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import reference
from conftest import recipe_params
from ffkit.recipes import get_recipe
from ffkit.recipes.checkpoint import load_checkpoint
from ffkit.toolkit import artifact
from ffkit.toolkit.inference import make_session, run


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
        np.testing.assert_array_equal(loc.numpy(), outputs[0])
