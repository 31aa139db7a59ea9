"""Real-ESRGAN from its ncnn form (``realesrgan-x4plus.param`` + ``.bin``, as Real-ESRGAN-ncnn-vulkan
and its Python bindings ship it) into the published ``params_ema`` layout.

The ncnn graph is RRDBNet converted from ONNX: every convolution of the network, in the forward
order, with its leaky ReLU fused (``9=2 -23310=1,0.2``); the RDB residuals as ``Eltwise`` sums
with coefficients ``0.2, 1``; the trunk sum a ``BinaryOp``; the two upsamplings ``Interp``
(nearest, 2x). So the convolutions in the ``.param``'s order ARE RRDBNet's keys in the published
order (:func:`conv_keys`): ``conv_first``, ``body.<i>.rdb<j>.conv<k>`` (k = 1..5), ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``. The mapping is checked, not assumed:
count, 3x3 kernels with stride 1 and padding 1, biases, the fused activation of every key
(``conv1``-``conv4``, ``conv_up1``, ``conv_up2``, ``conv_hr`` leaky ReLU 0.2; the rest none),
``conv_first`` reading the input and ``conv_up1``/``conv_up2`` reading nearest 2x ``Interp``
outputs. The tensor shapes are then checked by the strict load against the recipe's model.

Weights keep their stored dtype (the published file's float32, rounded to float16 by the ncnn
converter; biases float32), so the state_dict holds the ``.bin``'s values exactly.
"""

from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..ncnn import NcnnModel

__all__ = ["conv_keys", "LEAKY", "state_dict"]

#: Keys whose convolution is followed by ``leaky_relu(0.2)`` in RRDBNet's forward.
LEAKY = ("conv1", "conv2", "conv3", "conv4", "conv_up1", "conv_up2", "conv_hr")


def conv_keys(num_block: int = 23) -> list[str]:
    """RRDBNet's convolution module names in forward order (= the published key order)."""
    body = [f"body.{i}.rdb{j}.conv{k}" for i in range(num_block) for j in (1, 2, 3) for k in range(1, 6)]
    return ["conv_first", *body, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def _check(model: NcnnModel, keys: list[str]) -> None:
    path = model.param_path
    if len(model.convolutions) != len(keys):
        raise CheckpointError(f"{path}: {len(model.convolutions)} convolutions, RRDBNet has {len(keys)}: "
                              "not a Real-ESRGAN RRDBNet ncnn model")
    for key, conv in zip(keys, model.convolutions):
        layer = conv.layer
        where = f"{path}: line {layer.line}: {layer.name} (as {key})"
        geometry = (conv.weight.shape[2:], layer.get(3, 1), layer.get(13, layer.get(3, 1)), layer.get(4, 0),
                    layer.get(14, layer.get(4, 0)), layer.get(2, 1), conv.bias is not None)
        if geometry != ((3, 3), 1, 1, 1, 1, 1, True):
            raise CheckpointError(f"{where}: not a 3x3 stride-1 padding-1 convolution with bias: not RRDBNet")
        kind, params = conv.activation
        leaky = key.rsplit(".", 1)[-1] in LEAKY
        if leaky and not (kind == 2 and len(params) == 1 and abs(params[0] - 0.2) < 1e-6):
            raise CheckpointError(f"{where}: expected a fused leaky ReLU 0.2, found activation {kind} {params}")
        if not leaky and kind != 0:
            raise CheckpointError(f"{where}: expected no activation, found activation {kind} {params}")
    first, up1, up2 = model.convolutions[0].layer, model.convolutions[-4].layer, model.convolutions[-3].layer
    source = model.producer(first.bottoms[0]) if first.bottoms else None
    if source is None or source.type != "Input":
        raise CheckpointError(f"{path}: line {first.line}: the first convolution does not read the input "
                              "(a pixel-unshuffle in front? only scale 4 is read from ncnn)")
    for up in (up1, up2):
        interp = model.producer(up.bottoms[0]) if up.bottoms else None
        if (interp is None or interp.type != "Interp" or interp.get(0) != 1
                or (interp.get(1), interp.get(2)) != (2.0, 2.0)):
            raise CheckpointError(f"{path}: line {up.line}: {up.name} does not read a nearest 2x Interp: not RRDBNet")


def state_dict(model: NcnnModel, recipe) -> dict[str, np.ndarray]:
    """``{published key: array}`` for ``recipe`` (a ``realesrgan`` recipe) from an ncnn model."""
    if recipe.arch_kwargs.get("scale") != 4:
        raise CheckpointError(f"{model.param_path}: {recipe.name} is not read from ncnn files "
                              "(only realesrgan_x4plus: the scale-2 graph starts with a pixel-unshuffle)")
    keys = conv_keys(int(recipe.arch_kwargs.get("num_block", 23)))
    _check(model, keys)
    out: dict[str, np.ndarray] = {}
    for key, conv in zip(keys, model.convolutions):
        out[f"{key}.weight"] = conv.weight
        out[f"{key}.bias"] = conv.bias
    return out
