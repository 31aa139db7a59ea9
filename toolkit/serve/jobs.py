"""Video jobs of ``ffkit serve``: queued on the one :class:`~.limits.WorkQueue`, polled, fetched, expired.

A job is a swap of a video that outlives its request: ``POST /jobs`` saves the uploads into the
job's folder and submits it; it runs on a worker thread whatever the client does (a disconnect
changes nothing); the result is written atomically by the runtime into the job's folder; its
inputs are deleted when it ends, and the whole folder (result included) once ``retention_s``
has passed since then. Stopping the server cancels running jobs at their next frame (no partial
output is left) and drops queued ones; ``DELETE /jobs/{id}`` does the same for one job (status
``cancelled``), or removes a finished one with its result.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.swap_files import SwapSummary

from .limits import Ticket, WorkQueue

__all__ = ["Job", "JobStore", "JobCancelled", "STATUSES"]

log = logging.getLogger("ffkit.serve")

Status = Literal["queued", "running", "done", "failed", "cancelled"]
#: Every status a job may have, in its life's order.
STATUSES = ("queued", "running", "done", "failed", "cancelled")
Progress = Callable[[int, int], None]


class JobCancelled(Exception):
    """Raised in a running job's progress callback once the server is stopping."""


@dataclass
class Job:
    """One video swap: its folder, state, progress (``frames_done`` of ``frames_total``) and the
    request's swap options (``options``: every declared request option applying to videos)."""

    id: str
    folder: Path
    output: Path
    frames_total: int
    status: Status = "queued"
    frames_done: int = 0
    error: Optional[str] = None
    summary: Optional[dict] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    finished_at: Optional[float] = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    cancelled_by_client: bool = False

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def as_dict(self) -> dict:
        """The ``GET /jobs/{id}`` answer: id, status, progress, error, result URL, summary, options."""
        return {"id": self.id, "status": self.status,
                "progress": {"frames_done": self.frames_done, "frames_total": self.frames_total},
                "error": self.error, "result": f"/jobs/{self.id}/result" if self.status == "done" else None,
                "summary": self.summary, "options": dict(self.options)}


def _summary(summary: SwapSummary) -> dict:
    d = summary.as_dict()
    return {k: d[k] for k in ("frames", "frames_with_faces", "frames_without_faces", "faces_swapped", "fps",
                              "has_audio", "width", "height", "seconds")}


class JobStore:
    """The jobs of one server: submit, look up, expire, cancel (thread-safe).

    Args:
        queue: the worker pool jobs run on.
        retention_s: how long a finished job (and its result) is kept.
        public: turns an error message into what a client may see (no server paths).
    """

    def __init__(self, queue: WorkQueue, retention_s: float, public: Callable[[str], str] = str):
        self.queue = queue
        self.retention_s = float(retention_s)
        self.public = public
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new_job(self, folder: Path, output: Path, frames_total: int, options: Mapping[str, Any] = None) -> Job:
        """A queued job for ``folder`` swapping with ``options`` (not yet running; :meth:`submit` starts it)."""
        return Job(uuid.uuid4().hex, folder, output, int(frames_total), options=dict(options or {}))

    def submit(self, job: Job, work: Callable[[Progress], SwapSummary], ticket: Ticket) -> None:
        """Register ``job`` and queue ``work(progress)``; ``ticket`` is released when it ends."""
        with self._lock:
            self._jobs[job.id] = job
        ticket.keep()
        self.queue.submit(self._run, job, work, ticket)

    def _run(self, job: Job, work: Callable[[Progress], SwapSummary], ticket: Ticket) -> None:
        def progress(done: int, total: int) -> None:
            if job.cancel.is_set():
                raise JobCancelled()
            job.frames_done, job.frames_total = done, total or job.frames_total

        try:
            if job.cancel.is_set():
                raise JobCancelled()
            job.status = "running"
            job.summary = _summary(work(progress))
            job.status = "done"
        except JobCancelled:
            if job.cancelled_by_client:
                job.error, job.status = "cancelled by the client", "cancelled"
            else:
                job.error, job.status = "cancelled: the server is stopping", "failed"
        except FfkitError as e:
            job.error, job.status = self.public(str(e)), "failed"
        except Exception:  # noqa: BLE001 - a bug must fail the job, not the worker
            log.exception("job %s failed", job.id)
            job.error, job.status = "internal error", "failed"
        finally:
            for path in job.folder.iterdir() if job.folder.is_dir() else ():
                if path != job.output:  # inputs go now, the result after the retention time
                    path.unlink(missing_ok=True)
            job.finished_at = time.monotonic()
            ticket.release()

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def sweep(self, now: Optional[float] = None) -> int:
        """Forget jobs finished more than ``retention_s`` ago and delete their folders; how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [j for j in self._jobs.values()
                       if j.finished_at is not None and now - j.finished_at >= self.retention_s]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(expired)

    def cancel(self, job: Job) -> None:
        """Make ``job`` stop at its next frame (or not start): status ``cancelled``, no output left."""
        job.cancelled_by_client = True
        job.cancel.set()

    def remove(self, job: Job) -> None:
        """Forget a finished ``job`` now and delete its folder (result included)."""
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def cancel_all(self) -> None:
        """Make every running job stop at its next frame and every queued one not start."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()

    def counts(self) -> dict:
        """How many jobs are in each status."""
        with self._lock:
            statuses = [j.status for j in self._jobs.values()]
        return {s: statuses.count(s) for s in STATUSES}
