"""SIGTERM as an exception: ``ffkit`` stops like Ctrl-C on ``kill`` (exit 143), and every
``finally`` and atomic write on the way out cleans up. Imports nothing heavy, so the entry point
can install it before the rest of the CLI loads.

The handler also sets :data:`ffkit.recipes.atomic.STOP_REQUESTED`: a signal that lands where
Python swallows exceptions (a weakref callback during an import) still stops every atomic write
from committing, and the CLI still exits 143.
"""

from __future__ import annotations

import signal

from ffkit.recipes.atomic import STOP_REQUESTED
from ffkit.recipes.errors import Terminated

__all__ = ["Terminated", "install", "stop_requested"]


def _on_sigterm(signum, frame):
    STOP_REQUESTED.set()
    raise Terminated()


def stop_requested() -> bool:
    """Whether SIGTERM arrived (even if its exception was swallowed)."""
    return STOP_REQUESTED.is_set()


def install() -> None:
    """Route SIGTERM to :class:`Terminated` (main thread only, as Python delivers signals)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
