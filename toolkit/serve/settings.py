"""The one settings object of ``ffkit serve``: every option, passed in, never read from globals."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ffkit.recipes.errors import FfkitError

__all__ = ["ServeSettings", "MIB", "VARIANTS"]

#: One mebibyte: ``--max-upload-mb`` counts in these.
MIB = 1024 * 1024
#: The precisions ``--variant`` and ``--compare-variant`` name.
VARIANTS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ServeSettings:
    """How ``ffkit serve`` runs (plain data; :meth:`checked` rejects nonsense in one line).

    Attributes:
        models: the models folder (what ``ffkit build`` fills); models are picked once at start.
        host, port: where to listen (port 0: any free port, printed at start).
        max_concurrency: swaps (images and video jobs) running at once.
        max_queue: admitted swaps waiting for a free worker; past running + waiting, 503.
        max_upload_mb: largest request body, MiB (checked while it streams in).
        retention_s: seconds a finished video job's result is kept.
        work_dir: where the server's temp folder is made (None: the system temp folder).
        providers: ``auto`` or a comma list, as ``ffkit swap --providers``.
        provider_options: ``PROVIDER:KEY=VALUE`` texts, as ``ffkit swap --provider-option``.
        variant: preferred precision ``fp32`` / ``fp16`` / ``int8`` (None: fp32 first).
        swapper: swapper recipe, file in ``models`` or ONNX path, as ``ffkit swap --swapper``.
        threads: onnxruntime intra-op threads per session (0: cores / max_concurrency, at
            least 1, so concurrent swaps do not oversubscribe the cores; the pixels do not
            depend on it).
        video_workers: frames of one video job processed at once (0: cores / max_concurrency, 1..4).
        upload_timeout_s: a request body that sends nothing for this long is refused (408).
        shutdown_timeout_s: on SIGTERM, how long running requests may take to finish.
        token: the bearer token every API request must send (None: none needed; see
            :mod:`.access`); never shown in ``repr``.
        insecure_no_token: listen on an address other than loopback without a token.
        compare_variant: a second variant set loaded next to the first for ``POST /compare``
            (``fp32`` / ``fp16`` / ``int8``; None: no second set).
    """

    models: Path
    host: str = "127.0.0.1"
    port: int = 8000
    max_concurrency: int = 2
    max_queue: int = 8
    max_upload_mb: float = 50.0
    retention_s: float = 3600.0
    work_dir: Optional[Path] = None
    providers: str = "auto"
    provider_options: tuple[str, ...] = ()
    variant: Optional[str] = None
    swapper: Optional[str] = None
    threads: int = 0
    video_workers: int = 0
    upload_timeout_s: float = 30.0
    shutdown_timeout_s: float = 5.0
    token: Optional[str] = field(default=None, repr=False)
    insecure_no_token: bool = False
    compare_variant: Optional[str] = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)

    @property
    def session_threads(self) -> int:
        """Intra-op threads of each session (``threads``, or the cores shared by the workers)."""
        return self.threads if self.threads > 0 else max(1, (os.cpu_count() or 1) // self.max_concurrency)

    @property
    def frame_workers(self) -> int:
        """Threads one video job uses (``video_workers``, or the automatic share of the cores)."""
        if self.video_workers > 0:
            return self.video_workers
        return max(1, min(4, (os.cpu_count() or 1) // self.max_concurrency))

    def checked(self) -> "ServeSettings":
        """``self`` if every value makes sense, else a one-line FfkitError naming the option."""
        rules = [("--max-concurrency", self.max_concurrency >= 1, "must be at least 1"),
                 ("--max-queue", self.max_queue >= 0, "must be 0 or more"),
                 ("--max-upload-mb", self.max_upload_mb > 0, "must be more than 0"),
                 ("--retention-s", self.retention_s >= 0, "must be 0 or more"),
                 ("--port", 0 <= self.port <= 65535, "must be 0..65535"),
                 ("--threads", self.threads >= 0, "must be 0 or more"),
                 ("--video-workers", self.video_workers >= 0, "must be 0 or more"),
                 ("--upload-timeout-s", self.upload_timeout_s > 0, "must be more than 0"),
                 ("--shutdown-timeout-s", self.shutdown_timeout_s >= 0, "must be 0 or more")]
        for option, ok, rule in rules:
            if not ok:
                raise FfkitError(f"{option}: {rule}")
        if self.work_dir is not None and not Path(self.work_dir).is_dir():
            raise FfkitError(f"{self.work_dir}: --work-dir must be an existing folder")
        if self.compare_variant is not None and self.compare_variant not in VARIANTS:
            raise FfkitError(f"--compare-variant: {self.compare_variant!r} is not one of {', '.join(VARIANTS)}")
        from .access import check_exposure

        check_exposure(self.host, self.token, self.insecure_no_token)
        return self
