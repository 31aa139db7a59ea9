"""Running the ``ffkit serve`` app with uvicorn: bind, serve, stop gracefully on SIGTERM.

The listening socket is bound here (port 0 picks a free one), so the real address can be
printed before serving. On SIGTERM or Ctrl-C uvicorn stops accepting connections and lets the
running requests finish (at most ``shutdown_timeout_s``); before that drain starts,
:meth:`Service.begin_stop` refuses new work and cancels running video jobs, and the app's
shutdown then joins the workers and removes the temp folder. A graceful stop returns normally,
so ``ffkit serve`` exits 0.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import socket
import threading
from typing import Callable

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from ffkit.recipes.errors import FfkitError

from .app import create_app
from .service import Service

__all__ = ["bind_socket", "serve_forever"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6 by the host), address reuse on."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise FfkitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, telling the service the moment a stop signal arrives (from a thread:
    a signal handler must not wait on a lock its own thread may hold)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]):
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig, frame) -> None:
        threading.Thread(target=self._on_stop, name="ffkit-serve-stop", daemon=True).start()
        super().handle_exit(sig, frame)


@contextlib.contextmanager
def _signals_end_quietly():
    """uvicorn re-raises the signal it handled, once stopped, to the handler installed before
    it: make that a no-op for the run, so a graceful stop is a normal return (exit 0)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: None)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _log_config() -> dict:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ffkit.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve_forever(service: Service, sock: socket.socket | None = None, say: Callable[[str], None] = print) -> None:
    """Serve ``service`` on ``sock`` (default: bound now to its settings' host and port) until
    SIGTERM / SIGINT, then stop gracefully; the service is closed (temp folder removed) and the
    socket too, whatever happens."""
    settings = service.settings
    try:
        sock = sock if sock is not None else bind_socket(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        config = uvicorn.Config(create_app(settings, service), host=settings.host, port=port, lifespan="on",
                                log_config=_log_config(), timeout_graceful_shutdown=settings.shutdown_timeout_s,
                                server_header=False)
        server = _StoppingServer(config, on_stop=service.begin_stop)
        url_host = f"[{host}]" if ":" in host else host
        say(f"listening on http://{url_host}:{port}")
        with _signals_end_quietly():
            server.run(sockets=[sock])
    finally:
        service.close()
        if sock is not None:
            sock.close()
