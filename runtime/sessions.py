"""onnxruntime sessions: the one session factory, provider choice, and a cache of sessions.

Every onnxruntime session ffkit makes (the runtime, the conversion stages and their checks,
``ffkit bench``) comes from :func:`create_session`, configured by a :class:`SessionSettings`
passed in. A :class:`SessionPool` is an ordinary object the caller owns and passes around (no
module state is read at inference time); it caches one session per artifact.
``InferenceSession.run`` is thread-safe, so the video worker threads share the pool's
sessions; onnxruntime releases the GIL while it computes.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from ffkit.recipes.errors import ArtifactError, FfkitError
from ffkit.recipes.onnx_file import read_model_info
from ffkit.recipes.run_limits import RunGuard

from .provider_options import ProviderOptions, provider_entries

__all__ = ["PROVIDER_ALIASES", "AUTO_ORDER", "LEVELS", "SessionSettings", "session_options", "create_session",
           "run_session", "run_bound", "check_run", "binding_device", "DEVICE_PROVIDERS", "ProviderChoice", "resolve_providers", "SessionPool", "default_threads",
           "default_spinning"]

#: ``SessionSettings.level`` names -> onnxruntime graph optimisation levels.
LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


@dataclass(frozen=True)
class SessionSettings:
    """How one onnxruntime session is made (plain data; :func:`session_options` applies it).

    Attributes:
        providers: execution providers, best first (default CPU only).
        intra_op_threads: intra-op threads (0: onnxruntime decides).
        inter_op_threads: inter-op threads (0: onnxruntime decides).
        level: graph optimisation, ``disable`` | ``basic`` | ``extended`` | ``all``.
        sequential: sequential execution mode (else onnxruntime's default).
        spinning: ``session.intra_op.allow_spinning`` (None keeps onnxruntime's default, on).
        arena: the CPU memory arena.
        profile_prefix: write an onnxruntime profile with this file prefix (None: no profile).
        optimized_model_path: save the graph onnxruntime optimised at ``level`` to this file.
        provider_options: the user's provider options
            (:func:`ffkit.runtime.provider_options.parse_provider_options`), merged over that
            module's defaults (CUDA EXHAUSTIVE conv search, TensorRT FP16 + caches) at
            :func:`create_session`.
        provider_defaults: merge those defaults in (False: the providers get exactly
            ``provider_options``, as ``ffkit bench`` measures onnxruntime's own defaults).
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    level: Literal["disable", "basic", "extended", "all"] = "all"
    sequential: bool = False
    spinning: bool | None = None
    arena: bool = True
    profile_prefix: str | None = None
    optimized_model_path: str | None = None
    provider_options: ProviderOptions = ()
    provider_defaults: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    """``onnxruntime.SessionOptions`` for ``settings``; an unknown level is a one-line FfkitError."""
    if settings.level not in LEVELS:
        raise FfkitError(f"unknown graph optimisation level {settings.level!r} (one of {', '.join(LEVELS)})")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = LEVELS[settings.level]
    opts.log_severity_level = 3
    if settings.intra_op_threads:
        opts.intra_op_num_threads = int(settings.intra_op_threads)
    if settings.inter_op_threads:
        opts.inter_op_num_threads = int(settings.inter_op_threads)
    if settings.sequential:
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = settings.arena
    if settings.spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    if settings.profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = settings.profile_prefix
    if settings.optimized_model_path:
        opts.optimized_model_filepath = str(settings.optimized_model_path)
    return opts


def create_session(model: str | os.PathLike | bytes | Any, settings: SessionSettings = SessionSettings(),
                   name: str | None = None) -> ort.InferenceSession:
    """An onnxruntime session for ``model``: an ONNX file path, serialised bytes, or an
    ``onnx.ModelProto`` (anything with ``SerializeToString``).

    ``name`` is the file the user gave, named by every error about this session (default: the
    path; for bytes or a proto, pass the file they were read from). Every run through
    :func:`run_session` is first checked by a :class:`~ffkit.recipes.run_limits.RunGuard`.

    Raises:
        ArtifactError: onnxruntime cannot load it; the one-line message names ``name``.
    """
    if isinstance(model, (str, os.PathLike)):
        read_model_info(model)   # the one reader's checks first: sizes, external data locations
        source: str | bytes = str(model)
        label = name or str(model)
    else:
        source = model if isinstance(model, bytes) else model.SerializeToString()
        label = name or "model"
    try:
        if settings.provider_defaults:
            entries = provider_entries(settings.providers, settings.provider_options, source)
        else:
            given = {provider: dict(opts) for provider, opts in settings.provider_options}
            entries = [(p, given[p]) if p in given else p for p in settings.providers]
        session = ort.InferenceSession(source, session_options(settings), providers=entries)
    except FfkitError:
        raise
    except MemoryError:
        raise ArtifactError(f"{label}: out of memory while onnxruntime loads it") from None
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ArtifactError(f"{label}: onnxruntime cannot load it ({_first_line(err)})") from None
    _LABELS[session] = label
    _GUARDS[session] = RunGuard(source, label)
    return session


#: The file (or name) each live session was made from, for messages about a failed run.
_LABELS: "weakref.WeakKeyDictionary[ort.InferenceSession, str]" = weakref.WeakKeyDictionary()
#: The run-size check of each live session (:mod:`ffkit.recipes.run_limits`).
_GUARDS: "weakref.WeakKeyDictionary[ort.InferenceSession, RunGuard]" = weakref.WeakKeyDictionary()


def check_run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> None:
    """Refuse (one line naming the file) a run of ``session`` on ``feeds`` that would make a
    tensor over :func:`~ffkit.recipes.run_limits.run_tensor_cap`; :func:`run_session` calls it.
    A session not made by :func:`create_session` is not checked."""
    try:
        guard = _GUARDS.get(session)
    except TypeError:   # a stand-in that cannot be weakly referenced
        return
    if guard is not None:
        guard.check(feeds)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    # onnxruntime prefixes its own status: "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ..."
    return line.split(" : ")[-1].strip()[:300] if line.startswith("[ONNXRuntimeError]") else line[:300]


#: Device providers whose sessions run through IO binding, and the onnxruntime device type their
#: outputs are bound to (``IOBinding.bind_output``). ROCm's memory is onnxruntime's GPU device,
#: which its Python API names "cuda".
DEVICE_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
                    "ROCMExecutionProvider": "cuda", "DmlExecutionProvider": "dml"}

#: ``(device type, device id)`` of each live session that runs bound, or None for a host session.
_BOUND: "weakref.WeakKeyDictionary[ort.InferenceSession, tuple[str, int] | None]" = weakref.WeakKeyDictionary()


def binding_device(session: ort.InferenceSession) -> tuple[str, int] | None:
    """``(onnxruntime device type, device id)`` when the provider the session really runs on first
    (``session.get_providers()[0]``) is a device provider (:data:`DEVICE_PROVIDERS`), else None
    (CPU and the other host providers: :func:`run_session` keeps the plain ``session.run``)."""
    try:
        return _BOUND[session]
    except (KeyError, TypeError):
        pass
    get = getattr(session, "get_providers", None)   # stand-ins (tests, wrappers) may not have it: CPU path
    providers = list(get()) if callable(get) else []
    device = None
    if providers and providers[0] in DEVICE_PROVIDERS:
        options = (session.get_provider_options() or {}).get(providers[0], {})
        try:
            device_id = int(options.get("device_id", 0) or 0)
        except (TypeError, ValueError):
            device_id = 0
        device = (DEVICE_PROVIDERS[providers[0]], device_id)
    try:
        _BOUND[session] = device
    except TypeError:  # pragma: no cover - an object that cannot be weakly referenced
        pass
    return device


def run_bound(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], names: Sequence[str],
              device: tuple[str, int]) -> list[np.ndarray]:
    """One run through ``session.io_binding()``: each host input copied to the session's device
    once (``bind_cpu_input``), every output in ``names`` left on ``device`` (``bind_output``) and
    copied back to the host once after the run; the arrays in ``names`` order. Lets onnxruntime
    skip its per-run staging copies on a device provider; values are those of ``session.run``."""
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for name in names:
        binding.bind_output(name, device[0], device[1])
    session.run_with_iobinding(binding)
    outs = binding.copy_outputs_to_cpu()
    binding.clear_binding_inputs()
    binding.clear_binding_outputs()
    return list(outs)


def run_session(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray],
                outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``session`` on the feeds it takes (extra keys ignored); ``{output name: array}`` for
    ``outputs`` (default: all, in the session's output order), host numpy arrays.

    On a device provider (:func:`binding_device`: CUDA, TensorRT, ROCm, DirectML first) the run
    goes through IO binding (:func:`run_bound`: inputs copied to the device once, outputs bound
    on the device and copied back once); on CPU it is the plain ``session.run``.

    Raises:
        ArtifactError: onnxruntime refused the inputs or failed while running (a model whose
            graph does not fit the inputs its recipe gives, an allocation it cannot make): one
            line naming the model's file and onnxruntime's reason.
    """
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    taken = {k: v for k, v in feeds.items() if k in wanted}
    check_run(session, taken)
    try:
        device = binding_device(session)
        outs = run_bound(session, taken, names, device) if device else session.run(names, taken)
    except MemoryError:
        raise ArtifactError(f"{_LABELS.get(session, 'model')}: out of memory while running it") from None
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        if type(err).__module__.startswith("onnxruntime"):
            raise ArtifactError(f"{_LABELS.get(session, 'model')}: onnxruntime failed to run it on "
                                f"{_shapes(feeds, wanted)} ({_first_line(err)})") from None
        raise
    return dict(zip(names, outs))


def _shapes(feeds: Mapping[str, np.ndarray], wanted: set[str]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, np.shape(v)))}" for k, v in feeds.items() if k in wanted)

#: Short names accepted by ``--providers`` (any case), and the full names themselves.
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider", "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: What ``auto`` uses, best first, when onnxruntime has it. TensorRT is left out of ``auto``:
#: it builds an engine per model and input shape (minutes), so it is used only when asked for.
AUTO_ORDER = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
              "CPUExecutionProvider")

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderChoice:
    """Providers to ask onnxruntime for (best first, CPU last) and why some were dropped."""

    providers: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def resolve_providers(requested: Sequence[str] | str | None = None,
                      available: Iterable[str] | None = None) -> ProviderChoice:
    """Turn ``--providers`` into an onnxruntime provider list.

    Args:
        requested: None, ``"auto"``, a comma-separated string or a list of names; names are
            short (``cuda``, ``tensorrt``, ``coreml``, ``directml``, ``cpu``, any case) or full
            onnxruntime names. ``auto`` = :data:`AUTO_ORDER` filtered by availability.
        available: what onnxruntime offers (default ``ort.get_available_providers()``).

    Returns:
        :class:`ProviderChoice`: the available requested providers in the given order (CUDA
        added after TensorRT when present), with CPU appended as the fallback; a warning for
        each one this onnxruntime lacks.

    Raises:
        FfkitError: a name that is no known provider.
    """
    have = list(ort.get_available_providers() if available is None else available)
    if isinstance(requested, str):
        requested = [p for p in requested.split(",") if p.strip()]
    names = [p.strip() for p in (requested or [])]
    if not names or [n.lower() for n in names] == ["auto"]:
        return ProviderChoice(tuple(p for p in AUTO_ORDER if p in have or p == CPU))
    full_names = set(PROVIDER_ALIASES.values()) | set(have)
    chosen: list[str] = []
    warnings: list[str] = []
    for name in names:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in full_names:
            raise FfkitError(f"unknown execution provider {name!r} (known: {', '.join(sorted(set(PROVIDER_ALIASES)))};"
                             f" this onnxruntime has: {', '.join(have)})")
        if full not in have:
            warnings.append(f"{full} is not available in this onnxruntime ({ort.__version__}, has "
                            f"{', '.join(have)}); falling back to CPU")
            continue
        if full not in chosen:
            chosen.append(full)
    trt, cuda = "TensorrtExecutionProvider", "CUDAExecutionProvider"
    if trt in chosen and cuda in have and cuda not in chosen:  # nodes TensorRT rejects run on CUDA, not CPU
        chosen.insert(chosen.index(trt) + 1, cuda)
    if CPU not in chosen:
        chosen.append(CPU)
    return ProviderChoice(tuple(chosen), tuple(warnings))


def default_spinning(workers: int = 1, cores: int | None = None, load: float | None = None) -> bool | None:
    """The runtime's ``SessionSettings.spinning``: False (threads sleep instead of spin-waiting)
    when more than one session runs at once (``workers > 1``) or the machine is already busy
    (1-minute load average ``> 0.5 * cores`` at start; ``load`` defaults to ``os.getloadavg()[0]``),
    else None (onnxruntime's default, spinning). Measured in docs/benchmarks.md."""
    cores = cores or os.cpu_count() or 1
    if workers > 1:
        return False
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):   # Windows has no load average
            load = 0.0
    return False if load > 0.5 * cores else None


def default_threads(workers: int = 1, cores: int | None = None) -> int:
    """Intra-op threads per session when ``workers`` frames run at once: cores // workers (>= 1)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


@dataclass
class SessionPool:
    """One InferenceSession per (model path, providers), created on first use, thread-safe.

    Attributes:
        choice: providers for every session of this pool (:func:`resolve_providers`).
        intra_op_threads: onnxruntime intra-op threads per session (0 = onnxruntime decides).
        warn: called once per distinct warning (a requested provider missing, or one that
            onnxruntime could not start for a model, so that it ran on CPU).
        provider_options: passed to every session (``SessionSettings.provider_options``).
        spinning: ``SessionSettings.spinning`` of every session (:func:`default_spinning`
            is the runtime's choice; None keeps onnxruntime's default).
    """

    choice: ProviderChoice = field(default_factory=resolve_providers)
    intra_op_threads: int = 0
    warn: Callable[[str], None] = lambda message: None
    provider_options: ProviderOptions = ()
    spinning: bool | None = None

    def __post_init__(self) -> None:
        self._sessions: dict[tuple, ort.InferenceSession] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        for message in self.choice.warnings:
            self._warn_once(message)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warn(message)

    @property
    def providers(self) -> tuple[str, ...]:
        return self.choice.providers

    def get(self, path: str | os.PathLike) -> ort.InferenceSession:
        """The session for the ONNX file at ``path`` (created once, then reused).

        Raises:
            ArtifactError: onnxruntime cannot load the file (message names it).
        """
        key = (str(Path(path).resolve()), self.providers, self.intra_op_threads)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._create(Path(path))
                self._sessions[key] = session
            return session

    def _create(self, path: Path) -> ort.InferenceSession:
        if not path.is_file():
            raise ArtifactError(f"{path}: no such file")
        threads = int(self.intra_op_threads)
        settings = SessionSettings(providers=tuple(self.providers), intra_op_threads=threads,
                                   inter_op_threads=1 if threads else 0, spinning=self.spinning,
                                   provider_options=tuple(self.provider_options))
        session = create_session(path, settings)
        primary = self.providers[0]
        if primary not in session.get_providers():
            self._warn_once(f"{primary} could not run {path.name}; it runs on "
                            f"{', '.join(session.get_providers())}")
        return session

    def loaded(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(model path, providers the session really uses)`` for every session made so far."""
        with self._lock:
            return [(key[0], tuple(s.get_providers())) for key, s in self._sessions.items()]
