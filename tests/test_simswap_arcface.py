"""simswap_arcface: SimSwap's netArc published as a whole pickled module, read without running it.

The seed-0 file is ``torch.save(model)`` with the classes pickled under SimSwap's names
(``models.arcface_models.ResNet/IRBlock/SEBlock``, see ``reference.pickled_as``); ffkit's loader
reads it with those classes stubbed, no ``models`` module importable.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
import reference
import torch
from cli_helpers import assert_one_line_error, ffkit
from torch import nn

from ffkit.recipes import all_recipes, artifact, get_recipe, pickled_module
from ffkit.recipes.checkpoint import load_checkpoint, read_state_dict
from ffkit.recipes.errors import CheckpointError
from ffkit.runtime.sessions import create_session, run_session

NAME = "simswap_arcface"
TOL = reference.manifest(NAME)["recommended_tolerance"]


def _assert_reproduces_seed0(model) -> float:
    """Every seed-0 case within the manifest tolerance; returns the worst max abs error."""
    worst = 0.0
    for (x,), (ref,) in reference.cases(NAME):
        with torch.no_grad():
            got = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref, rtol=TOL["rtol"], atol=TOL["atol"])
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _assert_exact_seed0(sd) -> None:
    ref = reference.seed0_fill(NAME)
    assert list(sd) == list(ref)  # the manifest's keys, in its order
    assert all(np.array_equal(sd[k].numpy(), ref[k]) and sd[k].dtype == torch.from_numpy(ref[k]).dtype for k in ref)


def test_pickled_module_reproduces_seed0_without_its_code(artifacts):
    ckpt = artifacts.checkpoint(NAME)
    assert "models" not in sys.modules and "models.arcface_models" not in sys.modules
    _assert_exact_seed0(read_state_dict(ckpt, get_recipe(NAME)))
    worst = _assert_reproduces_seed0(load_checkpoint(get_recipe(NAME), ckpt))
    assert "models" not in sys.modules
    print(f"PyTorch vs seed0 max abs {worst:.3g}")


def test_plain_state_dict_also_loads(tmp_path):
    ckpt = tmp_path / "plain.pth"
    torch.save({k: torch.from_numpy(v) for k, v in reference.seed0_fill(NAME).items()}, ckpt)
    _assert_reproduces_seed0(load_checkpoint(get_recipe(NAME), ckpt))


class ArcMarginModel(nn.Module):
    """Stands for foamliu's metric head in the pre-2023 training dict."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 512))
        self.easy_margin, self.m, self.s = False, 0.5, 64.0


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # legacy torch.save of renamed classes
def test_pre_2023_training_dict_loads(tmp_path):
    """foamliu's legacy-format ``{'model': DataParallel(ResNet), 'metric_fc', 'optimizer': SGD, ...}``."""
    model, metric = reference.seed0_model(NAME), ArcMarginModel()
    optimizer = torch.optim.SGD(metric.parameters(), lr=0.1, momentum=0.9)
    metric.weight.grad = torch.ones_like(metric.weight)
    optimizer.step()  # momentum buffers in the optimizer state, as a real training dict has
    wrapped = nn.DataParallel(model)
    names = {**reference.PICKLED_NAMES[NAME][1], "ArcMarginModel": "ArcMarginModel"}
    ckpt = tmp_path / "BEST_checkpoint.tar"
    with reference.pickled_as(nn.ModuleList([wrapped, metric]), "models", names):
        torch.save({"epoch": 20, "epochs_since_improvement": 0, "acc": 0.99, "model": wrapped,
                    "metric_fc": metric, "optimizer": optimizer}, ckpt, _use_new_zipfile_serialization=False)
    _assert_exact_seed0(read_state_dict(ckpt, get_recipe(NAME)))


def test_walk_equals_module_state_dict(tmp_path):
    """The stub walk orders and skips as ``nn.Module.state_dict``: parameters, persistent buffers,
    children; None parameters and non-persistent buffers left out."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=False)
            self.register_buffer("scratch", torch.zeros(2), persistent=False)
            self.register_buffer("scale", torch.ones(4))
            self.bn = nn.BatchNorm2d(4)

    model = nn.Sequential(Block(), nn.ReLU(), Block())
    ckpt = tmp_path / "tiny.pth"
    with reference.pickled_as(model, "tiny_models", {"Block": "Block"}):
        torch.save(model, ckpt)
    classes = ["tiny_models.Block", "torch.nn.modules.container.Sequential", "torch.nn.modules.conv.Conv2d",
               "torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.modules.activation.ReLU"]
    module = pickled_module.restricted_pickle_module(classes, lambda name: CheckpointError(name))
    root = torch.load(ckpt, weights_only=False, pickle_module=module)
    assert isinstance(root, pickled_module.PickledObject) and root.pickled_as.endswith("Sequential")
    walked = pickled_module.module_state_dict(root)
    expected = model.state_dict()
    assert list(walked) == list(expected) and "0.scratch" not in walked
    assert all(torch.equal(walked[k], v) for k, v in expected.items())


class RunsCode:
    """A pickle payload that would create ``marker`` when unpickled (``how``: os.system or eval)."""

    def __init__(self, how, marker):
        self.how, self.marker = how, str(marker)

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("how, named", [("system", "posix.system"), ("eval", "builtins.eval")])
def test_pickle_naming_another_global_is_refused_unrun(tmp_path, how, named):
    marker = tmp_path / "ran"
    ckpt = tmp_path / "evil.tar"
    torch.save({"model": RunsCode(how, marker)}, ckpt)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(ckpt, get_recipe(NAME))
    text = str(err.value)
    assert "\n" not in text and str(ckpt) in text and f"global {named}," in text and "refused" in text
    assert not marker.exists()
    result = ffkit("export", NAME, ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "evil.tar", "refused", named)
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    ckpt = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), ckpt)
    with pytest.raises(CheckpointError, match="a TorchScript archive"):
        read_state_dict(ckpt, get_recipe(NAME))


def test_every_swapper_consumes_a_produced_identity_space():
    produced = {r.identity_space for r in all_recipes() if r.role == "embedder"}
    assert None not in produced
    consumed = {r.name: r.identity_space for r in all_recipes() if r.role == "swapper"}
    assert all(space in produced for space in consumed.values()), (consumed, produced)
    assert consumed["inswapper_128"] == get_recipe("arcface_iresnet50").identity_space
    assert consumed["simswap_224"] == consumed["simswap_512"] == get_recipe(NAME).identity_space
    assert get_recipe(NAME).identity_space != get_recipe("arcface_iresnet50").identity_space


@pytest.mark.slow
def test_cli_export_passes_parity_at_two_batch_sizes(tmp_path, artifacts):
    out = tmp_path / "x.onnx"
    result = ffkit("export", NAME, artifacts.checkpoint(NAME), "-o", out)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out), load_external_data=False)
    parity = artifact.get(model, "parity", parse=True)
    assert [p["dims"] for p in parity] == [{"N": 1}, {"N": 2}] and all(p["passed"] for p in parity)
    session = create_session(out)
    assert session.get_inputs()[0].shape == ["N", 3, 112, 112]
    for (x,), (ref,) in reference.cases(NAME):  # N=1 and N=3 against the reference vectors
        got = run_session(session, {"input": x})["embedding"]
        np.testing.assert_allclose(got, ref, rtol=TOL["rtol"], atol=TOL["atol"])
    print(json.dumps({"parity_max_abs": [p["max_abs"] for p in parity], "size_bytes": out.stat().st_size,
                      "export_seconds": artifact.history(model)[0]["figures"]["seconds"]}))
