"""Shared rich console helpers: one stderr console for status, tables on stdout.

On a terminal rich uses its width. Anywhere else (a log file, CI, a pipe) rich would squeeze
tables to 80 columns; there they are laid out at :data:`LOG_WIDTH` columns instead, unless
``COLUMNS`` says otherwise, so a table stays one readable row per line in a log.
"""

from __future__ import annotations

import os

from rich.console import Console

from ffkit.validation.report import human_size

#: Columns used for output that is not a terminal (rich's default there is 80).
LOG_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): the terminal's width, or :data:`LOG_WIDTH` in a log."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=LOG_WIDTH)
    return console


out = make_console()
err = make_console(stderr=True)

__all__ = ["out", "err", "human_size", "make_console", "LOG_WIDTH"]
