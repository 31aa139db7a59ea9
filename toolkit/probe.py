"""Read a model's intermediate tensors in onnxruntime, a bounded amount of memory at a time.

FP16 auto-detection (which nodes overflow or lose too much), INT8 calibration (per-tensor
ranges and histograms) and INT8 auto-exclusion (per-tensor SQNR) all need the value of many
intermediate tensors. onnxruntime keeps every graph output of a session alive for the whole
run, fetched or not, and GFPGAN's are 1.3-3.6 GB at batch 1; so :class:`Probe` splits the
wanted tensors into groups whose estimated size (ONNX shape inference at the concrete input
shape) fits ``budget_bytes`` and runs one session per group, over every input, reducing each
tensor to small figures before the next group. Small models make one group, one session.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from ffkit.recipes.atomic import scratch_cwd
from ffkit.runtime.sessions import check_run, create_session

#: Largest initializer (elements) kept with its data for shape inference; larger ones become
#: typed inputs, so inference needs no copy of the weights (shape constants are small).
_SMALL = 4096
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


def value_types(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None
                ) -> dict[str, tuple[int, tuple | None]]:
    """``{tensor: (elem_type, shape)}`` for every value ONNX shape inference can type.

    ``input_shapes`` (graph input name -> concrete shape) makes the shapes concrete; a shape
    that stays symbolic or unknown is ``None``. The weights are not copied.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = []
    for vi in graph.input:
        if vi.name in inits:
            continue
        shape = (input_shapes or {}).get(vi.name)
        if shape is None:
            inputs.append(vi)
        else:
            inputs.append(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, list(shape)))
    small = []
    for init in graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _SMALL:
            small.append(init)
        else:
            inputs.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    light = helper.make_model(helper.make_graph(graph.node, "probe", inputs, graph.output, small),
                              opset_imports=model.opset_import, ir_version=model.ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True).graph
    except Exception:  # noqa: BLE001 - inference is best effort; fall back to what the model states
        inferred = light.graph
        inferred.value_info.extend(model.graph.value_info)
    types = _collect(inferred)
    outputs = [o for n in graph.node for o in n.output if o]
    if input_shapes and any(types.get(o, (0, None))[1] is None for o in outputs):
        # ONNX inference loses shapes behind data-dependent slices (GFPGAN's SFT split);
        # onnxruntime's symbolic inference follows them at a concrete input shape
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            with scratch_cwd():  # it may save temp files into the current directory
                symbolic = SymbolicShapeInference.infer_shapes(light, auto_merge=True).graph
            types.update({k: v for k, v in _collect(symbolic).items() if v[1] is not None})
        except Exception:  # noqa: BLE001 - best effort
            pass
    return types


def _collect(graph: onnx.GraphProto) -> dict[str, tuple[int, tuple | None]]:
    types: dict[str, tuple[int, tuple | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        shape = tuple(dims) if tt.HasField("shape") and None not in dims else None
        types[vi.name] = (tt.elem_type, shape)
    return types


def float_node_outputs(model: onnx.ModelProto, types: Mapping[str, tuple[int, tuple | None]]) -> list[str]:
    """Float (32/16) outputs of the graph's nodes, in topological (node) order."""
    out, seen = [], set()
    for node in model.graph.node:
        for name in node.output:
            if name and name not in seen and types.get(name, (0, None))[0] in FLOAT_TYPES:
                seen.add(name)
                out.append(name)
    return out


class Probe:
    """The intermediate tensors ``names`` of ``model``, read group by group (see module docstring).

    ``types`` is :func:`value_types` of the model (computed if not given). The model proto is
    left unchanged; names shape inference cannot type are ignored. ``name``: the file the model
    was read from, named by any error of its sessions.
    """

    def __init__(self, model: onnx.ModelProto, names: Iterable[str],
                 types: Mapping[str, tuple[int, tuple | None]] | None = None,
                 budget_bytes: int = 1 << 30, name: str | None = None):
        self.model = model
        self.name = name
        self.types = dict(types) if types is not None else value_types(model)
        self.names = [n for n in dict.fromkeys(names) if n in self.types]
        self.budget = budget_bytes

    def estimate(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Estimated bytes of every tensor at the shapes of ``feeds``; a shape neither ONNX nor
        onnxruntime's symbolic inference resolves is taken as the largest of its node's inputs."""
        types = value_types(self.model, {k: v.shape for k, v in feeds.items()})
        sizes: dict[str, int] = {}
        for name, (elem, shape) in types.items():
            if shape is not None:
                sizes[name] = int(np.prod(shape, dtype=np.int64)) * (2 if elem == TensorProto.FLOAT16 else 4)
        for node in self.model.graph.node:
            known = [sizes[i] for i in node.input if i in sizes]
            guess = max(known, default=0) or (1 << 20)
            for out in node.output:
                sizes.setdefault(out, guess)
        return sizes

    def groups(self, feeds: Mapping[str, np.ndarray], names: Iterable[str] | None = None) -> list[list[str]]:
        """``names`` (default all) split into groups of at most ``budget_bytes`` each at ``feeds``."""
        sizes = self.estimate(feeds)
        groups, current, used = [], [], 0
        for name in (self.names if names is None else [n for n in names if n in self.types]):
            size = sizes.get(name, 1 << 20)
            if current and used + size > self.budget:
                groups.append(current)
                current, used = [], 0
            current.append(name)
            used += size
        if current:
            groups.append(current)
        return groups

    def session(self, names: list[str]):
        """An onnxruntime session of the model with ``names`` added as outputs."""
        present = {o.name for o in self.model.graph.output}
        extra = [helper.make_tensor_value_info(n, self.types[n][0], None) for n in names if n not in present]
        count = len(self.model.graph.output)
        self.model.graph.output.extend(extra)
        try:
            return create_session(self.model, name=self.name)
        finally:
            del self.model.graph.output[count:]

    def scan(self, feeds_list: Sequence[Mapping[str, np.ndarray]], reduce: Callable[[str, np.ndarray], Any],
             names: Iterable[str] | None = None, tick: Callable[[], None] | None = None) -> dict[str, list[Any]]:
        """``{name: [reduce(name, value) for each feeds]}``, in ``feeds_list`` order per tensor;
        ``tick`` is called after every run (groups x inputs runs in all)."""
        feeds_list = list(feeds_list)
        largest = max(feeds_list, key=lambda f: sum(v.size for v in f.values()))
        result: dict[str, list[Any]] = {}
        for group in self.groups(largest, names):
            session = self.session(group)
            for feeds in feeds_list:
                values = session.run(group, _feeds_for(session, feeds))
                for name, value in zip(group, values):
                    result.setdefault(name, []).append(reduce(name, value))
                del values
                if tick:
                    tick()
            del session
        return result


def _feeds_for(session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds ``session`` takes, checked against the run cap (:func:`check_run`) first."""
    wanted = {i.name for i in session.get_inputs()}
    taken = {k: v for k, v in feeds.items() if k in wanted}
    check_run(session, taken)
    return taken


def paired_scan(reference: Probe, candidate: Probe, pairs: Mapping[str, str],
                feeds_list: Sequence[Mapping[str, np.ndarray]],
                compare: Callable[[np.ndarray, np.ndarray], float]) -> dict[str, list[float]]:
    """``{candidate tensor: [compare(candidate value, reference value) for each feeds]}``.

    ``pairs`` maps a candidate model's tensor to the reference model's tensor it should equal;
    both models run group by group (the reference's grouping), pairs of different shapes skipped.
    """
    by_ref: dict[str, list[str]] = {}
    for cand, ref in pairs.items():
        if cand in candidate.types:
            by_ref.setdefault(ref, []).append(cand)
    feeds_list = list(feeds_list)
    largest = max(feeds_list, key=lambda f: sum(v.size for v in f.values()))
    result: dict[str, list[float]] = {}
    for group in reference.groups(largest, list(by_ref)):
        cands = [c for r in group for c in by_ref[r]]
        ref_session, cand_session = reference.session(group), candidate.session(cands)
        for feeds in feeds_list:
            ref_values = dict(zip(group, ref_session.run(group, _feeds_for(ref_session, feeds))))
            cand_values = dict(zip(cands, cand_session.run(cands, _feeds_for(cand_session, feeds))))
            for cand in cands:
                ref_value, value = ref_values[pairs[cand]], cand_values[cand]
                if ref_value.shape == value.shape:
                    result.setdefault(cand, []).append(compare(value, ref_value))
            del ref_values, cand_values
        del ref_session, cand_session
    return result
