"""Who may use ``ffkit serve``: the bearer token, and where a server may listen without one.

With a token (``--token T`` or the environment variable ``FFKIT_TOKEN``) every API request must
send ``Authorization: Bearer T``; the page (``GET /``), its static files (``/static/...``) and
``GET /health`` hold no data and are served to anyone. A missing or wrong token is answered 401
``{"error": ...}`` with ``WWW-Authenticate: Bearer`` and one log line naming the request and the
client, never the token sent. Tokens are compared with :func:`hmac.compare_digest` (constant time).

A server listening on an address other than loopback must have a token
(:func:`check_exposure`), unless ``--insecure-no-token`` says otherwise (a warning at start).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
from typing import Optional

from ffkit.recipes.errors import FfkitError

from .errors import error_response

__all__ = ["TokenGate", "PUBLIC_PATHS", "is_public", "is_loopback", "check_exposure", "exposure_warning",
           "TOKEN_ENV"]

log = logging.getLogger("ffkit.serve")

#: The environment variable ``ffkit serve`` reads its token from when ``--token`` is not given.
TOKEN_ENV = "FFKIT_TOKEN"
#: Paths served without a token (they hold no data); ``/static/`` is a prefix.
PUBLIC_PATHS = ("/", "/health")
STATIC_PREFIX = "/static/"


def is_public(path: str) -> bool:
    """Whether ``path`` is the page, one of its static files or ``/health``."""
    return path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) means this machine only (127.0.0.0/8, ::1,
    ``localhost``); a name is resolved and must resolve to loopback addresses only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_exposure(host: str, token: Optional[str], insecure_no_token: bool) -> None:
    """Refuse (one line saying how to set a token) to listen on ``host`` other than loopback
    without a token, unless ``insecure_no_token``."""
    if token or insecure_no_token or is_loopback(host):
        return
    raise FfkitError(f"--host {host} is reachable from other machines: set a token with --token T or the "
                     f"{TOKEN_ENV} environment variable (or pass --insecure-no-token to serve without one)")


def exposure_warning(host: str, token: Optional[str]) -> Optional[str]:
    """The warning printed at start when a non-loopback server runs without a token, else None."""
    if token or is_loopback(host):
        return None
    return (f"warning: serving on {host} without a token (--insecure-no-token): anyone who can reach this "
            "address can upload files and use the machine")


class TokenGate:
    """ASGI middleware: every request but :func:`is_public` ones needs ``Authorization: Bearer
    <token>`` (401 otherwise). With ``token`` None it lets everything through."""

    def __init__(self, app, token: Optional[str]):
        self.app = app
        self._token = token.encode() if token else None

    def _verdict(self, scope) -> Optional[str]:
        """None when the request may pass, else ``missing`` or ``wrong``."""
        header = dict(scope.get("headers") or ()).get(b"authorization")
        if header is None:
            return "missing"
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return "missing"
        ok = hmac.compare_digest(given.strip(), self._token)
        return None if ok else "wrong"

    async def __call__(self, scope, receive, send):
        if self._token is None or scope["type"] != "http" or is_public(scope.get("path", "")):
            return await self.app(scope, receive, send)
        verdict = self._verdict(scope)
        if verdict is None:
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?",))[0]
        log.warning("401 %s %s from %s: %s token", scope.get("method"), scope.get("path"), client, verdict)
        message = ("missing token: send Authorization: Bearer <token>" if verdict == "missing"
                   else "wrong token")
        return await error_response(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
