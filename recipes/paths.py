"""Checks on input paths before any work, with the one-line messages every command shares."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import FfkitError


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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


def refuse_overwrite(output: str | os.PathLike, *inputs: object, option: str = "-o",
                     error: type[FfkitError] = FfkitError) -> None:
    """One-line error if writing ``output`` would replace one of ``inputs`` (the same file, also
    through links or another spelling of the path); inputs that are not paths are skipped."""
    out = Path(output)
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)):   # None, or in-memory data (an emap array)
            continue
        src = Path(source)
        same = (os.path.realpath(out) == os.path.realpath(src) or
                (out.exists() and src.exists() and os.path.samefile(out, src)))
        if same:
            raise error(f"{output}: {option} would overwrite the input {source}; choose another output")
