"""Stage: INT8 static quantization (onnxruntime, QDQ format) with cached calibration.

Steps: onnxruntime's quantization pre-processing (``quant_pre_process``: shape inference and
basic graph optimisation) -> calibration statistics (cached, see :mod:`ffkit.toolkit.calibrate`)
-> ``quantize_static`` of :data:`OP_TYPES` with the ranges of the chosen method -> accuracy
against the float model on the first ``eval_samples`` calibration samples, held to the recipe's
INT8 budget (recorded; the artifact is written either way unless ``auto_exclude`` fails).

Types for the CPU: activations uint8 and weights int8 (QDQ U8S8, the layout onnxruntime's x86
kernels are fastest with); ``reduce_range`` (7-bit weights) only on CPUs without an 8-bit
dot-product instruction (VNNI / AMX), where u8 x s8 products can saturate. The choice and the
CPU flags it came from are recorded.

``auto_exclude``: when the budget is not met, measure every tensor's error the way onnxruntime's
``qdq_loss_debug`` does (SQNR of the QDQ model's tensors, before and after their QDQ, against
the float model's), charge each quantized node the SQNR lost at it and in the float nodes
downstream of it up to the next quantized ones (:func:`blame`), and keep the most-charged
nodes in float, re-measuring and doubling their number each round until the budget is met.
The kept nodes' weights stay int8 (weight-only, :func:`int8_weights`), so the mixed-precision
artifact stays small; the kept nodes and the rounds are recorded.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnx.version_converter

from ffkit.recipes import artifact, onnx_file
from ffkit.recipes.errors import FfkitError, ParityError
from ffkit.recipes.paths import sha256_of
from ffkit.recipes.spec import AccuracyBudget
from ffkit.validation import metrics
from ffkit.validation.parity import judge

from .calibrate import METHODS, cached_stats
from .hardware import VNNI_FLAGS, cpu_flags, has_vnni
from .probe import Probe, float_node_outputs, paired_scan, value_types
from .quant_prep import preprocess, quantizable_input, quiet
from .stage import SampleRuns, Stage, StageResult, finish, open_input, prepare_output, started, tool_versions
from .verify import run_onnx

#: Node types the quantizer leaves alone anyway (and that are never worth excluding).
_NOT_QUANTIZED = {"QuantizeLinear", "DequantizeLinear"}
DQ_SUFFIX = "_DequantizeLinear_Output"
#: Op types quantized by default: the weight-bearing ones (where the size and the speed are)
#: and the data-movement / activation ops between them, so int8 flows from conv to conv.
#: Element-wise arithmetic (Add/Mul/Sub/Div/Sqrt/ReduceMean: AdaIN and demodulation statistics)
#: stays float: quantizing it too cost SimSwap 1.3 dB of PSNR on the seed-0 weights, for no size gain.
OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "LeakyRelu", "Clip", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Resize", "Concat", "Pad")


@dataclass
class Int8Stage(Stage):
    """Static INT8 quantization of an FP32 artifact (QDQ, per-channel weights by default).

    Parameters:
      calib: folder of calibration images or ``.npy``/``.npz`` tensors (required unless
        ``calibration`` is given in memory).
      method: ``minmax`` | ``entropy`` | ``percentile`` (ranges from the cached statistics).
      per_channel: one weight scale per output channel.
      samples: at most this many calibration samples (files in name order).
      latents: ``.npy`` of identity latents for the swappers (else drawn unit-norm).
      auto_exclude: keep the worst nodes in float until the recipe's INT8 budget is met.
      exclude_nodes / exclude_op_types: nodes (by name) and op types kept in float.
      op_types: op types quantized; ``None`` = :data:`OP_TYPES` (``()`` = every type onnxruntime can).
      reduce_range: 7-bit weights; ``None`` chooses from the CPU (True without VNNI).
      eval_samples: calibration samples the accuracy is measured on.
      int8_weights_in_float_nodes: nodes kept in float (excluded) still STORE their conv/matmul
        weights as per-channel int8 + DequantizeLinear (weight-only), so a mixed-precision
        artifact stays small; their activations and arithmetic are float.
      cache_dir: where calibration statistics are cached (default ``<output folder>/.ffkit-calib``).
      calibration: an already loaded CalibrationSet (``ffkit build`` shares one; not recorded).
      progress: show progress bars (not recorded).
      budget: the accuracy budget to meet (None: the recipe's ``int8`` budget).
    """

    name = "int8"
    calib: Path | None = None
    method: str = "minmax"
    per_channel: bool = True
    samples: int | None = 32
    latents: Path | None = None
    auto_exclude: bool = False
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    reduce_range: bool | None = None
    eval_samples: int = 4
    int8_weights_in_float_nodes: bool = True
    cache_dir: Path | None = None
    calibration: object | None = field(default=None, metadata={"record": False}, repr=False)
    progress: bool = field(default=True, metadata={"record": False})
    budget: AccuracyBudget | None = None

    def quantized_op_types(self) -> list[str] | None:
        """The op types handed to the quantizer (None: all it supports)."""
        chosen = OP_TYPES if self.op_types is None else self.op_types
        return [t for t in chosen if t not in self.exclude_op_types] or None

    def types(self) -> dict:
        """Activation/weight types and reduce_range for this CPU, and why."""
        vnni = has_vnni()
        reduce = (not vnni) if self.reduce_range is None else self.reduce_range
        return {"format": "QDQ", "activation_type": "uint8", "weight_type": "int8", "reduce_range": reduce,
                "reduce_range_from": "explicit" if self.reduce_range is not None else
                ("cpu has " + "/".join(sorted(cpu_flags() & set(VNNI_FLAGS))) if vnni else "cpu has no VNNI/AMX"),
                "per_channel": self.per_channel}

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike,
            reference: SampleRuns | None = None, recipe: str | None = None) -> StageResult:
        """Read the FP32 artifact ``in_path``, write the INT8 one to ``out_path``."""
        from ffkit.validation.calibration import CalibrationError, load_calibration

        start = started()
        if self.method not in METHODS:
            raise FfkitError(f"unknown calibration method {self.method!r} (choose {', '.join(METHODS)})")
        out_path = prepare_output(out_path, in_path)
        src, recipe = open_input(in_path, self.name, recipe_name=recipe)
        calibration = self.calibration
        if calibration is None:
            if self.calib is None:
                raise CalibrationError(f"{out_path}: INT8 needs calibration data (--calib DIR)")
            calibration = load_calibration(recipe, self.calib, samples=self.samples, latents=self.latents)
        cache_dir = Path(self.cache_dir) if self.cache_dir else out_path.resolve().parent / ".ffkit-calib"

        with tempfile.TemporaryDirectory(dir=out_path.resolve().parent, prefix=".ffkit-int8-") as tmp:
            pre_path = Path(tmp) / "pre.onnx"
            to_quantize = quantizable_input(src, in_path, Path(tmp))
            preprocess(to_quantize, pre_path)
            pre = onnx_file.load_onnx(pre_path)
            stats, cache_path, hit = cached_stats(pre, sha256_of(to_quantize), calibration, cache_dir, self.progress,
                                                  name=str(in_path))
            ranges = stats.ranges(self.method)
            types = self.types()
            excluded = list(self.exclude_nodes) + [n.name for n in pre.graph.node
                                                   if n.op_type in self.exclude_op_types and n.name]
            eval_feeds = calibration.samples[: max(1, self.eval_samples)]
            float_runs = run_onnx(pre, eval_feeds, name=in_path)

            def attempt(exclude: list[str]):
                model = quantize(pre_path, ranges, types, exclude, Path(tmp), self.quantized_op_types())
                if self.int8_weights_in_float_nodes and exclude:
                    int8_weights(model, exclude)
                return model, judge(recipe, "int8", run_onnx(model, eval_feeds, name=f"{in_path} (quantized)"),
                                    float_runs, budget=self.budget,
                                    inputs=eval_feeds)

            dst, checks = attempt(excluded)
            auto = None
            if self.auto_exclude and not all(c.passed for c in checks):
                dst, checks, auto = auto_exclude(pre, dst, eval_feeds[:2], excluded, attempt,
                                                 self.quantized_op_types())
                excluded = auto["excluded"]
                if not all(c.passed for c in checks):
                    worst = min(checks, key=lambda c: c.passed)
                    raise ParityError(f"{out_path}: not written, INT8 misses {recipe.name}'s budget even with "
                                      f"{len(excluded)} nodes kept in float ({worst.name}: {worst.criterion}, "
                                      f"got {worst.value:.4g})")
        figures = {
            "types": types, "method": self.method, "calibration": calibration.summary(),
            "calibration_cache": {"path": str(cache_path), "hit": hit},
            "accuracy": {c.name: {**c.figures, "criterion": c.criterion, "passed": c.passed} for c in checks},
            "budget_met": all(c.passed for c in checks),
            "excluded_nodes": excluded, "size_ratio": round(dst.ByteSize() / Path(in_path).stat().st_size, 4),
        }
        if auto:
            figures["auto_exclude"] = {k: v for k, v in auto.items() if k != "excluded"}
        variant = artifact.variant_with(artifact.get(src, "variant"), "int8")
        return finish(src, dst, out_path, self, start, figures, tool_versions("onnxruntime"), variant=variant)


def quantize(pre_path: Path, ranges, types: dict, exclude: list[str], tmp: Path,
             op_types: list[str] | None = None) -> onnx.ModelProto:
    """``quantize_static`` of the pre-processed model with precomputed ``ranges`` (no calibration
    run: they go in through onnxruntime's calibration-cache file)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    cache = tmp / "ranges.json"
    save_tensors_data(ranges, cache)
    out = tmp / "quantized.onnx"
    with contextlib.redirect_stdout(io.StringIO()), quiet():
        quantize_static(str(pre_path), str(out), None, quant_format=QuantFormat.QDQ,
                        per_channel=types["per_channel"], reduce_range=types["reduce_range"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), op_types_to_quantize=op_types or None,
                        calibrate_method=ranges.calibration_method,
                        calibration_cache_path=str(cache))
    model = onnx_file.load_onnx(out)
    out.unlink()
    return model


#: Where the output-channel axis of each weight-bearing op's weight is (Gemm: see transB).
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1}


def int8_weights(model: onnx.ModelProto, nodes: list[str], min_size: int = 1024) -> list[str]:
    """Store the float weights of ``nodes`` as symmetric per-channel int8 + DequantizeLinear.

    Weight-only quantization for nodes kept in float: the file shrinks ~4x for them while their
    activations stay float. Only Conv/ConvTranspose/Gemm/MatMul weight initializers of at least
    ``min_size`` elements read by no other node are converted. Returns the converted names.
    """
    from onnx import numpy_helper

    wanted = set(nodes)
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done, dq_nodes = [], []
    for node in model.graph.node:
        if node.name not in wanted or len(node.input) < 2:
            continue
        weight = inits.get(node.input[1])
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1
        elif node.op_type in _WEIGHT_AXIS:
            axis = _WEIGHT_AXIS[node.op_type]
        else:
            continue
        if (weight is None or weight.data_type != onnx.TensorProto.FLOAT or readers.get(weight.name) != 1
                or int(np.prod(weight.dims)) < min_size):
            continue
        w = numpy_helper.to_array(weight)
        axis = axis % w.ndim
        other = tuple(i for i in range(w.ndim) if i != axis)
        scale = (np.abs(w).max(axis=other) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        base = weight.name
        model.graph.initializer.remove(weight)
        model.graph.initializer.extend([numpy_helper.from_array(q, f"{base}_int8"),
                                        numpy_helper.from_array(scale, f"{base}_int8_scale"),
                                        numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}_int8_zero")])
        dq_nodes.append(onnx.helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_int8_scale",
                                                                   f"{base}_int8_zero"], [base],
                                              name=f"{base}_int8_dequantize", axis=axis))
        done.append(base)
    for dq in reversed(dq_nodes):
        model.graph.node.insert(0, dq)
    return done


def tensor_sqnr(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, feeds_list) -> dict[str, float]:
    """SQNR (dB, worst over ``feeds_list``) of the float model's tensors as the QDQ model computes them.

    Keys are QDQ-model names: a node output ``t`` (its value before re-quantization) and, where
    ``t`` is quantized, ``t`` + ``_DequantizeLinear_Output`` (what consumers read), matched with
    float ``t`` as onnxruntime's ``qdq_loss_debug.create_activation_matching`` does.
    """
    float_types = value_types(float_model)
    qdq_types = value_types(qdq_model)
    base = [i.name for i in float_model.graph.input] + float_node_outputs(float_model, float_types)
    pairs = {}
    for name in base:
        for qname in (name, name + DQ_SUFFIX):
            if qname in qdq_types:
                pairs[qname] = name
    found = paired_scan(Probe(float_model, base, float_types, budget_bytes=512 << 20),
                        Probe(qdq_model, list(pairs), qdq_types, budget_bytes=512 << 20),
                        pairs, feeds_list, metrics.sqnr)
    return {name: min(values) for name, values in found.items()}


def blame(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, sq: dict[str, float],
          op_types: list[str] | None = None) -> dict[str, float]:
    """dB of SQNR each quantized node is responsible for.

    A node's loss is the drop from the worst SQNR it reads to the worst it writes (and, for a
    quantized node, the drop its output's own QDQ adds). A quantized node is charged its own
    loss plus the losses of the float nodes downstream of it up to the next quantized nodes
    (shared equally when several feed one): the cancellation in ``x - mean(x)`` of an
    instance norm shows up there, after the conv whose quantized output caused it.
    """
    producers = {o: n for n in qdq_model.graph.node for o in n.output}
    quantized = {n.name for n in qdq_model.graph.node if n.name and n.op_type not in _NOT_QUANTIZED
                 and (not op_types or n.op_type in op_types)
                 and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)}

    def read(t):
        return sq.get(t + DQ_SUFFIX, sq.get(t, math.inf))

    owners: dict[str, set[str]] = {}
    charged: dict[str, float] = {n: 0.0 for n in quantized}
    for node in float_model.graph.node:
        ins = [read(i) for i in node.input if i in sq or i + DQ_SUFFIX in sq]
        outs = [sq[o] for o in node.output if o in sq]
        if not outs:
            continue
        loss = max(0.0, min(ins, default=math.inf) - min(outs)) if ins and math.isfinite(min(ins)) else 0.0
        if node.name in quantized:
            loss += max(0.0, min(outs) - min(read(o) for o in node.output if o in sq))
            charged[node.name] += loss
            for o in node.output:
                owners[o] = {node.name}
            continue
        mine = set().union(*(owners.get(i, set()) for i in node.input))
        for o in node.output:
            owners[o] = mine
        for owner in mine:
            charged[owner] += loss / len(mine)
    return charged


def blame_ranking(in_path: str | os.PathLike, qdq_path: str | os.PathLike, feeds_list,
                  op_types: list[str] | None = None) -> list[tuple[str, float]]:
    """The quantized nodes of the INT8 artifact at ``qdq_path`` (made by :class:`Int8Stage` from
    the FP32 ``in_path``), most-blamed first: ``[(node name, dB)]`` (:func:`blame` of
    :func:`tensor_sqnr` on ``feeds_list``). The names are those ``exclude_nodes`` takes; a caller
    ranking the float fallback by another measure starts from this order."""
    src = onnx_file.load_onnx(in_path)
    with tempfile.TemporaryDirectory(prefix=".ffkit-rank-") as tmp:
        pre_path = Path(tmp) / "pre.onnx"
        preprocess(quantizable_input(src, in_path, Path(tmp)), pre_path)
        pre = onnx_file.load_onnx(pre_path)
    qdq = onnx_file.load_onnx(qdq_path)
    charged = blame(pre, qdq, tensor_sqnr(pre, qdq, feeds_list), op_types or list(OP_TYPES))
    return sorted(charged.items(), key=lambda item: (-item[1], item[0]))


def auto_exclude(float_model, qdq_model, feeds_list, excluded: list[str], attempt: Callable,
                 op_types: list[str] | None = None, rounds: int = 6, first: float = 0.05):
    """Keep the most-blamed quantized nodes in float until the budget holds.

    Each round measures the current QDQ model (:func:`tensor_sqnr`, :func:`blame`), keeps the
    ``k`` most-blamed nodes in float (``k`` = ``first`` of the quantized nodes, doubling every
    round) and re-quantizes from the cached ranges. Returns ``(model, checks, record)``;
    ``record["excluded"]`` is the final exclusion list.
    """
    chosen, model, checks, trials = list(excluded), qdq_model, None, []
    step = None
    for _ in range(rounds):
        charged = blame(float_model, model, tensor_sqnr(float_model, model, feeds_list), op_types)
        ranked = sorted((n for n in charged if n not in chosen), key=lambda n: -charged[n])
        if not ranked:
            break
        step = step * 2 if step else max(1, math.ceil(first * len(charged)))
        picked = ranked[:step]
        chosen = [*chosen, *picked]
        model, checks = attempt(chosen)
        trials.append({"kept_in_float": len(chosen) - len(excluded), "passed": all(c.passed for c in checks),
                       "figures": {c.name: round(c.value, 4) for c in checks},
                       "picked": {n: round(charged[n], 2) for n in picked}})
        if all(c.passed for c in checks):
            break
    if checks is None:
        model, checks = attempt(chosen)
    return model, checks, {"excluded": chosen, "trials": trials}
