"""Write outputs atomically: a temp file beside the target, renamed into place on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FfkitError


def check_writable(path: Path) -> None:
    """Fail early, with one line, if ``path`` cannot be created (missing or read-only folder)."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise FfkitError(f"{path}: cannot write output, folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FfkitError(f"{path}: cannot write output, folder {parent} is not writable")
    if Path(path).is_dir():
        raise FfkitError(f"{path}: cannot write output, it is a folder")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it to ``path`` only if the block succeeds.

    On any exception the temp file is removed, so a failed stage never leaves a half-written
    artifact, and an existing file at ``path`` is left untouched.
    """
    path = Path(path)
    check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.resolve().parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def scratch_cwd(prefix: str = "ffkit-scratch-") -> Iterator[Path]:
    """Run the block with the current directory set to a fresh temp folder, removed afterwards.

    For library calls that write helper files into the current directory (onnxruntime's
    ``SymbolicShapeInference`` saves ``sym_shape_infer_temp.onnx`` and ``<uuid>.data`` when its
    model is large or its inference incomplete), so nothing lands where the user runs ffkit.
    Paths given to the block must be absolute. Not thread-safe (the directory is per process).
    """
    import shutil

    before = os.getcwd()
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chdir(scratch)
        yield scratch
    finally:
        os.chdir(before)
        shutil.rmtree(scratch, ignore_errors=True)
