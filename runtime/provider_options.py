"""Execution-provider options: ``--provider-option PROVIDER:KEY=VALUE`` parsed, checked, and
merged with the defaults the best users set (torch-free).

Known providers and keys (onnxruntime's names; values are given to onnxruntime as strings):

* CUDA: ``device_id`` (int >= 0), ``cudnn_conv_algo_search`` (EXHAUSTIVE | HEURISTIC | DEFAULT;
  default EXHAUSTIVE), ``gpu_mem_limit`` (bytes), ``arena_extend_strategy`` (kNextPowerOfTwo |
  kSameAsRequested), ``do_copy_in_default_stream`` (bool).
* TensorRT: ``device_id``, ``trt_fp16_enable`` (default on), ``trt_engine_cache_enable`` and
  ``trt_timing_cache_enable`` (default on), ``trt_engine_cache_path`` and
  ``trt_timing_cache_path`` (default :func:`tensorrt_cache_dir`), ``trt_max_workspace_size``
  (bytes, default 2 GiB), ``trt_builder_optimization_level`` (0..5).
* OpenVINO: ``device_type`` (CPU, GPU, NPU, AUTO:..., HETERO:..., MULTI:...), ``precision`` (FP32 |
  FP16 | ACCURACY), ``num_of_threads`` (int >= 1).
* CoreML: ``ModelFormat`` (MLProgram | NeuralNetwork), ``MLComputeUnits`` (CPUOnly | CPUAndGPU |
  CPUAndNeuralEngine | ALL).
* DirectML: ``device_id``.

A user's value always wins over a default. The TensorRT cache folder is keyed by the
onnxruntime (and TensorRT, when its wheel is installed) version and the model's SHA-256, so an
engine is built once per model and library version, not at every start.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ffkit.recipes.atomic import atomic_path
from ffkit.recipes.errors import FfkitError

__all__ = ["KNOWN_OPTIONS", "ProviderOptions", "parse_provider_options", "provider_entries", "tensorrt_cache_dir",
           "model_digest", "cache_root"]

#: ``{provider: {key: value}}`` after parsing: full provider names, string values (onnxruntime's form).
ProviderOptions = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]

CUDA, TRT, OPENVINO = "CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider"
COREML, DML = "CoreMLExecutionProvider", "DmlExecutionProvider"

#: Short names accepted before the colon (any case), besides the full onnxruntime names.
ALIASES = {"cuda": CUDA, "tensorrt": TRT, "trt": TRT, "openvino": OPENVINO, "coreml": COREML,
           "directml": DML, "dml": DML}


def _int(low: int = 0, high: int | None = None) -> Callable[[str], str]:
    def check(value: str) -> str:
        n = int(value)   # ValueError -> reported by the caller
        if n < low or (high is not None and n > high):
            raise ValueError(f"{low}..{high}" if high is not None else f">= {low}")
        return str(n)
    check.__doc__ = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"
    return check


def _choice(*names: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        for name in names:
            if value.lower() == name.lower():
                return name
        raise ValueError(" | ".join(names))
    check.__doc__ = "one of " + " | ".join(names)
    return check


def _bool(value: str) -> str:
    """a boolean (1/0, true/false, on/off)"""
    low = value.lower()
    if low in ("1", "true", "on", "yes"):
        return "1"
    if low in ("0", "false", "off", "no"):
        return "0"
    raise ValueError("1/0, true/false, on/off")


def _text(value: str) -> str:
    """a non-empty text"""
    if not value:
        raise ValueError("non-empty")
    return value


def _openvino_device(value: str) -> str:
    """CPU, GPU, NPU, GPU.0 or AUTO:/HETERO:/MULTI: lists of them"""
    head = value.split(":", 1)[0].upper()
    if head in ("AUTO", "HETERO", "MULTI") and ":" in value:
        return value
    if value.split(".", 1)[0].upper() in ("CPU", "GPU", "NPU"):
        return value
    raise ValueError(_openvino_device.__doc__)


#: ``{provider: {key: checker}}``: each checker turns the user's text into onnxruntime's value or
#: raises ValueError; its docstring says what it accepts.
KNOWN_OPTIONS: dict[str, dict[str, Callable[[str], str]]] = {
    CUDA: {"device_id": _int(0), "cudnn_conv_algo_search": _choice("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
           "gpu_mem_limit": _int(1), "arena_extend_strategy": _choice("kNextPowerOfTwo", "kSameAsRequested"),
           "do_copy_in_default_stream": _bool},
    TRT: {"device_id": _int(0), "trt_fp16_enable": _bool, "trt_engine_cache_enable": _bool,
          "trt_engine_cache_path": _text, "trt_timing_cache_enable": _bool, "trt_timing_cache_path": _text,
          "trt_max_workspace_size": _int(1), "trt_builder_optimization_level": _int(0, 5)},
    OPENVINO: {"device_type": _openvino_device, "precision": _choice("FP32", "FP16", "ACCURACY"),
               "num_of_threads": _int(1)},
    COREML: {"ModelFormat": _choice("MLProgram", "NeuralNetwork"),
             "MLComputeUnits": _choice("CPUOnly", "CPUAndGPU", "CPUAndNeuralEngine", "ALL")},
    DML: {"device_id": _int(0)},
}

TWO_GIB = 2 * 1024 ** 3


def parse_provider_options(specs: Iterable[str], option: str = "--provider-option") -> ProviderOptions:
    """Parse ``PROVIDER:KEY=VALUE`` texts (repeatable; a later one for the same key wins).

    Args:
        specs: e.g. ``["cuda:device_id=1", "tensorrt:trt_fp16_enable=0"]``; providers by short
            name (cuda, tensorrt/trt, openvino, coreml, directml/dml, any case) or full name.
        option: the option's name, for messages.

    Returns:
        ``((provider full name, ((key, value), ...)), ...)`` in first-seen order, values
        normalised (booleans ``"1"``/``"0"``, choices in onnxruntime's spelling).

    Raises:
        FfkitError: one line naming the text for a bad form, an unknown provider, an unknown key
            (with the known ones) or a bad value (with what is accepted).
    """
    merged: dict[str, dict[str, str]] = {}
    for spec in specs:
        head, sep, rest = spec.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not head.strip() or not key.strip():
            raise FfkitError(f"{option} {spec!r}: expected PROVIDER:KEY=VALUE (e.g. cuda:device_id=1)")
        name = ALIASES.get(head.strip().lower(), head.strip())
        if name not in KNOWN_OPTIONS:
            raise FfkitError(f"{option} {spec!r}: unknown provider {head.strip()!r} (known: "
                             f"{', '.join(sorted(set(ALIASES)))})")
        key, value = key.strip(), value.strip()
        checks = KNOWN_OPTIONS[name]
        if key not in checks:
            raise FfkitError(f"{option} {spec!r}: {name} has no option {key!r} (known: {', '.join(checks)})")
        try:
            merged.setdefault(name, {})[key] = checks[key](value)
        except ValueError:
            raise FfkitError(f"{option} {spec!r}: bad value {value!r} for {key} (expected "
                             f"{checks[key].__doc__})") from None
    return tuple((name, tuple(opts.items())) for name, opts in merged.items())


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/ffkit`` (default ``~/.cache/ffkit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ffkit"


_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


def model_digest(model: str | os.PathLike | bytes) -> str:
    """SHA-256 (hex) of an ONNX file or of serialised bytes.

    A file's digest is cached by ``(resolved path, size, mtime_ns)`` in memory and in
    ``cache_root()/model-digests.json``, so a model is read in full once, not at every start;
    a changed file (size or mtime) is hashed again.
    """
    if isinstance(model, (bytes, bytearray)):
        return hashlib.sha256(model).hexdigest()
    path = Path(model).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _DIGEST_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
        store = cache_root() / "model-digests.json"
        try:
            saved = json.loads(store.read_text())
        except (OSError, ValueError):
            saved = {}
        entry = saved.get(key[0]) if isinstance(saved, dict) else None
        if isinstance(entry, dict) and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2]:
            digest = str(entry["sha256"])
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            saved = saved if isinstance(saved, dict) else {}
            saved[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
            try:
                store.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(store) as tmp:
                    tmp.write_text(json.dumps(saved))
            except (OSError, FfkitError):
                pass   # a read-only cache costs a re-hash next start, nothing else
        _DIGESTS[key] = digest
        return digest


def _library_versions() -> str:
    import onnxruntime as ort

    try:
        return f"ort{ort.__version__}-trt{importlib.metadata.version('tensorrt')}"
    except importlib.metadata.PackageNotFoundError:
        return f"ort{ort.__version__}"


def tensorrt_cache_dir(model: str | os.PathLike | bytes) -> Path:
    """``cache_root()/tensorrt/<onnxruntime[-tensorrt] version>/<first 16 hex of the model's SHA-256>``."""
    return cache_root() / "tensorrt" / _library_versions() / model_digest(model)[:16]


def _defaults(provider: str, model: str | os.PathLike | bytes | None) -> dict[str, str]:
    if provider == CUDA:
        return {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    if provider == TRT:
        opts = {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1", "trt_timing_cache_enable": "1",
                "trt_max_workspace_size": str(TWO_GIB)}
        if model is not None:
            folder = str(tensorrt_cache_dir(model))
            opts.update(trt_engine_cache_path=folder, trt_timing_cache_path=folder)
        return opts
    return {}


def provider_entries(providers: Sequence[str], user: ProviderOptions | Mapping[str, Mapping[str, str]] = (),
                     model: str | os.PathLike | bytes | None = None) -> list:
    """The ``providers=`` list for ``onnxruntime.InferenceSession``: a plain name for a provider
    with no options (CPU), else ``(name, {key: value})`` with the defaults of the module
    docstring overridden by ``user`` (from :func:`parse_provider_options`). ``model`` (path or
    bytes) keys the TensorRT cache folder, created here when TensorRT is in ``providers``.
    Options for a provider not in ``providers`` are ignored."""
    given = dict(user.items()) if isinstance(user, Mapping) else {name: dict(opts) for name, opts in user}
    entries: list = []
    for name in providers:
        opts = {**_defaults(name, model if name == TRT else None), **dict(given.get(name, {}))}
        if name == TRT and opts.get("trt_engine_cache_enable") == "1" and "trt_engine_cache_path" in opts:
            Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        entries.append((name, opts) if opts else name)
    return entries
