"""bisenet_faceparsing: yakhyo/face-parsing's key spelling, the dynamic H x W export, the runtime labels.

The export parity / stage checks common to every recipe are in test_export_parity.py and
test_stages.py; these cover what only this recipe has.
"""

from __future__ import annotations

import numpy as np
import onnx
import reference
import torch

from ffkit.recipes import get_recipe
from ffkit.recipes.bisenet.yakhyo import from_yakhyo
from ffkit.recipes.checkpoint import load_checkpoint, read_state_dict
from ffkit.runtime.face_parser import FaceParser
from ffkit.runtime.sessions import create_session, run_session

NAME = "bisenet_faceparsing"
TOL = reference.manifest(NAME)["recommended_tolerance"]
#: face-parsing.PyTorch's transforms.Normalize, per RGB channel, on pixel / 255.
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def zll_to_yakhyo(key: str) -> str:
    """The manifest's ``checkpoint_layout_note`` key map (zll -> yakhyo), written out as it reads,
    applied in its order."""
    key = key.replace("cp.resnet.", "fpn.backbone.", 1)
    if key.startswith("cp."):
        key = "fpn." + key[len("cp."):]
    key = key.replace(".conv_atten.", ".attention.0.").replace(".bn_atten.", ".attention.1.")
    for arm in ("arm16", "arm32"):
        key = key.replace(f"{arm}.conv.", f"{arm}.conv_block.")
    key = key.replace("ffm.convblk.", "ffm.conv_block.")
    for head in ("conv_out", "conv_out16", "conv_out32"):
        if key.startswith(f"{head}.conv."):
            key = f"{head}.conv_block." + key[len(f"{head}.conv."):]
        elif key.startswith(f"{head}.conv_out."):
            key = f"{head}.conv." + key[len(f"{head}.conv_out."):]
    conv_bn_relu = ("fpn.arm16.conv_block.", "fpn.arm32.conv_block.", "fpn.conv_head16.", "fpn.conv_head32.",
                    "fpn.conv_avg.", "ffm.conv_block.", "conv_out.conv_block.", "conv_out16.conv_block.",
                    "conv_out32.conv_block.")
    if key.startswith(conv_bn_relu):
        key = key.replace(".bn.", ".norm.")
    return key


def test_key_map_spot_checks():
    """A few keys of each kind, renamed by hand from the note."""
    pairs = {"cp.resnet.conv1.weight": "fpn.backbone.conv1.weight",
             "cp.resnet.layer2.0.downsample.1.running_var": "fpn.backbone.layer2.0.downsample.1.running_var",
             "cp.arm16.conv.bn.weight": "fpn.arm16.conv_block.norm.weight",
             "cp.arm32.conv_atten.weight": "fpn.arm32.attention.0.weight",
             "cp.arm32.bn_atten.running_mean": "fpn.arm32.attention.1.running_mean",
             "cp.conv_avg.bn.bias": "fpn.conv_avg.norm.bias",
             "ffm.convblk.conv.weight": "ffm.conv_block.conv.weight",
             "ffm.conv1.weight": "ffm.conv1.weight",
             "conv_out.conv.conv.weight": "conv_out.conv_block.conv.weight",
             "conv_out.conv.bn.num_batches_tracked": "conv_out.conv_block.norm.num_batches_tracked",
             "conv_out16.conv_out.weight": "conv_out16.conv.weight"}
    assert {k: zll_to_yakhyo(k) for k in pairs} == pairs
    assert dict(from_yakhyo({v: k for k, v in pairs.items()})) == {k: k for k in pairs}


def test_yakhyo_file_loads_strictly_and_reproduces_the_reference(tmp_path):
    """The seed-0 fill saved in yakhyo's spelling (plus its unused ImageNet fc) loads strictly
    through the recipe's adapter: the same 191 tensors, bit for bit, and the reference logits."""
    fill = reference.seed0_fill(NAME)
    yakhyo = {zll_to_yakhyo(k): torch.from_numpy(v) for k, v in fill.items()}
    assert len(yakhyo) == 191 and set(yakhyo) & set(fill) == {"ffm.conv1.weight", "ffm.conv2.weight"}
    yakhyo["fpn.backbone.fc.weight"] = torch.zeros(1000, 512)
    yakhyo["fpn.backbone.fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.pt"
    torch.save(yakhyo, path)
    recipe = get_recipe(NAME)
    read = read_state_dict(path, recipe)
    assert sorted(read) == sorted(fill)
    assert all(np.array_equal(read[k].numpy(), v) for k, v in fill.items())
    model = load_checkpoint(recipe, path)
    (x,), (ref,) = reference.cases(NAME)[1]                  # 2 x 3 x 128 x 160
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), ref, rtol=TOL["rtol"], atol=TOL["atol"])


def test_published_layout_passes_the_adapter_unchanged():
    fill = reference.seed0_fill(NAME)
    assert from_yakhyo(fill) is fill


def test_onnx_is_dynamic_at_a_third_shape(artifacts):
    """1 x 200 x 136 (neither a multiple of 32, H != W; the stage tests use 256x256 and 2x128x160)
    against PyTorch within the manifest tolerance; the three pools are GlobalAveragePool."""
    recipe = get_recipe(NAME)
    path = artifacts.export(NAME).path
    graph = onnx.load(str(path)).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["N", 3, "H", "W"]
    ops = [n.op_type for n in graph.node]
    assert ops.count("GlobalAveragePool") == 4 and "AveragePool" not in ops   # ARM16, ARM32, context, FFM
    feeds = recipe.sample_inputs(seed=3, N=1, H=200, W=136)
    with torch.no_grad():
        expected = load_checkpoint(recipe, artifacts.checkpoint(NAME))(torch.from_numpy(feeds["input"])).numpy()
    got = run_session(create_session(path), feeds)["logits"]
    assert got.shape == (1, 19, 200, 136)
    np.testing.assert_allclose(got, expected, rtol=TOL["rtol"], atol=TOL["atol"])


def _reference_crops(x: np.ndarray) -> np.ndarray:
    """The reference input tensor back to the uint8 BGR crops it (nearly) came from:
    ``rint(255 * (x * std + mean))``, RGB -> BGR (the reference image is float: off by <= 0.5/255)."""
    rgb = x.transpose(0, 2, 3, 1).astype(np.float64) * STD + MEAN
    return np.ascontiguousarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)[..., ::-1])


def test_runtime_labels_match_the_reference_argmax(artifacts):
    """FaceParser on uint8 BGR crops: its network input is (RGB/255 - mean)/std, and its labels are
    the argmax of the seed-0 reference logits wherever rounding the image to uint8 cannot flip them
    (top-1/top-2 margin above twice the largest logit change it causes)."""
    parser = FaceParser(create_session(artifacts.export(NAME).path), get_recipe(NAME), resize=False)
    for (x,), (ref,) in reference.cases(NAME):
        crops = _reference_crops(x)
        expected_input = ((crops[..., ::-1].astype(np.float64) / 255 - MEAN) / STD).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(np.concatenate([parser.network_input(c) for c in crops]), expected_input,
                                   atol=2e-6, rtol=0)
        assert np.abs(expected_input - x).max() <= 0.5 / 255 / STD.min() + 1e-6
        change = float(np.abs(parser.logits(crops) - ref).max())
        assert change < 0.01                                 # measured 8.3e-3 / 7.1e-3 (the two cases)
        labels = parser.parse(crops)
        assert labels.shape == ref.shape[:1] + ref.shape[2:] and labels.dtype == np.uint8
        top2 = np.sort(ref, axis=1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] > 2 * change
        assert decided.mean() > 0.85
        np.testing.assert_array_equal(labels[decided], ref.argmax(axis=1)[decided])
        assert (labels == ref.argmax(axis=1)).mean() > 0.99   # measured 0.9964 / 0.9962
