"""Adopting ONNX files ffkit did not make: which recipe a file is, and the recipe bound to its names.

Users hold exports made elsewhere (Pytorch_Retinaface's, insightface's ``w600k_r50.onnx`` and
``inswapper_128.onnx``, FaceFusion's model files). A file is matched against every recipe by its
I/O signature, read without loading weights (:class:`~ffkit.recipes.onnx_file.ModelInfo`):

* the same number of inputs and outputs, each of the same rank and element type (float);
* every axis the recipe fixes (``3``, ``112``, ``512``...) equal where the file fixes it too; a
  file may fix an axis the recipe leaves dynamic (batch 1), never the other way round;
* names are not required to agree: tensors are paired by name (or a name the recipe lists in
  ``io_aliases``) when every one finds its partner, else by position; agreeing names make a
  match more certain;
* recipes that stay alike after that (IResNet-18/50/100) are told apart by parameter count,
  within :data:`PARAM_TOLERANCE` of the recipe's ``num_params``.

:func:`bind` returns the recipe with the FILE's input and output names (and, for an embedder
whose first nodes fold ``(x - 127.5) / 127.5`` in, as insightface's ``ArcFaceONNX`` detects
it, raw-pixel input), so every stage, check and runtime module works on the file unchanged.
:func:`provenance` is what an artifact written from an adopted file records about its source.
Torch-free.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ArtifactError
from .onnx_file import ModelInfo, TensorInfo
from .paths import sha256_of
from .spec import PixelFormat, Recipe, TensorSpec

__all__ = ["Match", "PARAM_TOLERANCE", "signature_of", "match", "candidates", "guess", "bind", "provenance",
           "folded_normalisation"]

#: A file's parameter count may differ from the recipe's ``num_params`` by this fraction
#: (BatchNorm folded into convolutions removes ~0.1-0.5%; an emap or quantization scales add some).
PARAM_TOLERANCE = 0.10

_FLOAT_TYPES = (1, 10)  # ONNX float32, float16


@dataclass(frozen=True)
class Match:
    """How well one recipe fits one file: ``differences`` empty means it fits; ``score`` ranks
    fitting recipes (agreeing names, parameter count)."""

    recipe: Recipe
    differences: tuple[str, ...]
    score: float

    @property
    def fits(self) -> bool:
        return not self.differences


def _shape_text(shape: Sequence) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def signature_of(info: ModelInfo) -> str:
    """``in: input 1x3x112x112 -> out: 683 1x512``: a file's I/O as one line."""
    ins = ", ".join(f"{t.name} {_shape_text(t.shape)}" for t in info.inputs)
    outs = ", ".join(f"{t.name} {_shape_text(t.shape)}" for t in info.outputs)
    return f"in: {ins} -> out: {outs}"


def _graph_inputs(info: ModelInfo) -> tuple[TensorInfo, ...]:
    """Inputs that are real inputs (old exporters list initializers as graph inputs too)."""
    weights = {init.name for init in info.initializers}
    return tuple(t for t in info.inputs if t.name not in weights)


def _compare(spec: TensorSpec, have: TensorInfo, where: str) -> list[str]:
    if have.elem_type not in _FLOAT_TYPES:
        return [f"{where} {have.name} is not float"]
    if len(have.shape) != len(spec.shape):
        return [f"{where} {have.name} has rank {len(have.shape)}, {spec.name} has {len(spec.shape)}"]
    wrong = [f"axis {i} is {d} not {want}" for i, (d, want) in enumerate(zip(have.shape, spec.shape))
             if isinstance(want, int) and isinstance(d, int) and d != want]
    return [f"{where} {have.name} {_shape_text(have.shape)}: {'; '.join(wrong)} "
            f"({spec.name} {_shape_text(spec.shape)})"] if wrong else []


def _names_agree(spec: TensorSpec, have: TensorInfo, recipe: Recipe) -> bool:
    return have.name == spec.name or have.name in recipe.io_aliases.get(spec.name, ())


def _pair(specs: Sequence[TensorSpec], have: Sequence[TensorInfo], recipe: Recipe) -> list[TensorInfo]:
    """The file's tensor for each recipe spec: by name (or alias) when every spec finds one,
    else by position (FaceFusion's swappers list ``source`` before ``target``)."""
    by_name = []
    for spec in specs:
        named = [h for h in have if _names_agree(spec, h, recipe)]
        if len(named) != 1:
            return list(have)
        by_name.append(named[0])
    return by_name if len({h.name for h in by_name}) == len(by_name) else list(have)


def match(recipe: Recipe, info: ModelInfo, count_params: bool = True) -> Match:
    """How ``recipe`` fits the file ``info`` describes (see the module docstring); without
    ``count_params`` the parameter count is not compared (a recorded recipe is trusted)."""
    inputs = _graph_inputs(info)
    diffs: list[str] = []
    if len(inputs) != len(recipe.inputs):
        diffs.append(f"{len(inputs)} inputs, {recipe.name} has {len(recipe.inputs)}")
    if len(info.outputs) != len(recipe.outputs):
        diffs.append(f"{len(info.outputs)} outputs, {recipe.name} has {len(recipe.outputs)}")
    score = 0.0
    if not diffs:
        pairs = [("input", s, h) for s, h in zip(recipe.inputs, _pair(recipe.inputs, inputs, recipe))] + \
                [("output", s, h) for s, h in zip(recipe.outputs, _pair(recipe.outputs, info.outputs, recipe))]
        for where, spec, have in pairs:
            diffs += _compare(spec, have, where)
            score += _names_agree(spec, have, recipe)
            score -= len(have.shape) != len(spec.shape)     # another rank: a worse "closest" than another axis
    if recipe.num_params and count_params:
        count = info.parameter_count
        off = abs(count - recipe.num_params) / recipe.num_params
        if off > PARAM_TOLERANCE:
            diffs.append(f"{count / 1e6:.2f} M parameters, {recipe.name} has {recipe.num_params / 1e6:.2f} M")
        else:
            score += 1.0 - off
    return Match(recipe, tuple(diffs), score)


def candidates(info: ModelInfo, recipes: Iterable[Recipe]) -> list[Match]:
    """Every recipe's :class:`Match` for the file, fitting ones first, best score first."""
    found = [match(r, info) for r in recipes]
    return sorted(found, key=lambda m: (not m.fits, -m.score, len(m.differences)))


def guess(info: ModelInfo, recipes: Iterable[Recipe], option: str = "--recipe") -> Recipe:
    """The one recipe the file fits, bound to the file (:func:`bind`).

    Raises:
        ArtifactError: no recipe fits (naming the closest and what differs), or several fit
            equally well (naming them and ``option`` to choose).
    """
    ranked = candidates(info, list(recipes))
    fitting = [m for m in ranked if m.fits]
    if not fitting:
        if not ranked:
            raise ArtifactError(f"{info.path}: no recipe to compare it with")
        close = ranked[0]
        raise ArtifactError(f"{info.path}: records no ffkit recipe and its I/O ({signature_of(info)}) matches none; "
                            f"closest is {close.recipe.name}: {'; '.join(close.differences[:3])}")
    best = [m for m in fitting if m.score >= fitting[0].score - 1e-9]
    if len(best) > 1:
        names = ", ".join(m.recipe.name for m in best)
        raise ArtifactError(f"{info.path}: records no ffkit recipe and fits several ({names}); "
                            f"say which with {option} NAME")
    return bind(best[0].recipe, info)


def folded_normalisation(info: ModelInfo) -> bool:
    """insightface ``ArcFaceONNX``'s test: the first 8 nodes hold a Sub and a Mul (names
    starting ``Sub``/``_minus`` and ``Mul``/``_mul``), i.e. ``(x - mean) * scale`` is in the
    graph and the model takes raw pixels."""
    names = [name for name, _ in info.head_nodes]
    sub = any(n.startswith(("Sub", "_minus")) for n in names)
    mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return sub and mul


def bind(recipe: Recipe, info: ModelInfo, count_params: bool = True) -> Recipe:
    """``recipe`` with the file's input/output names, fixed axes and pixel format.

    Raises:
        ArtifactError: the file does not fit ``recipe`` (one line naming the first differences).
    """
    found = match(recipe, info, count_params)
    if not found.fits:
        raise ArtifactError(f"{info.path}: is not a {recipe.name} model: {'; '.join(found.differences[:3])}")
    inputs = _graph_inputs(info)

    def renamed(specs: Sequence[TensorSpec], have: Sequence[TensorInfo]) -> tuple[TensorSpec, ...]:
        return tuple(dataclasses.replace(s, name=h.name, shape=tuple(
            d if isinstance(d, int) and not isinstance(want, int) and d > 0 else want
            for d, want in zip(h.shape, s.shape))) for s, h in zip(specs, have))

    changes: dict = {"inputs": renamed(recipe.inputs, _pair(recipe.inputs, inputs, recipe)),
                     "outputs": renamed(recipe.outputs, _pair(recipe.outputs, info.outputs, recipe))}
    fixed_batch = any(isinstance(t.shape[0], int) for t in changes["inputs"] if t.shape)
    if fixed_batch:
        changes["dynamic_batch"] = False
        changes["sample_dims"] = {k: v for k, v in recipe.sample_dims.items()} | {"N": 1}
        changes["alt_dims"] = {k: v for k, v in recipe.alt_dims.items() if k != "N"}
    if recipe.role == "embedder" and recipe.pixels is not None and folded_normalisation(info):
        changes["pixels"] = PixelFormat(colour=recipe.pixels.colour, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return dataclasses.replace(recipe, **changes)


def check_recorded(recipe: Recipe, info: ModelInfo) -> None:
    """The file that records ``recipe`` (ffkit wrote it with the recipe's own names) has that
    recipe's inputs and outputs, by name, rank and fixed axes; else a one-line ArtifactError:
    a mislabelled or damaged file is refused before anything feeds it the recipe's inputs."""
    have_in = {t.name for t in _graph_inputs(info)}
    have_out = {t.name for t in info.outputs}
    want_in, want_out = set(recipe.input_names), {t.name for t in recipe.outputs}
    found = match(recipe, info, count_params=False)
    if have_in == want_in and have_out == want_out and found.fits:
        return
    differences = list(found.differences) or [
        f"{what} {', '.join(sorted(have)) or 'none'}, {recipe.name} has {', '.join(sorted(want))}"
        for what, have, want in (("inputs", have_in, want_in), ("outputs", have_out, want_out)) if have != want]
    raise ArtifactError(f"{info.path}: records recipe {recipe.name} but its I/O ({signature_of(info)}) is not "
                        f"that recipe's: {'; '.join(differences[:3])} (mislabelled or damaged file)")


def provenance(path: str | os.PathLike, guessed: bool) -> dict:
    """What an artifact written from the adopted file at ``path`` records (``ffkit.adopted``):
    source file name, its sha256, and whether the recipe was guessed or named."""
    path = Path(path)
    return {"source": path.name, "sha256": sha256_of(path), "recipe_from": "guessed" if guessed else "named"}


def resolve(info: ModelInfo, recipe_name: str | None = None, role: str | None = None,
            option: str = "--recipe") -> tuple[Recipe, bool | None]:
    """The recipe of the ONNX file ``info`` describes, bound to its names, and how it was found:
    None (recorded in the file), True (guessed) or False (named). Nothing is hashed here: the
    runtime scans models folders with it; :func:`provenance` is for what is written.

    * A file that records ``ffkit.recipe`` is that recipe (bound to the file's names when it was
      written from an adopted file, i.e. records ``ffkit.adopted``); provenance None (recorded).
    * Otherwise ``recipe_name`` if given (the file must fit it), else :func:`guess` among the
      recipes of ``role`` (all when None).

    Raises:
        ArtifactError / FfkitError: unknown recipe name, recorded recipe this ffkit lacks, a
            file that fits no recipe or several, or not the one named.
    """
    from . import REGISTRY, get_recipe

    recorded = info.metadata.get("ffkit.recipe")
    if recorded is not None:
        if recorded not in REGISTRY:
            raise ArtifactError(f"{info.path}: records recipe {recorded!r}, which this ffkit does not know")
        if recipe_name and recipe_name != recorded:
            raise ArtifactError(f"{info.path}: is a {recorded} artifact, not {recipe_name}")
        recipe = get_recipe(recorded)
        if "ffkit.adopted" in info.metadata:
            return bind(recipe, info, count_params=False), None
        check_recorded(recipe, info)
        return recipe, None
    if recipe_name:  # named: the signature must fit; the parameter count only breaks ties when guessing
        recipe = bind(get_recipe(recipe_name), info, count_params=False)
    else:
        pool = [r for r in REGISTRY.values() if role is None or r.role == role]
        recipe = guess(info, pool, option)
    return recipe, not recipe_name


