"""CLI commands (registered on ``ffkit.toolkit.cli.app``)."""

from __future__ import annotations

from .cli import app, friendly  # noqa: F401
