"""The inswapper ``emap``: the 512x512 matrix mapping a normalised ArcFace embedding to the latent.

insightface and FaceFusion read it as the ONNX graph's LAST initializer; ffkit stores it there
under the name ``emap`` (an initializer no node consumes), and every ffkit stage keeps it there
bit-exact (see :func:`ffkit.toolkit.artifact.carry_detached_initializers`). Torch-free.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ffkit.toolkit.errors import FfkitError

NAME = "emap"
SHAPE = (512, 512)


def find_emap(model: onnx.ModelProto) -> np.ndarray | None:
    """The emap of an inswapper ONNX: the initializer named ``emap``, else a 512x512 last initializer."""
    inits = model.graph.initializer
    for init in inits:
        if init.name == NAME:
            return numpy_helper.to_array(init)
    if len(inits) and tuple(inits[-1].dims) == SHAPE:
        return numpy_helper.to_array(inits[-1])
    return None


def read_emap(source: str | Path) -> np.ndarray:
    """Load an emap from a ``.npy`` file (512x512) or from an inswapper ONNX file holding one."""
    source = Path(source)
    if not source.is_file():
        raise FfkitError(f"{source}: no such emap file")
    if source.suffix.lower() == ".onnx":
        from ffkit.toolkit.artifact import load_onnx

        emap = find_emap(load_onnx(source))
        if emap is None:
            raise FfkitError(f"{source}: holds no emap (no 'emap' initializer and the last one is not 512x512)")
    else:
        try:
            emap = np.load(source, allow_pickle=False)
        except Exception as err:  # noqa: BLE001
            raise FfkitError(f"{source}: not a .npy array ({type(err).__name__}: {err})") from None
    if emap.shape != SHAPE or not np.issubdtype(emap.dtype, np.floating):
        raise FfkitError(f"{source}: emap must be a 512x512 float array, got {emap.dtype} {emap.shape}")
    return np.ascontiguousarray(emap, dtype=np.float32)


def attach_emap(model: onnx.ModelProto, emap: str | Path | np.ndarray | None = None) -> onnx.ModelProto:
    """Finalize hook of ``inswapper_128``: append the emap as the last initializer (or record none)."""
    from ffkit.toolkit.artifact import set_metadata

    if emap is None:
        set_metadata(model, emap="none")
        return model
    matrix = emap if isinstance(emap, np.ndarray) else read_emap(emap)
    keep = [i for i in model.graph.initializer if i.name != NAME]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(matrix, np.float32), NAME))
    set_metadata(model, emap="stored", emap_sha256=hashlib.sha256(matrix.astype(np.float32).tobytes()).hexdigest())
    return model


def latent_from_embedding(embedding: np.ndarray, emap: np.ndarray) -> np.ndarray:
    """insightface INSwapper: ``l = normed(embedding) @ emap; l / ||l||`` -> ``N x 512`` float32."""
    e = np.asarray(embedding, dtype=np.float32).reshape(-1, 512)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    latent = e @ emap
    return (latent / np.linalg.norm(latent, axis=1, keepdims=True)).astype(np.float32)
