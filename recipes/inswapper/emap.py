"""The inswapper ``emap``: the 512x512 matrix mapping a normalised ArcFace embedding to the latent.

insightface and FaceFusion read it as the ONNX graph's LAST initializer; ffkit stores it there
under the name ``emap`` (an initializer no node consumes), and every ffkit stage keeps it there
bit-exact (see :func:`ffkit.recipes.artifact.carry_detached_initializers`). Torch-free.

One rule finds it (:func:`choose_emap`), whether the file is read whole (an ``onnx`` proto) or
only indexed (:class:`~ffkit.recipes.onnx_file.ModelInfo`, the runtime's weightless scan).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
from onnx import numpy_helper

from ..artifact import set_metadata
from ..errors import ArtifactError, FfkitError
from ..onnx_file import ModelInfo, read_initializer, read_model_info

NAME = "emap"
SHAPE = (512, 512)
EXPORT_HINT = "export it with --emap EMAP.npy|inswapper_128.onnx"
#: One line: why an export without an emap is refused, and the explicit way to ask for one.
REFUSAL = ("inswapper_128 needs its emap: --emap EMAP.npy|inswapper_128.onnx; insightface and FaceFusion read "
           "the graph's last initializer as the emap and crash without it (--no-emap writes an emap-less "
           "artifact anyway, recorded as ffkit.emap = none)")
#: ``doc_string`` of an artifact exported with ``--no-emap``.
NO_EMAP_LABEL = ("ffkit inswapper_128 WITHOUT its emap (ffkit.emap = none): insightface and FaceFusion cannot "
                 "run this file; " + EXPORT_HINT)

Initializer = TypeVar("Initializer")  # onnx.TensorProto or onnx_file.InitializerInfo: anything with .name, .dims


def choose_emap(initializers: Sequence[Initializer]) -> Initializer | None:
    """The emap among a graph's initializers (in stored order): the one named ``emap``, else the
    last one when it is 512x512 (insightface's ``graph.initializer[-1]``), else None."""
    named = next((init for init in initializers if init.name == NAME), None)
    if named is not None:
        return named
    if len(initializers) and tuple(initializers[-1].dims) == SHAPE:
        return initializers[-1]
    return None


def find_emap(model) -> np.ndarray | None:
    """The emap of an inswapper ``onnx.ModelProto`` as a float array, or None (:func:`choose_emap`)."""
    init = choose_emap(model.graph.initializer)
    return None if init is None else numpy_helper.to_array(init)


def emap_of(info: ModelInfo) -> np.ndarray:
    """The ``512 x 512`` float32 emap of the indexed ONNX file ``info`` (read from the file alone).

    Raises:
        ArtifactError: the file holds none, or records that it was exported without one.
    """
    if info.metadata.get("ffkit.emap") == "none":
        raise ArtifactError(f"{info.path}: this inswapper artifact was exported without an emap ({EXPORT_HINT})")
    init = choose_emap(info.initializers)
    if init is None:
        raise ArtifactError(f"{info.path}: holds no emap (no {NAME!r} initializer and the last one is not "
                            f"512x512; {EXPORT_HINT})")
    emap = read_initializer(info, init)
    if emap.shape != SHAPE or not np.issubdtype(emap.dtype, np.floating):
        raise ArtifactError(f"{info.path}: emap must be a 512x512 float array, got {emap.dtype} {emap.shape}")
    return np.ascontiguousarray(emap, dtype=np.float32)


def read_emap(source: str | os.PathLike) -> np.ndarray:
    """Load an emap from a ``.npy`` file (512x512) or from an inswapper ONNX file holding one."""
    source = Path(source)
    if not source.is_file():
        raise FfkitError(f"{source}: no such emap file")
    if source.suffix.lower() == ".onnx":
        return emap_of(read_model_info(source))
    try:
        emap = np.load(source, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise FfkitError(f"{source}: not a .npy array ({type(err).__name__}: {err})") from None
    if emap.shape != SHAPE or not np.issubdtype(emap.dtype, np.floating):
        raise FfkitError(f"{source}: emap must be a 512x512 float array, got {emap.dtype} {emap.shape}")
    return np.ascontiguousarray(emap, dtype=np.float32)


def check_attach_emap(emap: str | os.PathLike | np.ndarray | None = None, no_emap: bool = False) -> None:
    """Refuse :func:`attach_emap`'s arguments before any export work: an emap is required unless
    ``no_emap`` asks explicitly for an emap-less artifact (not both).

    Raises:
        FfkitError: one line (:data:`REFUSAL` when the emap is missing).
    """
    if emap is None and not no_emap:
        raise FfkitError(REFUSAL)
    if emap is not None and no_emap:
        raise FfkitError("inswapper_128: --emap and --no-emap exclude each other")


def attach_emap(model, emap: str | os.PathLike | np.ndarray | None = None, no_emap: bool = False):
    """Finalize hook of ``inswapper_128``: append the emap as the last initializer, or, only with
    ``no_emap``, record ``ffkit.emap = none`` and label the file (``doc_string``) as emap-less.

    Raises:
        FfkitError: no emap and no ``no_emap`` (:func:`check_attach_emap`), or an unreadable emap.
    """
    check_attach_emap(emap, no_emap)
    if emap is None:
        set_metadata(model, emap="none")
        model.doc_string = NO_EMAP_LABEL
        return model
    if model.doc_string == NO_EMAP_LABEL:
        model.doc_string = ""
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
