"""Still images for the ffkit runtime: read and write with OpenCV.

Its one job is image files. Pixel arrays are numpy ``uint8`` in OpenCV's **BGR**
channel order, shaped ``(height, width, 3)``. Writes are atomic: the image is
encoded to a temp file in the target folder and renamed into place only on success.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .common import IMAGE_SUFFIXES, MediaError, check_input_file, path_suffix, temp_path

__all__ = ["read_image", "write_image"]


def read_image(path) -> np.ndarray:
    """Read an image file into an ``(H, W, 3)`` uint8 **BGR** array.

    Alpha is dropped, grayscale is expanded to 3 channels, 16-bit is scaled to
    8-bit and EXIF orientation is applied (cv2.IMREAD_COLOR). Unicode paths work
    (bytes are read with numpy and decoded with cv2.imdecode). Raises
    :class:`MediaError` if the file is missing, empty, or not a decodable image.
    """
    path = os.fspath(path)
    check_input_file(path, "image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"cannot read image file {path}: {exc.strerror or exc}") from exc
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"not a decodable image (unknown format or corrupt/truncated): {path}")
    if img.size == 0:
        raise MediaError(f"image has no pixels: {path}")
    return img


def write_image(path, image: np.ndarray, quality: int = 95) -> None:
    """Write an ``(H, W, 3)`` uint8 **BGR** (or ``(H, W)`` gray, ``(H, W, 4)`` BGRA)
    image atomically; the format comes from the suffix (png, jpg/jpeg, webp, bmp).

    ``quality`` (0-100) applies to jpg/webp; png is lossless. The image is encoded
    to a temp file in the same folder, then moved over ``path`` with os.replace.
    Raises :class:`MediaError` on a bad suffix, bad array, or encode failure.
    """
    path = os.fspath(path)
    ext = path_suffix(path)
    if ext not in IMAGE_SUFFIXES:
        raise MediaError(f"unsupported image suffix {ext or '(none)'!r} for {path}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
        raise MediaError(f"cannot write {path}: expected HxW[x1|3|4] uint8 array, "
                         f"got shape {image.shape} dtype {image.dtype}")
    params = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise MediaError(f"failed to encode image for {path}")
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
