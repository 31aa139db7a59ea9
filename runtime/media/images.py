"""Still images for the ffkit runtime: read and write with OpenCV.

Its one job is image files. Pixel arrays are numpy ``uint8`` in OpenCV's **BGR**
channel order, shaped ``(height, width, 3)``. Writes are atomic: the image is
encoded to a temp file in the target folder and renamed into place only on success.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ffkit.recipes.atomic import atomic_path

from .common import IMAGE_SUFFIXES, MediaError, check_input_file, path_suffix
from .image_header import declared_size

__all__ = ["MAX_IMAGE_PIXELS", "Picture", "read_image", "read_picture", "write_image", "write_picture"]

#: The most pixels an input image may declare (100 MP: 10000 x 10000; an 8K frame is 33 MP).
MAX_IMAGE_PIXELS = 100_000_000


def _read_bytes(path: str) -> np.ndarray:
    check_input_file(path, "image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    size = declared_size(data[:1 << 20].tobytes())
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise MediaError(f"{path}: declares {size[0]}x{size[1]} pixels, over the {MAX_IMAGE_PIXELS // 1_000_000} "
                         "megapixel cap; refused before decoding")
    return data


def _decode(path: str, data: np.ndarray, flags: int) -> np.ndarray:
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:   # e.g. a size OpenCV's own limit refuses
        reason = str(exc).strip().splitlines()[-1].split(") ")[-1][:120]
        raise MediaError(f"{path}: OpenCV cannot decode it ({reason})") from None
    if img is None:
        raise MediaError(f"not a decodable image (unknown format or corrupt/truncated): {path}")
    if img.size == 0:
        raise MediaError(f"image has no pixels: {path}")
    return img


def read_image(path) -> np.ndarray:
    """Read an image file into an ``(H, W, 3)`` uint8 **BGR** array.

    Alpha is dropped, grayscale is expanded to 3 channels, 16-bit is scaled to
    8-bit and EXIF orientation is applied (cv2.IMREAD_COLOR). Unicode paths work
    (bytes are read with numpy and decoded with cv2.imdecode). Raises
    :class:`MediaError` if the file is missing, empty, declares more than
    :data:`MAX_IMAGE_PIXELS` pixels, or is not a decodable image. (To keep alpha and
    16-bit depth through a swap, use :func:`read_picture` / :func:`write_picture`.)
    """
    path = os.fspath(path)
    return _decode(path, _read_bytes(path), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class Picture:
    """An image as read, for writing back what processing does not touch.

    ``bgr``: ``H x W x 3`` uint8 BGR, what the pipeline works on; ``alpha``: ``H x W`` uint8 or
    uint16 alpha channel, or None; ``deep``: the ``H x W x 3`` uint16 BGR original of a 16-bit
    image, or None.
    """

    bgr: np.ndarray
    alpha: np.ndarray | None = None
    deep: np.ndarray | None = None


def read_picture(path) -> Picture:
    """Read an image keeping its alpha channel and 16-bit depth (see :class:`Picture`); EXIF
    orientation is applied as by :func:`read_image`. Same errors as :func:`read_image`."""
    path = os.fspath(path)
    data = _read_bytes(path)
    raw = _decode(path, data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    bgr = _decode(path, data, cv2.IMREAD_COLOR)
    if raw.shape[:2] != bgr.shape[:2]:   # EXIF rotated: IMREAD_UNCHANGED ignores orientation
        return Picture(bgr)
    alpha = raw[..., 3] if raw.ndim == 3 and raw.shape[2] == 4 else None
    deep = None
    if raw.dtype == np.uint16:
        colour = raw[..., :3] if raw.ndim == 3 else np.repeat(raw[..., None], 3, axis=2)
        deep = colour if colour.shape[2] == 3 else None
    elif raw.dtype != np.uint8:
        raise MediaError(f"{path}: {raw.dtype} pixels are not supported (8- or 16-bit images only)")
    return Picture(bgr, alpha, deep)


def write_picture(path, processed_bgr: np.ndarray, original: Picture, quality: int = 95) -> list[str]:
    """Write ``processed_bgr`` (``H x W x 3`` uint8 BGR, ``original.bgr`` processed) with what
    the original had: its alpha channel (PNG, WebP) and its 16-bit depth (PNG). Pixels the
    processing left equal to ``original.bgr`` keep their exact 16-bit values; changed ones are
    scaled up by 257 (8-bit precision). A ``processed_bgr`` of another size (a frame enhancer's
    upscale) gets the alpha resized bilinearly and every pixel at 8-bit precision. Returns what
    could not be kept for this format (e.g. ``["alpha"]`` for a JPEG output), for the caller to say."""
    ext = path_suffix(os.fspath(path))
    lost, image = [], processed_bgr
    resized = processed_bgr.shape[:2] != original.bgr.shape[:2]   # upscaled by a frame enhancer
    if original.deep is not None:
        if ext == ".png":
            wide = processed_bgr.astype(np.uint16) * np.uint16(257)
            unchanged = None if resized else np.all(processed_bgr == original.bgr, axis=2, keepdims=True)
            image = wide if resized else np.where(unchanged, original.deep, wide)
        else:
            lost.append("16-bit depth")
    if original.alpha is not None:
        if ext in (".png", ".webp"):
            alpha = original.alpha
            if resized:
                alpha = cv2.resize(alpha, (processed_bgr.shape[1], processed_bgr.shape[0]),
                                   interpolation=cv2.INTER_LINEAR)
            if image.dtype != alpha.dtype:
                alpha = (alpha.astype(np.uint16) * np.uint16(257)) if image.dtype == np.uint16 else (
                    np.rint(alpha / 257.0).astype(np.uint8))
            image = np.dstack([image, alpha])
        else:
            lost.append("alpha")
    write_image(path, image, quality)
    return lost


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
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
        raise MediaError(f"cannot write {path}: expected HxW[x1|3|4] uint8 (or uint16 for png) array, "
                         f"got shape {image.shape} dtype {image.dtype}")
    params = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise MediaError(f"failed to encode image for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:   # beside the real target (links followed), umask mode
        tmp.write_bytes(buf.tobytes())
