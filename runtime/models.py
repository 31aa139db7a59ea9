"""Pick the detector, embedder, swapper and enhancer artifacts out of a models folder.

Every ffkit artifact records its recipe (``ffkit.recipe``) and variant (``ffkit.variant``:
``fp32``, ``fp16``, ``int8``, optionally with a suffix such as ``fp32-unfused``) in its
``metadata_props``; files are chosen by those, never by file name. An ONNX file without ffkit
metadata (FaceFusion's and insightface's model files, Pytorch_Retinaface exports) is adopted
when its I/O signature fits one recipe (:mod:`ffkit.recipes.adoption`); files that fit none
are ignored and listed.

A folder ``ffkit tune`` filled holds a ``set.json`` (:data:`TUNED_SET`, read by
:func:`read_tuned_set` only): the file it chose per role. Without an explicit ``variant``,
:func:`pick_models` takes those files (``ModelSelection.tuned`` names the set); a
``variant`` given wins over it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ffkit.recipes import REGISTRY, get_recipe
from ffkit.recipes.adoption import resolve
from ffkit.recipes.errors import ArtifactError, FfkitError
from ffkit.recipes.inswapper.emap import choose_emap, emap_of
from ffkit.recipes.onnx_file import ModelInfo, read_model_info
from ffkit.recipes.roles import ROLE_NAMES, ROLE_TABLE
from ffkit.recipes.spec import Recipe

__all__ = ["ROLES", "PREFERENCE", "ModelRef", "ModelSelection", "identify", "scan_models", "check_pair",
           "require_role", "pick_models", "read_emap", "recipes_of", "wanted_roles", "TUNED_SET", "read_tuned_set"]

#: Every role, in pipeline order (:data:`ffkit.recipes.roles.ROLE_TABLE`).
ROLES = ROLE_NAMES

#: Within a role, which recipe wins when a folder holds several (best first; the roles table's).
PREFERENCE = {name: spec.preference for name, spec in ROLE_TABLE.items()}


@dataclass(frozen=True)
class ModelRef:
    """One usable ONNX file: its recipe (for a foreign inswapper, ``inswapper_128``'s), its
    variant, and whether it came without ffkit metadata (``foreign``)."""

    path: Path
    recipe: Recipe = field(repr=False)
    variant: str
    foreign: bool
    info: ModelInfo = field(repr=False)

    def __repr__(self) -> str:
        return f"ModelRef({str(self.path)!r}, {self.recipe.name}, {self.variant}{', foreign' if self.foreign else ''})"

    @property
    def role(self) -> str:
        return self.recipe.role

    @property
    def precision(self) -> str:
        """``fp32`` / ``fp16`` / ``int8``: the variant's first part."""
        return self.variant.split("-")[0]

    def describe(self) -> str:
        origin = "no ffkit metadata, recognised by its I/O" if self.foreign else "ffkit artifact"
        return f"{self.recipe.name} {self.variant} ({origin})"


@dataclass
class ModelSelection:
    """The artifacts ``ffkit swap`` runs; ``notes`` say about fallbacks and ignored files."""

    detector: ModelRef
    embedder: ModelRef
    swapper: ModelRef | None = None
    enhancer: ModelRef | None = None
    landmarker: ModelRef | None = None
    parser: ModelRef | None = None
    frame_enhancer: ModelRef | None = None
    notes: list[str] = field(default_factory=list)
    tuned: Path | None = None   # the set.json whose files were picked (``ffkit tune``), if any

    def used(self) -> list[tuple[str, ModelRef]]:
        return [(role, ref) for role in ROLES if (ref := getattr(self, role)) is not None]


def _precision(info: ModelInfo) -> str:
    """``fp32`` / ``fp16`` / ``int8`` of a file that records no variant, read from its graph."""
    ops = {op for _, op in info.op_types}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}:
        return "int8"
    return "fp16" if info.inputs and info.inputs[0].elem_type == 10 else "fp32"


def identify(path: str | os.PathLike, strict: bool = True, role: str | None = None,
             recipe_name: str | None = None) -> ModelRef | None:
    """What the ONNX file at ``path`` is: an ffkit artifact (its recorded recipe), or a file
    ffkit did not make, adopted by its I/O signature (:func:`ffkit.recipes.adoption.resolve`:
    ``recipe_name`` if given, else guessed among the recipes of ``role``). An inswapper-style
    file must hold its emap (insightface reads the last initializer).

    Returns None for a file that fits no recipe (or several) when not ``strict``; a file that
    records a recipe of this ffkit but does not have its I/O (mislabelled, damaged) always raises.

    Raises:
        ArtifactError: unreadable/truncated file; when ``strict``, also a file recording a recipe
            this ffkit lacks, or one that fits no recipe, several, or not ``recipe_name``.
    """
    path = Path(path)
    info = read_model_info(path)
    try:
        recipe, guessed = resolve(info, recipe_name, role)
        if guessed is not None and recipe.family == "inswapper" and choose_emap(info.initializers) is None:
            raise ArtifactError(f"{path}: looks like an inswapper_128 file but holds no emap (insightface reads it "
                                "as the last 512x512 initializer)")
    except FfkitError:
        if strict or info.metadata.get("ffkit.recipe") in REGISTRY:
            raise  # a file recording one of our recipes whose I/O is not that recipe's is never skipped
        return None
    if guessed is None:
        return ModelRef(path, recipe, info.metadata.get("ffkit.variant", "fp32"), False, info)
    return ModelRef(path, recipe, _precision(info), True, info)


def scan_models(folder: str | os.PathLike) -> tuple[list[ModelRef], list[Path]]:
    """Every ``*.onnx`` directly in ``folder``: ``(usable refs, ignored foreign files)``.

    Raises:
        FfkitError: the folder does not exist or is not a folder.
        ArtifactError: an ``.onnx`` file in it cannot be read (the message names it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FfkitError(f"{folder}: models folder not found" if not folder.exists()
                         else f"{folder}: not a folder (--models takes the folder `ffkit build` filled)")
    refs, ignored = [], []
    for path in sorted(folder.glob("*.onnx")):
        if path.name.startswith("."):  # temp files of an atomic write in progress
            continue
        ref = identify(path, strict=False)
        (refs.append(ref) if ref is not None else ignored.append(path))
    return refs, ignored


def wanted_roles(values: Mapping[str, Any]) -> frozenset[str]:
    """The optional roles the swap option values ``values`` (field name -> value) ask for
    (:meth:`RoleSpec.asks`: ``enhance`` -> enhancer, ``landmarks`` 68 -> landmarker, ``mask``
    with ``region`` -> parser, ``frame_enhance`` -> frame_enhancer)."""
    return frozenset(name for name, spec in ROLE_TABLE.items() if not spec.required and spec.asks(values))


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def recipes_of(role: str) -> tuple[str, ...]:
    """The registered recipes that fill ``role``, preferred first (:meth:`RoleSpec.recipes`)."""
    return ROLE_TABLE[role].recipes(REGISTRY)


def _recipes_of(role: str) -> str:
    return ", ".join(recipes_of(role))


def require_role(path: str | os.PathLike, role: str, option: str, recipe_name: str | None = None) -> ModelRef:
    """The model at ``path``, which must be a ``role``: an ffkit artifact of that role, or a file
    ffkit did not make that fits one of the role's recipes (``recipe_name`` says which, else it
    is guessed); otherwise a one-line error naming the file."""
    path = Path(path)
    ref = identify(path, role=role, recipe_name=recipe_name)
    if ref.role != role:
        raise ArtifactError(f"{path}: is {_a(ref.role)} artifact ({ref.recipe.name}), "
                            f"but {option} needs {_a(role)} ({_recipes_of(role)})")
    return ref


#: The file ``ffkit tune`` writes in a models folder: the chosen file per role.
TUNED_SET = "set.json"


def read_tuned_set(folder: str | os.PathLike) -> dict | None:
    """``folder``'s tuned set (``{"roles": {role: {"file", "recipe", "variant", "size", ...}}, ...}``),
    or None when it has none. One-line FfkitError for a set.json that is not one."""
    path = Path(folder) / TUNED_SET
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FfkitError(f"{path}: not a tuned set written by ffkit tune ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != "ffkit-tuned-set" or not isinstance(data.get("roles"), dict):
        raise FfkitError(f"{path}: not a tuned set written by ffkit tune (no format/roles); remove or rename it")
    return data


def _tuned_refs(folder: Path, refs: list[ModelRef], notes: list[str]) -> tuple[list[ModelRef], Path | None]:
    """``refs`` without the files the tuned set of ``folder`` did not choose (for each role it
    names, the other files of the chosen recipe), and the set's path; unchanged when the folder
    has no set or a file it names is missing or changed (a note says so)."""
    data = read_tuned_set(folder)
    if data is None:
        return refs, None
    chosen = {}
    for role, entry in data["roles"].items():
        ref = next((r for r in refs if r.path.name == entry.get("file") and r.role == role), None)
        if ref is None or ref.path.stat().st_size != entry.get("size", ref.path.stat().st_size):
            notes.append(f"{TUNED_SET}: {role} file {entry.get('file')} is missing or changed; the tuned set is "
                         "not used (run ffkit tune again)")
            return refs, None
        chosen[role] = ref
    kept = [r for r in refs if r.role not in chosen or r.recipe.name != chosen[r.role].recipe.name
            or r is chosen[r.role]]
    return kept, folder / TUNED_SET


def _rank(ref: ModelRef, variant: str | None, role: str) -> tuple:
    order = PREFERENCE.get(role, ())
    precision_rank = {"fp32": 1, "fp16": 2, "int8": 3}
    return (0 if variant and ref.precision == variant else 1,
            precision_rank.get(ref.precision, 4),
            order.index(ref.recipe.name) if ref.recipe.name in order else len(order),
            ref.foreign, "-" in ref.variant, ref.path.name)


def _choose(refs: list[ModelRef], role: str, variant: str | None, folder: Path,
            notes: list[str]) -> ModelRef | None:
    candidates = [r for r in refs if r.role == role]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: _rank(r, variant, role))
    if variant and best.precision != variant:
        notes.append(f"no {variant} {role} in {folder}; using {best.path.name} ({best.variant})")
    return best


def _missing(folder: Path, role: str, refs: list[ModelRef]) -> FfkitError:
    have = ", ".join(f"{r.path.name} ({r.recipe.name})" for r in refs) or "no ONNX artifacts"
    return FfkitError(f"{folder}: {ROLE_TABLE[role].missing(recipes_of(role))} in the models folder; it has: {have}")


def check_pair(embedder: ModelRef, swapper: ModelRef) -> None:
    """One line naming both files unless ``embedder`` produces the identity space ``swapper``
    consumes (inswapper's emap expects insightface's ArcFace, SimSwap its own netArc)."""
    want, have = swapper.recipe.identity_space, embedder.recipe.identity_space
    if want is not None and have != want:
        raise FfkitError(f"{embedder.path.name} ({embedder.recipe.name}) produces {have or 'unknown'} identities but "
                         f"{swapper.path.name} ({swapper.recipe.name}) consumes {want}; use an embedder of "
                         f"{_producers(want)}")


def _producers(space: str) -> str:
    return ", ".join(r.name for r in REGISTRY.values() if r.role == "embedder" and r.identity_space == space)


def _embedder_for(swapper: ModelRef, refs: list[ModelRef], variant: str | None, folder: Path,
                  notes: list[str]) -> ModelRef:
    """The best embedder in the folder that produces the identity space ``swapper`` consumes."""
    space = swapper.recipe.identity_space
    fitting = [r for r in refs if r.role == "embedder" and (space is None or r.recipe.identity_space == space)]
    best = _choose(fitting, "embedder", variant, folder, notes)
    if best is None:
        there = ", ".join(f"{r.path.name} ({r.recipe.identity_space})" for r in refs if r.role == "embedder")
        raise FfkitError(f"{folder}: {swapper.path.name} ({swapper.recipe.name}) consumes {space} identities and no "
                         f"embedder there produces them (has: {there or 'none'}); build one of {_producers(space)}")
    check_pair(best, swapper)
    return best


def _pick_swapper(swapper: str | None, refs: list[ModelRef], variant: str | None, folder: Path,
                  notes: list[str]) -> ModelRef:
    """The swapper ``--swapper`` names (None: the best in the folder): a recipe, a file in the
    folder or a path (see :func:`pick_models`)."""
    if swapper is None:
        best = _choose(refs, "swapper", variant, folder, notes)
        if best is None:
            raise _missing(folder, "swapper", refs)
        return best
    if swapper in REGISTRY:
        recipe = get_recipe(swapper)
        if recipe.role != "swapper":
            raise FfkitError(f"--swapper {swapper}: {swapper} is {_a(recipe.role)}, not a swapper "
                             f"({_recipes_of('swapper')})")
        best = _choose([r for r in refs if r.recipe.name == swapper], "swapper", variant, folder, notes)
        if best is None:
            raise FfkitError(f"{folder}: no {swapper} artifact in the models folder; swappers there: "
                             f"{', '.join(r.path.name for r in refs if r.role == 'swapper') or 'none'}")
        return best
    path = Path(swapper)
    if not path.exists() and (folder / swapper).exists():
        path = folder / swapper
    if not path.exists():
        raise FfkitError(f"--swapper {swapper}: neither a swapper recipe ({_recipes_of('swapper')}), "
                         f"nor a file in {folder}, nor an ONNX file")
    return require_role(path, "swapper", "--swapper")


def pick_models(folder: str | os.PathLike, *, swapper: str | None = None, variant: str | None = None,
                enhance: bool = False, need_swapper: bool = True, landmarks68: bool = False,
                parser: bool = False, frame_enhance: str | None = None, roles: Iterable[str] = ()) -> ModelSelection:
    """Choose one artifact per role from ``folder``.

    Args:
        folder: the folder ``ffkit build`` filled (``*.onnx`` files directly in it).
        swapper: None (best available: inswapper_128, simswap_512, simswap_224), a recipe name,
            a file name in ``folder``, or a path to an ONNX file elsewhere (e.g. insightface's
            ``inswapper_128.onnx``).
        variant: preferred precision ``fp32`` / ``fp16`` / ``int8``; a role without it falls
            back to the best other precision (fp32 first), with a note. None: the folder's
            tuned set (``set.json`` of ``ffkit tune``) when it has one, else fp32 first.
        enhance: also pick the enhancer (GFPGAN); with a parser in the folder, it is picked too
            (the restored face is then pasted inside the parser's face region).
        need_swapper: False to pick only detector and embedder (``--reference`` matching).
        landmarks68: also pick the 68-point landmarker (align from 68 points).
        parser: also pick the face parser (``--mask region``).
        frame_enhance: also pick this frame enhancer recipe (``realesrgan_x4plus`` ...), or
            ``"auto"`` for the best one in the folder.
        roles: optional roles to pick besides those (``enhancer``, ``landmarker``, ``parser``:
            :func:`wanted_roles` of the swap options); the flags above add to it.

    The embedder is the best one producing the identity space the swapper consumes
    (``Recipe.identity_space``: insightface's ArcFace for inswapper, SimSwap's own for SimSwap).

    Raises:
        FfkitError: the folder lacks a needed role or an embedder of the swapper's identity space,
            or ``swapper`` names a file of another role.
    """
    folder = Path(folder)
    refs, ignored = scan_models(folder)
    notes = [f"ignored {p.name}: records no ffkit recipe and its I/O fits no single recipe" for p in ignored]
    tuned = None
    if variant is None:
        refs, tuned = _tuned_refs(folder, refs, notes)
    chosen: dict[str, ModelRef | None] = {}
    for role in ("detector", "embedder"):
        if role == "embedder" and need_swapper:
            continue  # chosen after the swapper: it must produce the identities the swapper consumes
        chosen[role] = _choose(refs, role, variant, folder, notes)
        if chosen[role] is None:
            raise _missing(folder, role, refs)
    if need_swapper and not any(r.role == "embedder" for r in refs):
        raise _missing(folder, "embedder", refs)
    chosen["swapper"] = _pick_swapper(swapper, refs, variant, folder, notes) if need_swapper else None
    if chosen["swapper"] is not None:
        chosen["embedder"] = _embedder_for(chosen["swapper"], refs, variant, folder, notes)
    wanted = set(roles) | {role for role, asked in (("enhancer", enhance), ("landmarker", landmarks68),
                                                     ("parser", parser)) if asked}
    for role in ROLE_NAMES:
        if ROLE_TABLE[role].required or role == "frame_enhancer":
            continue
        chosen[role] = _choose(refs, role, variant, folder, notes) if role in wanted else None
        if role in wanted and chosen[role] is None:
            raise _missing(folder, role, refs)
    if "enhancer" in wanted and "parser" not in wanted:   # face-only restore: the parser's region when there
        chosen["parser"] = _choose(refs, "parser", variant, folder, notes)
    chosen["frame_enhancer"] = None
    if frame_enhance:
        pool = refs if frame_enhance == "auto" else [r for r in refs if r.recipe.name == frame_enhance]
        if frame_enhance != "auto" and frame_enhance not in REGISTRY:
            raise FfkitError(f"--frame-enhance {frame_enhance}: not a frame enhancer ({_recipes_of('frame_enhancer')})")
        chosen["frame_enhancer"] = _choose(pool, "frame_enhancer", variant, folder, notes)
        if chosen["frame_enhancer"] is None:
            raise FfkitError(f"{folder}: no {frame_enhance if frame_enhance != 'auto' else 'frame enhancer'} "
                             f"artifact in the models folder ({_recipes_of('frame_enhancer')}); build one")
    selection = ModelSelection(notes=notes, tuned=tuned, **chosen)
    if tuned is not None:
        notes.append(f"tuned set picked ({tuned}, ffkit tune): " + ", ".join(
            f"{role} {ref.variant}" for role, ref in selection.used()) + "; --variant overrides it")
    return selection


def read_emap(ref: ModelRef) -> np.ndarray:
    """The 512x512 float32 emap of an inswapper artifact (:func:`ffkit.recipes.inswapper.emap.emap_of`:
    the initializer named ``emap``, else a 512x512 last one, as insightface reads it).

    Raises:
        ArtifactError: the artifact holds none (exported without ``--emap``).
    """
    return emap_of(ref.info)
