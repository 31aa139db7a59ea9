"""What goes into onnxruntime's quantizer: a quantizable copy of the model, pre-processed.

:func:`quantizable_input` raises old opsets to what per-channel QDQ needs and undoes
onnxruntime's fused contrib ops of an optimized artifact; :func:`preprocess` runs
``quant_pre_process`` (shape inference) without writing anything into the current directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import onnx
import onnx.version_converter

from ffkit.recipes import onnx_file
from ffkit.recipes.atomic import scratch_cwd
from ffkit.recipes.errors import ArtifactError, FfkitError

from .graph_passes import unfuse_contrib_ops

#: Per-channel QDQ (``QuantizeLinear``/``DequantizeLinear`` with an ``axis``) needs opset 13.
QDQ_OPSET = 13


def quantizable_input(src: onnx.ModelProto, in_path: str | os.PathLike, tmp: Path) -> Path:
    """The file to quantize: ``in_path`` itself, or a copy in ``tmp`` made quantizable: opset
    raised to :data:`QDQ_OPSET` for older files (e.g. opset-11 exports from elsewhere), and, for
    an optimized artifact, onnxruntime's fused ``FusedConv``/``FusedGemm`` undone (the quantizer
    has no rules for contrib ops). Raises a one-line ArtifactError for contrib ops that cannot be
    undone (``all``-level layout nodes), saying what to quantize instead."""
    opset = next((o.version for o in src.opset_import if o.domain in ("", "ai.onnx")), QDQ_OPSET)
    contrib = any(n.domain not in ("", "ai.onnx") for n in src.graph.node)
    if opset >= QDQ_OPSET and not contrib:
        return Path(in_path)
    model = onnx.ModelProto()
    model.CopyFrom(src)
    if contrib:
        foreign = sorted({f"{n.domain}:{n.op_type}" for n in src.graph.node
                          if n.domain not in ("", "ai.onnx") and not n.domain.startswith("com.microsoft")})
        if foreign:
            raise ArtifactError(f"{in_path}: holds custom ops ({', '.join(foreign[:3])}) that neither onnxruntime "
                                "nor INT8 quantization provides")
        _, left = unfuse_contrib_ops(model)
        if left:
            raise ArtifactError(f"{in_path}: holds onnxruntime-specific ops ({', '.join(left)}) that INT8 "
                                "quantization cannot take; quantize the exported or simplified FP32 file (or one "
                                "optimized with --level basic)")
    if opset < QDQ_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, QDQ_OPSET)
        except Exception as err:  # noqa: BLE001 - the converter raises assorted types
            raise ArtifactError(f"{in_path}: opset {opset} cannot be raised to {QDQ_OPSET} for INT8 "
                                f"({type(err).__name__}: {str(err)[:160]})") from None
    path = tmp / "quantizable.onnx"
    onnx_file.save_onnx(model, path)
    return path


def preprocess(in_path, out: Path) -> None:
    """onnxruntime's ``quant_pre_process`` of the file ``in_path`` into ``out``.

    ONNX shape inference first (enough for these CNNs, and 2-3x faster than onnxruntime's
    sympy-based symbolic inference, which is the fallback).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    last = None
    in_path, out = Path(in_path).resolve(), Path(out).resolve()  # before the scratch directory is entered
    for skip_symbolic in (True, False):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), quiet(), \
                    scratch_cwd():  # its symbolic inference may save temp files into the current directory
                quant_pre_process(str(in_path), str(out), skip_symbolic_shape=skip_symbolic)
            return
        except Exception as err:  # noqa: BLE001 - shape inference fails on some graphs
            last = err
    raise FfkitError(f"{in_path}: quantization pre-processing failed ({type(last).__name__}: {str(last)[:200]})")


@contextlib.contextmanager
def quiet():
    """Silence onnxruntime.quantization's logging while it runs, and the warnings of the sessions
    it opens itself (onnxruntime's default logger: errors only, back to warnings after)."""
    import onnxruntime as ort

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        logger.setLevel(level)
        ort.set_default_logger_severity(2)
