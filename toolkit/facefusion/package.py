"""``ffkit package --for facefusion``: a models folder's artifacts written as FaceFusion's files.

For every FaceFusion slot ffkit fills (:data:`.slots.SLOTS`) the best artifact of the folder
(the asked ``--variant`` first, then fp32, fp16, int8; the slot's preferred recipe; ffkit's own
files before adopted ones) is written under the slot's file name with FaceFusion's ``.hash``
beside it: copied byte for byte where FaceFusion's I/O is ffkit's, else wrapped in the graph
(:mod:`.wrappers`) and checked (:mod:`.checks`). A file whose recipe has no slot is skipped with
a line saying why.

Nothing half-written: every file is first written and checked in a hidden staging folder beside
the target (``.<name>.ffkit-XXXX``, same filesystem); only when all of them are complete is
each moved into the target with one rename (``.onnx`` then its ``.hash``), and the staging
folder is removed whatever happens. A failure before that leaves the target as it was (not
created, when it did not exist).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ffkit.recipes.atomic import replace_file
from ffkit.recipes.errors import ArtifactError, FfkitError
from ffkit.recipes.inswapper.emap import SHAPE as EMAP_SHAPE
from ffkit.recipes.onnx_file import load_onnx, save_onnx
from ffkit.recipes.paths import sha256_of
from ffkit.runtime.models import ModelRef, scan_models

from .checks import CHECKS
from .hashes import hash_path, write_hash
from .slots import NO_SLOT, SLOTS, Slot, file_name
from .wrappers import WRAPPERS, mark_wrapped

__all__ = ["TARGETS", "VARIANTS", "Packaged", "PackageResult", "choose", "package_facefusion"]

#: What ``--for`` accepts.
TARGETS = ("facefusion",)
#: What ``--variant`` accepts: a precision, or a word of a recorded variant (``fp32-unfused``).
VARIANTS = ("fp32", "fp16", "int8", "tuned")
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}


@dataclass(frozen=True)
class Packaged:
    """One file written: the slot, its file name, the artifact it came from, how, and the check."""

    slot: Slot
    name: str
    source: ModelRef
    wrapper: str
    check: str


@dataclass
class PackageResult:
    target: Path
    written: list[Packaged] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _matches(ref: ModelRef, variant: str | None) -> bool:
    return variant is not None and (ref.precision == variant or variant in ref.variant.split("-"))


def choose(refs: list[ModelRef], slot: Slot, variant: str | None) -> ModelRef | None:
    """The artifact of ``refs`` that fills ``slot``: the asked variant first, then by precision
    (fp32, fp16, int8), the slot's recipe preference, ffkit's own before adopted, plain variant
    before suffixed, file name."""
    fitting = [r for r in refs if r.recipe.name in slot.recipes]
    if not fitting:
        return None
    return min(fitting, key=lambda r: (not _matches(r, variant), PRECISION_ORDER.get(r.precision, 3),
                                       slot.recipes.index(r.recipe.name), r.foreign, "-" in r.variant, r.path.name))


def _check_emap(ref: ModelRef) -> None:
    last = ref.info.last_initializer
    if last is None or tuple(last.dims) != EMAP_SHAPE:
        raise ArtifactError(f"{ref.path}: FaceFusion reads the inswapper emap as the graph's LAST initializer, "
                            f"and this file's last one is not 512x512 (export it with --emap)")


def _stage(ref: ModelRef, slot: Slot, staged: Path, wrappers: dict, checks: dict) -> tuple[str, str]:
    """Write ``ref`` as ``slot`` at ``staged`` (copied, or wrapped and checked); ``(wrapper, check line)``."""
    if slot.wrapper == "copy":
        if ref.recipe.family == "inswapper":
            _check_emap(ref)
        shutil.copyfile(ref.path, staged)
        return "none (copied byte for byte)", "I/O is FaceFusion's: " + slot.note
    if slot.wrapper not in wrappers:
        raise FfkitError(f"{ref.path}: the {slot.key} slot needs the {slot.wrapper} wrapper, which this ffkit lacks")
    model = load_onnx(ref.path)
    try:
        wrapped = wrappers[slot.wrapper](model)
    except (ValueError, FfkitError) as err:
        raise _Unwrappable(f"{ref.path}: cannot wrap it for FaceFusion's {slot.key} slot ({err})") from None
    mark_wrapped(wrapped, slot=slot.key, wrapper=slot.wrapper, recipe=ref.recipe.name, variant=ref.variant,
                 sha256=sha256_of(ref.path))
    save_onnx(wrapped, staged)
    return slot.wrapper, checks[slot.wrapper](ref.path, staged, ref.recipe.name)


class _Unwrappable(ArtifactError):
    """The file's graph is not one the slot's wrapper can take (another variant may be)."""


def _stage_or_fallback(refs, slot, ref, staging, wrappers, checks, result, say):
    """Stage ``ref`` for ``slot``; when its graph cannot be wrapped, the next best file of the
    slot (other precisions), with a note. ``(ref, file name, wrapper, check line)``."""
    tried = []
    while True:
        name = file_name(slot, ref.precision)
        say(f"{slot.key}: {ref.path.name} -> {name}")
        try:
            return (ref, name, *_stage(ref, slot, staging / name, wrappers, checks))
        except _Unwrappable as err:
            tried.append(ref)
            (staging / name).unlink(missing_ok=True)
            rest = [r for r in refs if r not in tried and r.precision != ref.precision]
            fallback = choose(rest, slot, None)
            if fallback is None:
                raise
            result.notes.append(f"{err}; using {fallback.path.name} ({fallback.variant}) for FaceFusion's "
                                f"{slot.key} slot")
            result.skipped = [line for line in result.skipped if not line.startswith(f"{fallback.path.name} ")]
            ref = fallback


def _plan(refs: list[ModelRef], variant: str | None, result: PackageResult) -> list[tuple[Slot, ModelRef]]:
    plan = []
    for slot in SLOTS:
        ref = choose(refs, slot, variant)
        if ref is None:
            continue
        plan.append((slot, ref))
        if variant and not _matches(ref, variant):
            result.notes.append(f"no {variant} file for FaceFusion's {slot.key} slot; using {ref.path.name} "
                                f"({ref.variant})")
    chosen = {id(ref) for _, ref in plan}
    for ref in refs:
        if id(ref) in chosen:
            continue
        if ref.recipe.name in NO_SLOT:
            result.skipped.append(f"{ref.path.name} ({ref.recipe.name}): skipped, {NO_SLOT[ref.recipe.name]}")
        else:
            result.skipped.append(f"{ref.path.name} ({ref.recipe.name} {ref.variant}): skipped, another file "
                                  "fills the same slot")
    return plan


def _check_target(models_dir: Path, output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise FfkitError(f"{output}: exists and is not a folder (-o takes the folder to write, e.g. FaceFusion's "
                         ".assets/models)")
    if not output.parent.is_dir():
        raise FfkitError(f"{output.parent}: no such folder (the parent of -o must exist)")
    if output.exists() and output.resolve() == models_dir.resolve():
        raise FfkitError(f"{output}: is the models folder itself; write the FaceFusion folder elsewhere")


def _commit(staging: Path, output: Path, names: list[str]) -> None:
    created = not output.exists()
    output.mkdir(exist_ok=True)
    try:
        for name in names:
            replace_file(staging / name, output / name)
            replace_file(hash_path(staging / name), hash_path(output / name))
    except BaseException:
        if created and not any(output.iterdir()):
            output.rmdir()
        raise


def package_facefusion(models_dir: str | os.PathLike, output: str | os.PathLike, variant: str | None = None,
                       say: Callable[[str], None] = lambda m: None, wrappers: dict | None = None,
                       checks: dict | None = None) -> PackageResult:
    """Write FaceFusion's files for the artifacts of ``models_dir`` into ``output`` (see module doc).

    Raises:
        FfkitError: no such models folder, an unreadable ONNX file in it (named), no artifact for
            any FaceFusion slot, or ``output`` not writable as a folder.
        ParityError: a wrapper's check failed (nothing written).
    """
    models_dir, output = Path(models_dir), Path(output)
    if variant is not None and variant not in VARIANTS:
        raise FfkitError(f"--variant {variant}: not one of {', '.join(VARIANTS)}")
    refs, ignored = scan_models(models_dir)
    _check_target(models_dir, output)
    result = PackageResult(output)
    result.skipped += [f"{p.name}: skipped, records no ffkit recipe and fits none" for p in ignored]
    plan = _plan(refs, variant, result)
    if not plan:
        have = ", ".join(f"{r.path.name} ({r.recipe.name})" for r in refs) or "no ONNX artifacts"
        raise FfkitError(f"{models_dir}: nothing for any FaceFusion slot ({', '.join(s.key for s in SLOTS)}); "
                         f"it has: {have}")
    wrappers, checks = {**WRAPPERS, **(wrappers or {})}, {**CHECKS, **(checks or {})}
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.ffkit-", dir=output.parent))
    try:
        for slot, ref in plan:
            ref, name, wrapper, line = _stage_or_fallback(refs, slot, ref, staging, wrappers, checks, result, say)
            write_hash(staging / name)
            result.written.append(Packaged(slot, name, ref, wrapper, line))
        _commit(staging, output, [p.name for p in result.written])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
