"""Everything one ``ffkit serve`` process owns, made at start and released at stop.

:class:`Service` holds the settings, the :class:`~.engine.SwapEngine` (models and the one
SessionPool; a second one, ``compare_engine``, with ``--compare-variant``), the
:class:`~.limits.WorkQueue`, the :class:`~.jobs.JobStore` and the
:class:`~.uploads.WorkDir`. :meth:`Service.begin_stop` (on SIGTERM, before the HTTP side drains)
refuses new work and cancels running jobs; :meth:`Service.close` waits for the workers and
removes the temp folder (idempotent).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from functools import partial
from typing import Optional

from ffkit.recipes.version import __version__

from .engine import SwapEngine
from .errors import public_message
from .jobs import JobStore
from .limits import WorkQueue
from .settings import ServeSettings
from .uploads import WorkDir

__all__ = ["Service", "rss_bytes"]

log = logging.getLogger("ffkit.serve")


def rss_bytes(pid: Optional[int] = None) -> Optional[int]:
    """Resident memory of process ``pid`` (default this one) from ``/proc/<pid>/status``
    ``VmRSS``, in bytes; None where there is no /proc."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Service:
    """The state of one server (see the module docstring)."""

    def __init__(self, settings: ServeSettings, engine: Optional[SwapEngine] = None):
        self.settings = settings.checked()
        self.engine = engine if engine is not None else SwapEngine(settings, warn=lambda m: log.warning("%s", m))
        self.compare_engine: Optional[SwapEngine] = None
        if settings.compare_variant is not None:
            self.compare_engine = SwapEngine(replace(settings, variant=settings.compare_variant),
                                             warn=lambda m: log.warning("%s", m))
        self.work = WorkDir(settings.work_dir)
        self.queue = WorkQueue(settings.max_concurrency, settings.max_queue)
        self.jobs = JobStore(self.queue, settings.retention_s, partial(public_message, work_root=self.work.root))
        self._closed = False
        self._lock = threading.Lock()

    def public(self, message: str) -> str:
        """``message`` as a client may see it (no server temp paths)."""
        return public_message(message, self.work.root)

    def health(self) -> dict:
        """The ``GET /health`` answer: models by role (file, recipe, variant, providers of the
        session, sha256), the second variant set's (``compare``, or None), whether API requests
        need a token (``auth``), version, limits, queue and job counts, this process's pid, RSS
        and CPU seconds."""
        s = self.settings
        rss = rss_bytes()
        compare = None
        if self.compare_engine is not None:
            compare = {"variant": s.compare_variant, "models": self.compare_engine.describe()}
        return {"status": "stopping" if self.queue.stopping else "ok", "version": __version__,
                "models": self.engine.describe(), "variant": s.variant or "fp32", "compare": compare,
                "auth": {"token_required": bool(s.token)},
                "limits": {"max_concurrency": s.max_concurrency, "max_queue": s.max_queue,
                           "max_upload_mb": s.max_upload_mb, "retention_s": s.retention_s},
                "queue": self.queue.stats(), "jobs": self.jobs.counts(),
                "process": {"pid": os.getpid(), "rss_mb": round(rss / 2**20, 1) if rss else None,
                            "cpu_s": round(sum(os.times()[:2]), 2)}}

    def begin_stop(self) -> None:
        """Refuse new work, cancel running jobs at their next frame (safe from a signal handler)."""
        self.queue.stop()
        self.jobs.cancel_all()

    def close(self) -> None:
        """:meth:`begin_stop`, wait for the workers, remove the temp folder (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.begin_stop()
        self.queue.shutdown()
        self.work.remove()
        log.info("stopped; removed %s", self.work.root)
