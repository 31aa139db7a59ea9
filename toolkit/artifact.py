"""ONNX artifacts and what they record about themselves (``metadata_props``).

Keys written by ffkit (all strings; JSON where structured):
``ffkit.recipe``, ``ffkit.variant`` (fp32 | fp16 | int8 ...), ``ffkit.version``,
``ffkit.checkpoint_sha256``, ``ffkit.opset``, ``ffkit.exporter``, ``ffkit.parity`` (JSON),
``ffkit.history`` (JSON list: one record per stage with its parameters, tool versions, figures).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from . import __version__
from .atomic import atomic_path
from .errors import ArtifactError

PREFIX = "ffkit."


def load_onnx(path: str | os.PathLike, load_weights: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; a missing, truncated or non-ONNX file is a one-line ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as err:
        raise ArtifactError(f"{path}: not an ONNX model or truncated ({type(err).__name__})") from None
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted types on garbage
        raise ArtifactError(f"{path}: not an ONNX model or truncated ({type(err).__name__}: {err})") from None
    if not model.graph.node or not model.graph.output:
        raise ArtifactError(f"{path}: not an ONNX model or truncated (no graph)")
    return model


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically (temp file then rename); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


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


def recipe_of(model: onnx.ModelProto, path: str | os.PathLike = "model"):
    """The :class:`Recipe` an artifact records; one-line error if it records none."""
    from ffkit.recipes import get_recipe

    name = get(model, "recipe")
    if name is None:
        raise ArtifactError(f"{path}: records no ffkit recipe (not made by ffkit export); pass --recipe")
    return get_recipe(name)
