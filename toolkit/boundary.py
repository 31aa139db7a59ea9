"""The CLI's one boundary for failures that are not :class:`FfkitError`: each becomes one line.

Exit codes by class (also in the README): 2 bad input, 3 a failed check (parity, verify), 4 the
machine stopped the work (disk full, no permission, read-only filesystem, out of memory), 5 a
library failed on an input that passed ffkit's checks, 130 Ctrl-C, 143 SIGTERM.

:func:`user_error` maps an exception to the :class:`FfkitError` to print, or None for a
programming error (those propagate with their traceback: they are bugs to report).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Mapping

from ffkit.recipes.errors import FfkitError, LibraryError, ResourceError

__all__ = ["user_error", "LIBRARIES"]

#: Top-level modules whose exceptions mean "this input made the library fail", by display name.
LIBRARIES = {"onnxruntime": "onnxruntime", "onnx": "onnx", "cv2": "OpenCV", "av": "PyAV", "torch": "torch",
             "numpy": "numpy", "google": "protobuf", "zipfile": "zipfile", "onnxsim": "onnxsim",
             "onnxoptimizer": "onnxoptimizer", "onnxconverter_common": "onnxconverter-common", "PIL": "Pillow"}

#: Write-side errno values: the machine, not the input (exit 4), with what to do about it.
_RESOURCE_HINTS = {
    errno.ENOSPC: "no space left on the device: free some or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some or write elsewhere",
    errno.EFBIG: "file too large for this filesystem or for the process's file-size limit",
    errno.EROFS: "read-only filesystem: write elsewhere",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EXDEV: "cannot rename across filesystems",
    errno.EMFILE: "too many open files",
}


def _subject(exc: BaseException, arguments: Mapping[str, Any]) -> str:
    """The file a message names: the exception's own, else the command's path arguments."""
    name = getattr(exc, "filename", None)
    if name:
        return os.fspath(name)
    paths = []
    for value in arguments.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Path):
                paths.append(str(item))
    return ", ".join(paths[:3]) or "ffkit"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    if line.startswith("[ONNXRuntimeError]"):
        line = line.split(" : ")[-1].strip()
    return line[:240]


def _library_of(exc: BaseException) -> str | None:
    for klass in type(exc).__mro__:
        top = (klass.__module__ or "").split(".")[0]
        if top in LIBRARIES:
            return LIBRARIES[top]
    return None


def user_error(exc: BaseException, arguments: Mapping[str, Any] = {}) -> FfkitError | None:
    """The one-line error for ``exc`` raised by a command called with ``arguments``, or None if
    it is a programming error that should propagate."""
    if isinstance(exc, FfkitError):
        return exc
    if isinstance(exc, MemoryError):
        return ResourceError(f"{_subject(exc, arguments)}: out of memory")
    if isinstance(exc, OSError) and exc.errno is not None:
        where = _subject(exc, arguments)
        hint = _RESOURCE_HINTS.get(exc.errno)
        if hint:
            return ResourceError(f"{where}: {hint}")
        return FfkitError(f"{where}: {exc.strerror or _first_line(exc)}")
    library = _library_of(exc)
    if library is not None:
        return LibraryError(f"{_subject(exc, arguments)}: {library} failed: {_first_line(exc)}")
    return None
