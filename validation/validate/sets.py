"""The model sets ``ffkit validate`` compares: one reference set and one or more candidates.

- Without ``against``: the reference is the FP32 of ``models`` (picked as ``ffkit swap
  --variant fp32`` picks it), each candidate another precision of the same folder (``--variants``:
  a role lacking that precision keeps its FP32 file, and :attr:`ModelSet.fallbacks` says so), or
  one per-role mix (``--set detector=int8,swapper=fp16``).
- With ``against``: the reference is that folder (picked as ``ffkit swap --models REFDIR``), the
  candidate ``models`` picked as ``ffkit swap --models DIR`` picks it (``--variant`` honoured).

Files are identified by their metadata or I/O (:mod:`ffkit.runtime.models`), never by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.roles import ROLE_NAMES
from ffkit.runtime.models import ModelSelection, scan_models

__all__ = ["ModelSet", "build_sets", "parse_mix", "file_sha256"]

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ModelSet:
    """A named set of artifacts (one per role) and what was substituted."""

    name: str
    selection: ModelSelection
    folder: Path
    fallbacks: list[str] = field(default_factory=list)

    def files(self) -> list[dict]:
        """Role, file, recipe, variant, sha256 of every artifact used."""
        return [{"role": role, "file": str(ref.path), "recipe": ref.recipe.name, "variant": ref.variant,
                 "foreign": ref.foreign, "sha256": file_sha256(ref.path)} for role, ref in self.selection.used()]


_SHA: dict[str, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of the file at ``path`` (memoised per resolved path for one run)."""
    key = str(Path(path).resolve())
    if key not in _SHA:
        h = hashlib.sha256()
        with open(key, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA[key] = h.hexdigest()
    return _SHA[key]


def parse_mix(text: str) -> dict[str, str]:
    """``detector=int8,swapper=fp16`` -> ``{role: precision}``; one-line FfkitError otherwise."""
    mix: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        role, _, precision = item.partition("=")
        role, precision = role.strip(), precision.strip()
        if role not in ROLE_NAMES:
            raise FfkitError(f"--set {text}: {role!r} is not a role ({', '.join(ROLE_NAMES)})")
        if precision not in PRECISIONS:
            raise FfkitError(f"--set {text}: {role}={precision!r}: the precision is one of {', '.join(PRECISIONS)}")
        mix[role] = precision
    if not mix:
        raise FfkitError(f"--set {text!r}: give ROLE=VARIANT pairs, e.g. detector=int8,swapper=fp16")
    return mix


def parse_variants(text: str) -> list[str]:
    """``fp16,int8`` -> the candidate precisions (fp32 is the reference and is dropped)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in PRECISIONS]
    if bad or not items:
        raise FfkitError(f"--variants {text}: a comma list of {', '.join(PRECISIONS)}")
    return [v for v in dict.fromkeys(items) if v != "fp32"]


def _pick(settings, folder: Path, variant: Optional[str]) -> ModelSelection:
    return dataclasses.replace(settings, values={**settings.values, "variant": variant}).pick(folder)


def _fallbacks(selection: ModelSelection, wanted: dict[str, str], folder: Path) -> list[str]:
    return [f"{role}: no {wanted[role]} file in {folder}, uses {ref.path.name} ({ref.variant})"
            for role, ref in selection.used() if role in wanted and ref.precision != wanted[role]]


def _mixed(reference: ModelSet, mix: dict[str, str], folder: Path) -> ModelSet:
    refs, _ = scan_models(folder)
    chosen = dataclasses.replace(reference.selection, notes=[])
    for role, precision in mix.items():
        current = getattr(chosen, role)
        if current is None:
            raise FfkitError(f"--set {role}={precision}: the reference set of {folder} has no {role} (the swap "
                             "options do not ask for one)")
        match = sorted((r for r in refs if r.recipe.name == current.recipe.name and r.precision == precision),
                       key=lambda r: ("-" in r.variant, r.foreign, r.path.name))
        if not match:
            raise FfkitError(f"{folder}: --set {role}={precision}: no {precision} {current.recipe.name} file there")
        setattr(chosen, role, match[0])
    name = ",".join(f"{r}={p}" for r, p in mix.items())
    return ModelSet(name, chosen, folder)


def build_sets(settings, models: Path, *, variants: Sequence[str] = ("fp16", "int8"), against: Optional[Path] = None,
               mix: Optional[dict[str, str]] = None) -> list[ModelSet]:
    """``[reference, candidate...]`` (see the module docstring). ``settings``: the swap options'
    :class:`~ffkit.runtime.swap_options.SwapSettings` (the roles they ask for are picked).

    Raises:
        FfkitError: a folder lacking a role, a ``--set`` precision absent, no candidate at all.
    """
    models = Path(models)
    if against is not None:
        against = Path(against)
        reference = ModelSet(f"reference ({against.name})", _pick(settings, against, None), against)
        candidate = ModelSet(f"candidate ({models.name})", settings.pick(models), models)
        return [reference, candidate]
    reference = ModelSet("fp32", _pick(settings, models, "fp32"), models)
    sets = [reference]
    if mix:
        sets.append(_mixed(reference, mix, models))
        return sets
    for variant in variants:
        selection = _pick(settings, models, variant)
        wanted = {role: variant for role, _ in selection.used()}
        sets.append(ModelSet(variant, selection, models, _fallbacks(selection, wanted, models)))
    if len(sets) == 1:
        raise FfkitError(f"--variants: no candidate besides the FP32 reference (give fp16 and/or int8, --set or "
                         "--against)")
    return sets
