"""Write outputs atomically: a temp file beside the target, renamed into place on success.

The target is the real file: an output path that is a symbolic link is followed, so the temp
file is made beside what the link points to and renamed onto it within one filesystem (the link
stays a link). The finished file gets the mode a plain ``open()`` would give it,
``0o666 & ~umask``, not ``mkstemp``'s 0600, so others sharing a models folder can read it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Iterator

from .errors import FfkitError, ResourceError, Terminated

#: Set once a stop was requested (the CLI's SIGTERM handler). A signal can land where Python
#: ignores exceptions (a weakref callback, ``__del__``), so no atomic write commits after it.
STOP_REQUESTED = threading.Event()


def check_writable(path: Path, need_bytes: int = 0) -> None:
    """Fail early, with one line, if ``path`` cannot be created (missing or read-only folder), or
    if its filesystem has fewer than ``need_bytes`` free (when the size is known beforehand)."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise FfkitError(f"{path}: cannot write output, folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FfkitError(f"{path}: cannot write output, folder {parent} is not writable")
    if Path(path).is_dir():
        raise FfkitError(f"{path}: cannot write output, it is a folder")
    if need_bytes > 0:
        try:
            stat = os.statvfs(parent)
        except (OSError, AttributeError):   # not knowable here (Windows, some FUSE mounts)
            return
        free = stat.f_bavail * stat.f_frsize
        if free < need_bytes:
            raise ResourceError(f"{path}: needs {need_bytes / (1 << 20):.1f} MiB but {parent} has "
                                f"{free / (1 << 20):.1f} MiB free; free some or write elsewhere")


def current_umask() -> int:
    """The process's umask (read from ``/proc/self/status`` where it can be, else set and reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Length of the random token in a temp name ``.<name>.<token>.part<suffix>``.
TOKEN_LENGTH = 8


def temp_name_pattern(target: str | os.PathLike) -> re.Pattern:
    """The names :func:`atomic_path` gives ``target``'s temp files (``.<name>.<token>.part`` and
    the suffix), for finding what a killed process (which cannot clean up) left beside it."""
    name, suffix = re.escape(Path(target).name), re.escape(Path(target).suffix)
    return re.compile(rf"\.{name}\.[A-Za-z0-9_]{{{TOKEN_LENGTH}}}\.part(?:{suffix})?")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, need_bytes: int = 0) -> Iterator[Path]:
    """Yield a temp path beside the real target; rename it onto the target only if the block succeeds.

    The temp file keeps the target's suffix last (``.m.onnx.x1y2.part.onnx``), so a writer that
    picks its format by suffix still can. An OSError about the temp file (disk full, ...) is
    re-raised naming ``path``. On any exception (SIGINT and, through the CLI's handler, SIGTERM
    included) the temp file is removed, so a failed stage never leaves a half-written artifact, and an existing file at
    ``path`` is left untouched.
    """
    path = Path(path)
    check_writable(path, need_bytes)
    target = Path(os.path.realpath(path))
    # The temp file's name is chosen before it exists, so a signal landing anywhere from its
    # creation on finds it in ``tmp_path`` and the cleanup below removes it.
    tmp_path = target.parent / f".{target.name}.{uuid.uuid4().hex[:TOKEN_LENGTH]}.part{target.suffix}"
    try:
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise ResourceError(f"{path}: cannot write output in {target.parent} ({err.strerror})") from None
        os.close(fd)
        yield tmp_path
        if STOP_REQUESTED.is_set():
            raise Terminated()
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    except OSError as err:   # name the output the user gave, not the hidden temp file
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if err.filename in (None, str(tmp_path), tmp_path) or getattr(err, "filename2", None) == str(target):
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def replace_file(finished: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move the complete file ``finished`` (written in a private folder on ``path``'s filesystem,
    e.g. a build's work folder) onto ``path`` in one rename; ``path``, if it exists, is replaced
    whole, never left half-written. Returns ``path``. A stop already requested commits nothing."""
    path = Path(path)
    check_writable(path)
    if STOP_REQUESTED.is_set():
        raise Terminated()
    os.chmod(finished, 0o666 & ~current_umask())
    try:
        os.replace(finished, os.path.realpath(path))
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    return path


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
