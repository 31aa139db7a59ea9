"""Uploaded files of ``ffkit serve``: what kind each is, and where it is put.

The server's files live in one :class:`WorkDir` (a temp folder made at start, removed at stop);
each request or job gets its own folder in it, where every upload is saved as ``<field><suffix>``
so that the runtime reads it by path exactly as ``ffkit swap`` reads the user's files. An image's
format is read from its first bytes (PNG, JPEG, WebP, BMP), never trusted from its name; a video
keeps its name's suffix when that is a video suffix, else its container is sniffed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal, Optional

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ffkit.runtime.media import VIDEO_SUFFIXES

from .errors import UploadError

__all__ = ["MEDIA_TYPES", "WorkDir", "sniff_image", "sniff_video", "save_upload"]

#: Content type of each suffix the server answers with.
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".bmp": "image/bmp", ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
               ".mkv": "video/x-matroska", ".webm": "video/webm", ".avi": "video/x-msvideo"}

Kind = Literal["image", "video"]


def sniff_image(head: bytes) -> Optional[str]:
    """The suffix of the image format ``head`` (a file's first 16 bytes or more) starts, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith(b"BM") and len(head) >= 14:
        return ".bmp"
    return None


def sniff_video(head: bytes) -> Optional[str]:
    """The suffix of the video container ``head`` starts (MP4/MOV, Matroska/WebM, AVI), or None."""
    if head[4:8] == b"ftyp":
        return ".mov" if head[8:10] == b"qt" else ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    return None


class WorkDir:
    """The server's temp folder (``ffkit-serve-*`` in ``parent``, or the system temp folder)."""

    def __init__(self, parent: Optional[Path] = None):
        self.root = Path(tempfile.mkdtemp(prefix="ffkit-serve-", dir=parent))

    def new_folder(self, kind: str) -> Path:
        """A fresh folder for one request or job (``<kind>-*``)."""
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.root))

    def remove(self) -> None:
        """Delete the whole temp folder (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _copy(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as f:
        shutil.copyfileobj(upload.file, f, 1 << 20)


async def save_upload(upload: UploadFile, folder: Path, field: str, want: Kind) -> Path:
    """Save ``upload`` into ``folder`` as ``<field><suffix>`` and return the path.

    Raises:
        UploadError: it is not a ``want`` (an image: PNG, JPEG, WebP or BMP; a video: a
            container with a video suffix or a sniffable one); the message names ``field``.
    """
    head = await upload.read(32)
    await upload.seek(0)
    image, video = sniff_image(head), sniff_video(head)
    name_suffix = Path(upload.filename or "").suffix.lower()
    if want == "image":
        if image is None:
            extra = "; send videos to POST /jobs" if video or name_suffix in VIDEO_SUFFIXES else ""
            raise UploadError(f"{field}: not an image (PNG, JPEG, WebP or BMP expected){extra}")
        suffix = image
    else:
        if image is not None:
            raise UploadError(f"{field}: is an image, not a video; POST /swap swaps images")
        suffix = name_suffix if name_suffix in VIDEO_SUFFIXES else video
        if suffix is None:
            raise UploadError(f"{field}: not a video (expected {', '.join(VIDEO_SUFFIXES)})")
    path = folder / f"{field}{suffix}"
    await run_in_threadpool(_copy, upload, path)
    return path
