"""Helpers for the runtime tests: a tiny foreign inswapper-style ONNX and models folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ASTRONAUT = Path(__file__).resolve().parent.parent / "validation" / "assets" / "astronaut.jpg"

#: Detection settings that give a few plausible boxes with the seed-0 RetinaFace on the photo.
FAST_ARGS = ["--score-threshold", "0.8", "--max-faces", "2"]


def foreign_emap(seed: int = 3) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(512, 512)))
    return q.astype(np.float32)


def make_foreign_inswapper(path: Path, emap: np.ndarray | None = None, seed: int = 0) -> Path:
    """A tiny ONNX with insightface inswapper_128.onnx's interface and no ffkit metadata.

    Inputs ``target`` 1x3x128x128 and ``source`` 1x512, output ``output`` 1x3x128x128 =
    sigmoid(1x1 conv(target) + reshape(source @ W)), and a 512x512 emap as the LAST
    initializer, not consumed by any node (as in insightface's file).
    """
    rng = np.random.default_rng(seed)
    emap = foreign_emap() if emap is None else emap
    w_src = (rng.normal(size=(512, 3)) * 3.0).astype(np.float32)
    conv_w = (np.eye(3)[:, :, None, None] * 2.0 + rng.normal(size=(3, 3, 1, 1)) * 0.3).astype(np.float32)
    inits = [numpy_helper.from_array(w_src, "w_src"),
             numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "bias_shape"),
             numpy_helper.from_array(conv_w, "conv_w"),
             numpy_helper.from_array(np.full((3,), -1.0, np.float32), "conv_b"),
             numpy_helper.from_array(emap.astype(np.float32), "buff2fs")]
    nodes = [helper.make_node("MatMul", ["source", "w_src"], ["b"]),
             helper.make_node("Reshape", ["b", "bias_shape"], ["b4"]),
             helper.make_node("Conv", ["target", "conv_w", "conv_b"], ["c"]),
             helper.make_node("Add", ["c", "b4"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["output"])]
    graph = helper.make_graph(
        nodes, "inswapper_like",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="not-ffkit")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def link(src: Path, dst: Path) -> Path:
    """Put ``src`` at ``dst`` (symlink when possible, else copy)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copy(src, dst)
    return dst


def models_dir(artifacts, root: Path, swapper: str = "foreign", enhancer: bool = False) -> Path:
    """A folder as ``ffkit build`` fills it: ``<recipe>.fp32.onnx`` of the seed-0 exports.

    ``swapper``: ``foreign`` (tiny inswapper-style file, no metadata), ``none``, or a recipe name.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name in ("retinaface_mobilenet0.25", "arcface_iresnet18"):
        link(artifacts.export(name).path, root / f"{name}.fp32.onnx")
    if swapper == "foreign":
        make_foreign_inswapper(root / "inswapper_128.onnx")
    elif swapper == "inswapper_128":
        np.save(root.parent / "emap.npy", foreign_emap())
        link(artifacts.export("inswapper_128", emap=root.parent / "emap.npy").path, root / "inswapper_128.fp32.onnx")
    elif swapper != "none":
        link(artifacts.export(swapper).path, root / f"{swapper}.fp32.onnx")
        if swapper.startswith("simswap"):  # SimSwap consumes its own ArcFace's identities
            link(artifacts.export("simswap_arcface").path, root / "simswap_arcface.fp32.onnx")
    if enhancer:
        link(artifacts.export("gfpgan_v1.4").path, root / "gfpgan_v1.4.fp32.onnx")
    return root


def leftovers(folder: Path) -> list[str]:
    """Hidden temp files an atomic writer would leave behind on failure."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))
