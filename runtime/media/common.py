"""What the image and video modules of :mod:`ffkit.runtime.media` share.

Its one job is the file-level rules common to all media I/O: the error type
(:class:`MediaError`), which suffixes count as images or videos, the checks an
input file must pass before it is opened. (Outputs are written through
:func:`ffkit.recipes.atomic.atomic_path`.) No pixels are touched here.

:func:`path_suffix` and :func:`check_input_file` are helpers for
the sibling modules; :mod:`ffkit.runtime.media` does not re-export them.
"""

from __future__ import annotations

import os

from ffkit.recipes.errors import FfkitError

__all__ = [
    "MediaError", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_image_path", "is_video_path",
    "path_suffix", "check_input_file",
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
