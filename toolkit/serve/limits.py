"""The limits of ``ffkit serve``: request body size, and how much work is admitted.

:class:`UploadLimit` refuses a body over the limit while it streams in: a ``Content-Length`` over
it is answered 413 before a byte of the body is read, and a chunked (or lying) body is counted
as it arrives and cut off with 413 once it passes the limit. A body that stalls is answered 408.

:class:`WorkQueue` is the one bounded worker pool: ``max_running`` swaps run at once (threads
sharing the one SessionPool) and ``max_waiting`` more may be admitted; :class:`Admission` takes a
:class:`Ticket` for each ``POST /swap``, ``/compare`` and ``/jobs`` before its body is read and answers 503
with ``Retry-After`` when none is left. A ticket is held until the answer is sent, or, for a
video job, until the job ends.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from fastapi import HTTPException

from .errors import ServerStopping, error_response

__all__ = ["UploadLimit", "WorkQueue", "Ticket", "Admission", "TICKET_KEY", "ADMITTED_PATHS"]

#: Where :class:`Admission` leaves the request's ticket in the ASGI scope.
TICKET_KEY = "ffkit.ticket"
#: The requests that start work.
ADMITTED_PATHS = ("/swap", "/compare", "/jobs")


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MiB"


class UploadLimit:
    """ASGI middleware: at most ``max_bytes`` of request body, and no gap longer than
    ``idle_timeout_s`` while it arrives (413 / 408 as JSON errors)."""

    def __init__(self, app, max_bytes: int, idle_timeout_s: float):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.idle_timeout_s = float(idle_timeout_s)

    def _too_large(self, size: str) -> str:
        return f"request body {size} is over the upload limit of {_mib(self.max_bytes)} (--max-upload-mb)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await error_response(400, "Content-Length is not a number")(scope, receive, send)
            if declared > self.max_bytes:  # refused at once, the body is never read
                return await error_response(413, self._too_large(f"of {_mib(declared)}"))(scope, receive, send)
        received = 0
        complete = False

        async def limited_receive():
            nonlocal received, complete
            if complete:  # after the body: a wait for the disconnect, unbounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"request body stalled: nothing came for {self.idle_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._too_large(f"passed {_mib(self.max_bytes)} while arriving"))
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


class Ticket:
    """One admitted piece of work; :meth:`release` (idempotent) gives its place back."""

    def __init__(self, queue: "WorkQueue"):
        self._queue = queue
        self._released = False
        self.kept = False
        self.since = time.monotonic()

    def keep(self) -> None:
        """The work outlives the request (a video job): its holder releases the ticket."""
        self.kept = True

    def release(self) -> None:
        self._queue._give_back(self)


class WorkQueue:
    """``max_running`` worker threads and room for ``max_waiting`` more admitted swaps."""

    def __init__(self, max_running: int, max_waiting: int):
        self.max_running = int(max_running)
        self.capacity = int(max_running) + int(max_waiting)
        self._executor = ThreadPoolExecutor(max_workers=self.max_running, thread_name_prefix="ffkit-serve")
        self._lock = threading.Lock()
        self._out = 0
        self._running = 0
        self._mean_s: Optional[float] = None
        self.stopping = False

    def admit(self) -> Optional[Ticket]:
        """A ticket, or None when ``capacity`` tickets are out or the server is stopping."""
        with self._lock:
            if self.stopping or self._out >= self.capacity:
                return None
            self._out += 1
            return Ticket(self)

    def _give_back(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._out -= 1
            held = time.monotonic() - ticket.since
            self._mean_s = held if self._mean_s is None else 0.8 * self._mean_s + 0.2 * held

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the mean time a ticket is held times the
        rounds of work ahead of it, 1..60."""
        with self._lock:
            mean = self._mean_s or 1.0
            rounds = max(1, self._out) / self.max_running
        return int(min(60, max(1, math.ceil(mean * rounds))))

    def submit(self, fn: Callable[..., Any], *args) -> Future:
        """Run ``fn(*args)`` on a worker thread; work that starts after :meth:`stop` raises
        :class:`ServerStopping` instead."""

        def counted():
            if self.stopping:
                raise ServerStopping()
            with self._lock:
                self._running += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._running -= 1

        return self._executor.submit(counted)

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        """:meth:`submit` and await the result (the event loop stays free)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def stats(self) -> dict:
        """``running``, ``waiting`` (admitted, not yet running: queued or still uploading), ``capacity``."""
        with self._lock:
            return {"running": self._running, "waiting": max(0, self._out - self._running),
                    "capacity": self.capacity, "max_running": self.max_running}

    def stop(self) -> None:
        """Admit nothing more; work not yet started will refuse to start."""
        self.stopping = True

    def shutdown(self) -> None:
        """:meth:`stop`, drop the queued work and wait for the running work to end."""
        self.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)


class Admission:
    """ASGI middleware: each ``POST`` to :data:`ADMITTED_PATHS` takes a :class:`Ticket` before its
    body is read (left in ``scope[TICKET_KEY]``), or is answered 503 with ``Retry-After``."""

    def __init__(self, app, queue: WorkQueue):
        self.app = app
        self.queue = queue

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in ADMITTED_PATHS:
            return await self.app(scope, receive, send)
        ticket = self.queue.admit()
        if ticket is None:
            message = ("server is stopping" if self.queue.stopping else
                       f"server busy: {self.queue.capacity} swaps running or waiting "
                       "(--max-concurrency + --max-queue); retry later")
            headers = {"Retry-After": str(self.queue.retry_after())}
            return await error_response(503, message, headers)(scope, receive, send)
        scope[TICKET_KEY] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            if not ticket.kept:
                ticket.release()
