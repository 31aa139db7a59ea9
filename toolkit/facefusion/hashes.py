"""FaceFusion's ``.hash`` files: the CRC-32 of the model file's bytes, eight lowercase hex digits.

FaceFusion's ``hash_helper.create_hash`` is ``format(zlib.crc32(content), '08x')`` over the whole
file, and ``validate_hash`` compares it with the text of ``<name>.hash`` beside ``<name>.onnx``
(read whole, no newline). Not sha256 (ffkit's own digest, :func:`ffkit.recipes.paths.sha256_of`).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

__all__ = ["facefusion_hash", "hash_path", "write_hash"]

BLOCK = 1 << 22


def facefusion_hash(path: str | os.PathLike) -> str:
    """``format(zlib.crc32(bytes), '08x')`` of the file at ``path``, read in 4 MiB blocks (the
    running CRC equals the one-shot CRC of the whole file)."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            crc = zlib.crc32(block, crc)
    return format(crc, "08x")


def hash_path(model_path: str | os.PathLike) -> Path:
    """``<folder>/<stem>.hash`` for ``<folder>/<stem>.onnx`` (FaceFusion's ``get_hash_path``)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".hash")


def write_hash(model_path: str | os.PathLike) -> Path:
    """Write the ``.hash`` of ``model_path`` beside it (no trailing newline); returns its path.
    Called on files in a private staging folder, so a plain write is complete or absent."""
    target = hash_path(model_path)
    target.write_text(facefusion_hash(model_path), encoding="ascii")
    return target
