"""What the image and video modules of :mod:`ffkit.runtime.media` share.

Its one job is the file-level rules common to all media I/O: the error type
(:class:`MediaError`), which suffixes count as images or videos, the checks an
input file must pass before it is opened, and the hidden temp path an output is
written to before it is renamed into place. No pixels are touched here.

:func:`path_suffix`, :func:`check_input_file` and :func:`temp_path` are helpers for
the sibling modules; :mod:`ffkit.runtime.media` does not re-export them.
"""

from __future__ import annotations

import os
import uuid

from ffkit.recipes.errors import FfkitError

__all__ = [
    "MediaError", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_image_path", "is_video_path",
    "path_suffix", "check_input_file", "temp_path",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


class MediaError(FfkitError, ValueError):
    """A media file is missing, unreadable, malformed, or cannot be written.
    The message is one line naming the file and the problem (the CLI prints it as
    ``error: ...``; it is also a ValueError for callers that catch that)."""


def path_suffix(path) -> str:
    """The lower-case suffix of ``path`` including the dot (``''`` when there is none)."""
    return os.path.splitext(os.fspath(path))[1].lower()


def is_image_path(path) -> bool:
    """True if ``path`` has an image suffix (png, jpg, jpeg, webp, bmp; any case)."""
    return path_suffix(path) in IMAGE_SUFFIXES


def is_video_path(path) -> bool:
    """True if ``path`` has a video suffix (mp4, mov, mkv, avi, webm, m4v; any case)."""
    return path_suffix(path) in VIDEO_SUFFIXES


def check_input_file(path: str, kind: str) -> None:
    """Raise :class:`MediaError` (naming ``kind`` and ``path``) unless ``path`` is an
    existing, non-empty regular file."""
    if not os.path.exists(path):
        raise MediaError(f"{kind} file not found: {path}")
    if not os.path.isfile(path):
        raise MediaError(f"{kind} path is not a regular file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{kind} file is empty: {path}")


def temp_path(out_path: str) -> str:
    """A hidden, unique temp path next to ``out_path`` (its folder is created), keeping
    ``out_path``'s suffix; outputs are written there, then renamed over ``out_path``."""
    folder, name = os.path.split(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    # keep the real suffix last so the container/encoder format is still inferred from it
    return os.path.join(folder, f".{stem}.partial-{uuid.uuid4().hex[:8]}{suffix}")
