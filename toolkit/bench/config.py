"""What a benchmark run is configured with: :class:`SessionConfig` (how its onnxruntime sessions
are made, mapped onto the project's one session factory by :meth:`SessionConfig.settings`;
:func:`old_runtime_config` / :func:`new_runtime_config` are the runtime's settings before and
after it chose its own spinning policy and provider defaults, for ``--compare-settings``) and
:class:`BenchSettings` (batches, dims, timing, isolation, peak and profile switches). Both are
plain data, JSON-serialised into each worker's spec and recorded in the report as ``settings``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from .machine import physical_cores

if TYPE_CHECKING:  # onnxruntime is imported only where a session is made
    from ffkit.runtime.sessions import SessionSettings


@dataclass(frozen=True)
class SessionConfig:
    """How benchmark sessions are made. ``threads``: intra-op threads (0: physical cores);
    ``level``: disable | basic | extended | all; ``spinning``: onnxruntime's
    ``session.intra_op.allow_spinning`` (None keeps its default, on); ``provider_options``: the
    parsed ``--provider-option`` values (``ffkit.runtime.provider_options.parse_provider_options``),
    recorded in the report as given, applied over the runtime's defaults; ``provider_defaults``:
    merge the runtime's provider defaults (``ffkit.runtime.provider_options``) under them (False:
    the providers get exactly ``provider_options``, as the runtime did before it had provider defaults)."""

    threads: int = 0
    level: str = "all"
    spinning: bool | None = None
    arena: bool = True
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: tuple = ()
    provider_defaults: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "SessionConfig":
        """The config of a worker spec's ``session`` dict (JSON turns ``providers`` into a list)."""
        data = dict(data or {})
        options = tuple((str(name), tuple((str(k), str(v)) for k, v in opts))
                        for name, opts in data.get("provider_options", ()))
        return cls(**{**data, "providers": tuple(data.get("providers", ("CPUExecutionProvider",))),
                      "provider_options": options})

    def settings(self, profile_prefix: str | None = None) -> "SessionSettings":
        """The :class:`ffkit.runtime.sessions.SessionSettings` bench measures with: intra-op threads
        = ``threads`` (0: physical cores), one inter-op thread, sequential execution, this level,
        spinning, arena and providers, and an onnxruntime profile when ``profile_prefix`` is given."""
        from ffkit.runtime.sessions import SessionSettings

        return SessionSettings(providers=tuple(self.providers), intra_op_threads=self.threads or physical_cores(),
                               inter_op_threads=1, level=self.level, sequential=True, spinning=self.spinning,
                               arena=self.arena, profile_prefix=profile_prefix,
                               provider_options=tuple(self.provider_options))

    def as_dict(self) -> dict:
        return asdict(self)


def old_runtime_config(cfg: SessionConfig) -> SessionConfig:
    """The runtime's old session settings (before its own spinning policy and provider defaults),
    on ``cfg``'s threads, level, arena and providers: spinning on (onnxruntime's default, written out so the session can be read back)
    and no provider options at all (neither the user's nor the runtime's defaults)."""
    return SessionConfig(**{**cfg.as_dict(), "spinning": True, "provider_options": (), "provider_defaults": False})


def new_runtime_config(cfg: SessionConfig, spinning: bool | None = None) -> SessionConfig:
    """The runtime's current session settings on ``cfg``'s threads, level, arena and providers:
    ``spinning`` as :func:`ffkit.runtime.sessions.default_spinning` decides it for one worker on
    this machine now (pass it to fix it), the user's provider options over the runtime's defaults."""
    if spinning is None:
        from ffkit.runtime.sessions import default_spinning

        spinning = default_spinning(workers=1)
    return SessionConfig(**{**cfg.as_dict(), "spinning": spinning, "provider_defaults": True})


@dataclass
class BenchSettings:
    """Everything a run depends on (recorded in the JSON)."""

    batches: tuple[int, ...] = (1, 4)
    dims: dict[str, int] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    warmup: int = 3
    repeat: int = 20
    max_seconds: float = 15.0
    min_runs: int = 5
    rounds: int = 1
    isolate: bool = True
    peak: bool = True
    local_peak: bool = True
    count_all_flops: bool = False
    profile_dir: str | None = None
    profile_runs: int = 5
    profile_top: int = 10
    #: also time every ONNX variant with :func:`old_runtime_config` (its main row then uses
    #: :func:`new_runtime_config`), in the same run: the report gets ``speedup_vs_old_settings``.
    compare_settings: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["session"] = self.session.as_dict()
        return d
