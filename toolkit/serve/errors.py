"""How ``ffkit serve`` answers errors: always JSON ``{"error": "<one line>"}``, never a traceback.

A user's mistake (a missing field, a file that is no image, no face in the source, an upload over
the limit) gets its 4xx status and the one-line message; anything else is logged and answered
500 ``{"error": "internal error"}`` by :class:`CatchAll`, and the server stays up. Messages never
show the server's temp paths (:func:`public_message`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ffkit.recipes.errors import FfkitError

__all__ = ["ServerStopping", "UploadError", "InvalidOption", "error_response", "public_message",
           "validation_message", "install_error_handlers", "CatchAll"]

log = logging.getLogger("ffkit.serve")


class ServerStopping(Exception):
    """Work refused because the server is shutting down (answered 503)."""


class UploadError(FfkitError):
    """An uploaded file is not what its field needs (answered 400)."""


class InvalidOption(FfkitError):
    """A form field whose value the loaded model cannot take (e.g. an odd ``tile`` for a 2x
    upscaler): answered 422, as a field that fails its own check."""


def error_response(status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> JSONResponse:
    """The JSON error answer: ``{"error": message}`` (whitespace folded to one line)."""
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=dict(headers or {}))


def public_message(message: str, work_root: Path) -> str:
    """``message`` with every path inside the server's work folder cut down to its file name
    (``/tmp/ffkit-serve-x/swap-y/source.png`` -> ``source.png``)."""
    return re.sub(re.escape(str(work_root)) + r"[/\\](?:[^/\\\s]+[/\\])*", "", str(message))


def validation_message(exc: RequestValidationError) -> str:
    """One line for FastAPI's field errors: ``target: Field required; select: Input should be ...``."""
    parts = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, work_root: Path) -> None:
    """Map validation errors and :class:`InvalidOption` to 422, HTTP errors to their status,
    other FfkitErrors to 400 and :class:`ServerStopping` to 503, each as ``{"error": ...}``."""

    async def on_validation(request: Request, exc: RequestValidationError):
        return error_response(422, validation_message(exc))

    async def on_http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def on_ffkit(request: Request, exc: FfkitError):
        return error_response(422 if isinstance(exc, InvalidOption) else 400, public_message(str(exc), work_root))

    async def on_stopping(request: Request, exc: ServerStopping):
        return error_response(503, "server is stopping", {"Retry-After": "5"})

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(FfkitError, on_ffkit)
    app.add_exception_handler(ServerStopping, on_stopping)


class CatchAll:
    """ASGI middleware: an exception nobody handled is logged with its traceback and answered
    500 ``{"error": "internal error"}`` (if no answer was started), so no traceback ever reaches
    a client and the server keeps serving."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # noqa: BLE001 - the last line of defence: log, answer 500, keep serving
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal error")(scope, receive, send)
