"""Shared rich console helpers: one stderr console for status, tables on stdout."""

from __future__ import annotations

from rich.console import Console

from ffkit.validation.report import human_size

out = Console()
err = Console(stderr=True)

__all__ = ["out", "err", "human_size"]
