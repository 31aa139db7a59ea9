"""Checks on input paths before any work, with the one-line messages every command shares."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FfkitError


def require_file(path: str | os.PathLike, error: type[FfkitError] = FfkitError,
                 empty: str = "empty file") -> Path:
    """``path`` as a Path if it is an existing, non-empty regular file; otherwise ``error``
    with one line naming it: ``no such file``, ``not a file`` or ``empty`` (e.g. "empty file,
    not an ONNX model")."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise error(f"{path}: {empty}")
    return path
