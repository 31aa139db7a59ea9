"""The artifact format: what an ffkit ONNX file records about itself (``metadata_props``).

Reading and writing the files themselves is :mod:`ffkit.recipes.onnx_file`'s job.

Keys written by ffkit (all strings; JSON where structured):
``ffkit.recipe``, ``ffkit.variant`` (fp32 | fp16 | int8 ...), ``ffkit.version``,
``ffkit.checkpoint_sha256``, ``ffkit.opset``, ``ffkit.exporter``, ``ffkit.parity`` (JSON),
``ffkit.history`` (JSON list: one record per stage with its parameters, tool versions, figures).
"""

from __future__ import annotations

import json
import os
from typing import Any

import onnx

from .version import __version__

PREFIX = "ffkit."


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """All ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, **values: Any) -> None:
    """Set ``ffkit.<key>`` entries; non-strings are stored as JSON."""
    current = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        full = PREFIX + key
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if full in current:
            current[full].value = text
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = full, text


def get(model: onnx.ModelProto, key: str, default: Any = None, parse: bool = False) -> Any:
    """One ``ffkit.<key>`` value (JSON-decoded when ``parse``)."""
    value = metadata(model).get(PREFIX + key)
    if value is None:
        return default
    return json.loads(value) if parse else value


def history(model: onnx.ModelProto) -> list[dict]:
    """The stage records, oldest first."""
    return get(model, "history", [], parse=True)


def append_history(model: onnx.ModelProto, stage: str, params: dict, figures: dict | None = None,
                   tools: dict | None = None) -> None:
    """Record that ``stage`` ran with ``params`` and produced ``figures``."""
    record = {"stage": stage, "params": params, "figures": figures or {},
              "tools": {"ffkit": __version__, "onnx": onnx.__version__, **(tools or {})}}
    set_metadata(model, history=[*history(model), record])


def recipe_of(model: onnx.ModelProto, path: str | os.PathLike = "model", recipe_name: str | None = None):
    """The :class:`Recipe` of a loaded model, bound to its I/O names: the one it records, else
    ``recipe_name``, else guessed from its I/O signature (:func:`ffkit.recipes.adoption.resolve`).
    An adopted model (one that recorded none) gets ``ffkit.recipe``, ``ffkit.variant`` and
    ``ffkit.adopted`` (source file, sha256, guessed or named) set in place, so whatever is
    written from it says where it came from."""
    from .adoption import provenance, resolve
    from .onnx_file import model_info_of

    recipe, guessed = resolve(model_info_of(model, path), recipe_name)
    if guessed is not None:
        set_metadata(model, recipe=recipe.name, variant=precision(model), adopted=provenance(path, guessed))
    return recipe


# --------------------------------------------------------------------------- carried across stages

#: metadata_props keys written by tools (not by ffkit) that a stage output does not keep.
TOOL_NOISE = ("onnxsim.",)


def _consumed(graph: onnx.GraphProto, names: set[str]) -> set[str]:
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _consumed(attr.g, names)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _consumed(g, names)
    names.update(o.name for o in graph.output)
    return names


def detached_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers no node (nor subgraph, nor graph output) consumes, in stored order.

    insightface's inswapper emap is one: stored last, read as ``graph.initializer[-1]``.
    """
    used = _consumed(model.graph, set())
    return [init for init in model.graph.initializer if init.name not in used]


def carry_detached_initializers(src: onnx.ModelProto, dst: onnx.ModelProto) -> list[str]:
    """Append ``src``'s detached initializers, bit-exact and in order, at the END of ``dst``.

    Graph tools (onnxsim, onnxoptimizer, onnxruntime, the quantizer) drop or convert
    initializers no node uses; a copy of the same name already in ``dst`` (dropped, moved or
    converted to float16) is replaced. Returns the carried names.
    """
    carried = detached_initializers(src)
    names = {init.name for init in carried}
    if not names:
        return []
    keep = [init for init in dst.graph.initializer if init.name not in names]
    del dst.graph.initializer[:]
    dst.graph.initializer.extend(keep)
    for init in carried:
        dst.graph.initializer.add().CopyFrom(init)
    return [init.name for init in carried]


def carry_metadata(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    """Make ``dst``'s ``ffkit.*`` metadata exactly ``src``'s; keep ``dst``'s other entries except
    tool noise (:data:`TOOL_NOISE`, e.g. onnxsim's per-run change lists)."""
    theirs = [(p.key, p.value) for p in dst.metadata_props
              if not p.key.startswith(PREFIX) and not p.key.startswith(TOOL_NOISE)]
    ours = [(p.key, p.value) for p in src.metadata_props if p.key.startswith(PREFIX)]
    del dst.metadata_props[:]
    for key, value in [*ours, *theirs]:
        entry = dst.metadata_props.add()
        entry.key, entry.value = key, value


PRECISIONS = ("fp32", "fp16", "int8")


def precision(model: onnx.ModelProto) -> str:
    """``fp32`` | ``fp16`` | ``int8``: what the graph computes in, read from the graph itself.

    Quantize/DequantizeLinear nodes make it ``int8``; float16 initializers or values make it
    ``fp16``; otherwise ``fp32``. (The recorded ``ffkit.variant`` is not trusted for this.)
    """
    ops = {node.op_type for node in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear"}:
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer) or any(
            vi.type.tensor_type.elem_type == fp16 for vi in model.graph.value_info):
        return "fp16"
    return "fp32"


def variant_with(variant: str | None, precision_name: str) -> str:
    """The variant string with its precision part replaced: ``fp32-unfused`` -> ``int8-unfused``."""
    parts = (variant or "fp32").split("-")
    if parts[0] in PRECISIONS:
        parts[0] = precision_name
    else:
        parts.insert(0, precision_name)
    return "-".join(parts)
