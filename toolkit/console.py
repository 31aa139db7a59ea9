"""Shared rich console helpers: one stderr console for status, tables on stdout."""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)


def human_size(n: int) -> str:
    """Bytes as a short human string (``12.3 MB``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
