"""SIGTERM as an exception: ``ffkit`` stops like Ctrl-C on ``kill`` (exit 143), and every
``finally`` and atomic write on the way out cleans up. Imports nothing heavy, so the entry point
can install it before the rest of the CLI loads."""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM, raised in the main thread."""


def _on_sigterm(signum, frame):
    raise Terminated()


def install() -> None:
    """Route SIGTERM to :class:`Terminated` (main thread only, as Python delivers signals)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
