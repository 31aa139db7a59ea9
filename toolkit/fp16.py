"""Stage: float16 weights and arithmetic (onnxconverter-common), float32 inputs and outputs kept.

Which nodes stay in float32 is found by checking, not by a fixed guess:

1. op types always kept: onnxconverter-common's ``DEFAULT_OP_BLOCK_LIST`` (ops with no
   float16 implementation), the recipe's ``fp16_keep_float32`` and the caller's
   ``keep_float32`` (which extends that default, never replaces it);
2. overflow: the FP32 model is run on the recipe's sample input and every node whose output
   reaches ``headroom x 65504`` (float16's largest finite value) is kept;
3. no kernel: an op type the CPU provider cannot load in float16 is kept;
4. loss: if the converted model misses the recipe's FP16 budget, the FP32 and FP16 models'
   intermediate tensors are compared and the nodes that amplify the error most (relative L2
   of the output over the worst of the inputs) are kept, more every round, until it is met.

Every kept node and why is recorded in the history. The result runs on the CPU provider
(onnxruntime casts around float16 ops its CPU kernels lack); it is half the size. Note that
the CPU provider computes most float16 ops in float32 behind those casts, so a CPU run shows
the weight rounding but not an arithmetic overflow (GPU providers would): step 2 therefore
reads the FP32 activations rather than trusting the FP16 model's CPU outputs. The accuracy is
measured at the recipe's sample shape (for a detector also on the bundled photo: its budget is
judged on real faces); ``ffkit verify`` checks both shapes.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ffkit.recipes import artifact
from ffkit.recipes.errors import ArtifactError, ParityError
from ffkit.recipes.spec import AccuracyBudget
from ffkit.runtime.sessions import create_session, run_session
from ffkit.validation import metrics
from ffkit.validation.face_metrics import photo_inputs
from ffkit.validation.parity import judge

from .probe import Probe, float_node_outputs, paired_scan, value_types
from .stage import SampleRuns, Stage, StageResult, finish, open_input, prepare_output, started, tool_versions
from .verify import run_onnx

FP16_MAX = 65504.0
#: Relative error below which a node's output is just float16 rounding (2 ulp) and not a loss.
LOSS_FLOOR = 1e-3


@dataclass
class Fp16Stage(Stage):
    """Float16 conversion of an FP32 artifact with the breaking nodes kept in float32.

    Parameters:
      keep_float32: op types kept in float32 IN ADDITION to the defaults (see module docstring).
      keep_nodes: node names kept in float32 in addition to the detected ones.
      auto: detect overflowing and lossy nodes by running the model (steps 2 and 4).
      headroom: fraction of 65504 an FP32 activation may reach before its node is kept.
      max_rounds: rounds of step 4.
      per_round: fraction of the converted nodes kept in the first round of step 4 (at least one),
        doubled every round.
      budget: the accuracy budget to meet (None: the recipe's ``fp16`` budget).
    """

    name = "fp16"
    keep_float32: tuple[str, ...] = ()
    keep_nodes: tuple[str, ...] = ()
    auto: bool = True
    headroom: float = 0.5
    max_rounds: int = 4
    per_round: float = 0.03
    budget: AccuracyBudget | None = None

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike,
            reference: SampleRuns | None = None, recipe: str | None = None) -> StageResult:
        """Read the FP32 artifact ``in_path``, write the FP16 one to ``out_path``."""
        from onnxconverter_common import float16

        start = started()
        out_path = prepare_output(out_path, in_path)
        src, recipe = open_input(in_path, self.name, recipe_name=recipe)
        _name_nodes(src)
        op_block = sorted({*float16.DEFAULT_OP_BLOCK_LIST, *recipe.fp16_keep_float32, *self.keep_float32})
        kept: dict[str, str] = {n: "asked" for n in self.keep_nodes}
        # accuracy at the sample shape (the dynamic axes are the FP32 stages' and verify's business),
        # and for a detector on the bundled photo too (its budget is judged on real faces)
        samples = [recipe.sample_inputs(seed=0, **recipe.sample_dims), *photo_inputs(recipe)]
        if self.auto:
            outputs: dict[str, np.ndarray] = {}
            for node, peak in overflowing_nodes(src, samples[0], self.headroom * FP16_MAX, outputs,
                                                name=str(in_path)).items():
                kept.setdefault(node, f"overflow: |x| reaches {peak:.3g}")
            reference = [outputs, *run_onnx(src, samples[1:], name=in_path)]
        else:
            reference = run_onnx(src, samples, name=in_path)

        dst, session, no_kernel = convert_loadable(src, op_block, list(kept), name=str(in_path))
        op_block = sorted({*op_block, *no_kernel})
        checks = judge(recipe, "fp16", [run_session(session, feeds) for feeds in samples], reference,
                       budget=self.budget, inputs=samples)
        rounds = []
        while self.auto and not all(c.passed for c in checks) and len(rounds) < self.max_rounds:
            converted = [n.name for n in src.graph.node if n.name not in kept and n.op_type not in op_block]
            count = max(1, math.ceil(self.per_round * len(converted))) * 2 ** len(rounds)
            worst = lossy_nodes(src, dst, samples[0], count, kept, name=str(in_path))
            if not worst:
                break
            for node, gain in worst.items():
                kept[node] = f"loss: amplifies the FP16 error x{gain:.3g}"
            dst, session, more = convert_loadable(src, op_block, list(kept), name=str(in_path))
            op_block = sorted({*op_block, *more})
            checks = judge(recipe, "fp16", [run_session(session, feeds) for feeds in samples], reference,
                       budget=self.budget, inputs=samples)
            rounds.append({"kept": list(worst), "figures": {c.name: round(c.value, 4) for c in checks}})
        passed = all(c.passed for c in checks)
        if self.auto and not passed:
            worst = next(c for c in checks if not c.passed)
            raise ParityError(f"{out_path}: not written, FP16 misses {recipe.name}'s budget even with {len(kept)} "
                              f"nodes in float32 ({worst.name}: {worst.criterion}, got {worst.value:.4g})")
        figures = {"op_types_kept": op_block, "no_fp16_kernel": no_kernel, "nodes_kept": kept,
                   "op_types_beyond_converter_default": sorted(set(op_block) - set(float16.DEFAULT_OP_BLOCK_LIST)),
                   "loss_rounds": rounds, "budget_met": passed,
                   "size_ratio": round(dst.ByteSize() / Path(in_path).stat().st_size, 4),
                   "accuracy": {c.name: {**c.figures, "criterion": c.criterion, "passed": c.passed} for c in checks}}
        variant = artifact.variant_with(artifact.get(src, "variant"), "fp16")
        return finish(src, dst, out_path, self, start, figures, tool_versions("onnxconverter-common", "onnxruntime"),
                      variant=variant)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (nodes are kept in float32 by name)."""
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_ffkit_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def overflowing_nodes(model: onnx.ModelProto, feeds, limit: float,
                      outputs: dict[str, np.ndarray] | None = None, name: str | None = None) -> dict[str, float]:
    """``{node: max |output|}`` for nodes whose FP32 output on ``feeds`` reaches ``limit`` (or is
    not finite). ``outputs``, if given, receives the model's graph outputs from the same run;
    ``name``: the file the model was read from, for messages."""
    types = value_types(model)
    probe = Probe(model, float_node_outputs(model, types), types, name=name)
    producer = {o: n.name for n in model.graph.node for o in n.output}
    graph_outputs = {o.name for o in model.graph.output}

    def peak_of(name, value):
        if outputs is not None and name in graph_outputs:
            outputs[name] = value
        return float(np.max(np.abs(value))) if value.size else 0.0

    peaks = probe.scan([feeds], peak_of)
    found: dict[str, float] = {}
    for name, (peak,) in peaks.items():
        if not math.isfinite(peak) or peak >= limit:
            node = producer[name]
            found[node] = max(found.get(node, 0.0), peak)
    return found


def convert(model: onnx.ModelProto, op_block: list[str], node_block: list[str]) -> onnx.ModelProto:
    """onnxconverter-common float16 with float32 graph inputs/outputs (see :func:`_float32_outputs`)."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dst = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(op_block),
                                               node_block_list=list(node_block), max_finite_val=FP16_MAX)
    _float32_outputs(dst)
    return dst


def _float32_outputs(model: onnx.ModelProto) -> None:
    """Repair graph outputs the converter left in float16 (it does so behind a kept last node:
    kept node -> Cast to float16 -> output, which overflows what the node kept in float32)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        tt = out.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT16:
            continue
        tt.elem_type = TensorProto.FLOAT
        cast = producers.get(out.name)
        to = next((a.i for a in cast.attribute if a.name == "to"), None) if cast is not None else None
        if cast is not None and cast.op_type == "Cast" and to == TensorProto.FLOAT16:
            for attr in cast.attribute:     # float32 -> float16 -> output becomes float32 -> output
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT
            continue
        inner = f"{out.name}_ffkit_fp16"
        for node in model.graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        model.graph.node.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT,
                                                 name=f"{out.name}_ffkit_cast_fp32"))


_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")


def convert_loadable(model: onnx.ModelProto, op_block: list[str], node_block: list[str], tries: int = 8,
                     name: str = "model"):
    """:func:`convert`, adding op types the CPU provider cannot load in float16 to the block list
    until the session loads; returns ``(model, its CPU session, op types added)``. ``name``: the
    file ``model`` was read from, named by any error."""
    added: list[str] = []
    label = f"{name} (converted to FP16)"
    for _ in range(tries):
        dst = convert(model, [*op_block, *added], node_block)
        try:
            return dst, create_session(dst, name=label), added
        except ArtifactError as err:
            found = _NO_KERNEL.search(str(err))
            if not found or found.group(1) in added:
                raise
            added.append(found.group(1))
    raise ArtifactError(f"{label}: does not load on the CPU provider (kept {added} in float32)")


def lossy_nodes(src: onnx.ModelProto, dst: onnx.ModelProto, feeds, count: int, kept,
                name: str | None = None) -> dict[str, float]:
    """The ``count`` converted nodes that amplify the FP16 error most: ``{node: gain}``.

    gain = rel. L2 error of the node's output / max(rel. L2 error of its float inputs, 1e-3),
    errors of the FP16 model's tensors against the FP32 model's on ``feeds``; outputs within
    :data:`LOSS_FLOOR` are not candidates.
    """
    types = value_types(src)
    names = float_node_outputs(src, types)
    found = paired_scan(Probe(src, names, types, budget_bytes=512 << 20, name=name),
                        Probe(dst, names, budget_bytes=512 << 20, name=name and f"{name} (converted to FP16)"),
                        {n: n for n in names}, [feeds], metrics.rel_l2)
    err = {name: values[0] for name, values in found.items()}
    gains = {}
    for node in src.graph.node:
        if node.name in kept:
            continue
        outs = [err[o] for o in node.output if o in err]
        ins = [err[i] for i in node.input if i in err]
        if not outs:
            continue
        out_err = max(outs)
        if out_err < LOSS_FLOOR and math.isfinite(out_err):
            continue
        gains[node.name] = out_err / max(max(ins, default=0.0), 1e-3) if math.isfinite(out_err) else math.inf
    ranked = sorted(gains, key=lambda n: -gains[n])[:count]
    return {n: gains[n] for n in ranked}
