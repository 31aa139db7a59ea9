"""Which variants a benchmark times, and the arithmetic each does.

:func:`discover` turns artifact paths / folders (and an optional checkpoint) into
:class:`Variant` s, labelled from the artifact's own metadata (``ffkit.variant`` and the stage
names of ``ffkit.history``, see :func:`variant_label`), never from the file name; a
reduced-precision variant carries its accuracy-budget check, re-judged against the recipe's
current budget (:func:`_accuracy`). :func:`count_variant_flops` fills a variant's FLOPs per
batch at the benchmark dims (:func:`bench_dims`, FLOPs from :mod:`ffkit.validation.flops`);
:func:`_flops_candidates` / :func:`_flops_reference` pick whose count defines a group's FLOPs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ffkit.recipes.errors import ArtifactError, FfkitError

#: Display order of the variant labels; anything else sorts after.
LABELS = ("torch-eager", "onnx-fp32", "simplified", "optimized", "fp16", "int8")
EAGER, BASELINE = "torch-eager", "onnx-fp32"

#: Stage names (``ffkit.history``) that mark a variant, most specific first.
_STAGE_LABELS = (("int8", "int8"), ("quantize", "int8"), ("fp16", "fp16"), ("optimize", "optimized"),
                 ("simplify", "simplified"))


@dataclass
class Variant:
    """One thing to time: an ONNX artifact, or the recipe's PyTorch model (``kind == "torch"``).

    ``flops`` maps batch size to FLOPs per inference at the benchmark dims (filled by
    :func:`count_variant_flops`); ``fixed_batch`` is the artifact's static batch, if any.
    """

    label: str
    kind: str  # "onnx" | "torch"
    recipe: str | None
    path: Path | None = None
    checkpoint: Path | None = None
    precision: str = "fp32"
    variant: str = ""
    stages: list[str] = field(default_factory=list)
    fixed_batch: int | None = None
    flops: dict[int, int] = field(default_factory=dict)
    accuracy: dict | None = None  # the reduced-precision stage's budget check, from ffkit.history

    @property
    def group(self) -> str:
        """What the variant is compared within: its recipe, or the file stem when it records none."""
        return self.recipe or (self.path.stem if self.path else "?")

    @property
    def key(self) -> str:
        return f"{self.group}/{self.label}"

    def as_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind, "recipe": self.recipe, "path": str(self.path) if self.path else None,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "precision": self.precision,
                "variant": self.variant, "stages": self.stages, "fixed_batch": self.fixed_batch,
                "flops": {str(k): v for k, v in self.flops.items()}, "accuracy": self.accuracy}


def variant_label(variant: str, stages: Sequence[str]) -> tuple[str, str]:
    """``(label, precision)`` from ``ffkit.variant`` (``fp32``, ``fp32-unfused``, ``int8`` ...) and
    the history's stage names. Precision comes from the variant string or a precision stage; the
    label is the most specific stage (int8 > fp16 > optimized > simplified > onnx-fp32). Extra
    variant words (``unfused``) and stages of other names (``prelu_rewrite``) are appended as
    ``+word``."""
    parts = [p for p in (variant or "fp32").split("-") if p]
    label = BASELINE
    for stage, name in _STAGE_LABELS:
        if stage in stages or stage in parts:
            label = name
            break
    precision = next((p for p in ("int8", "fp16") if p in parts or label == p), "fp32")
    extra = [p for p in parts if p not in ("fp32", "fp16", "int8")]
    known = {"export", *(stage for stage, _ in _STAGE_LABELS)}
    extra += [st for st in stages if st and st not in known and st not in extra]
    return (label + "".join(f"+{w}" for w in extra), precision)


def _sort_key(v: Variant) -> tuple:
    from ffkit.recipes import REGISTRY

    order = list(REGISTRY)
    r = order.index(v.recipe) if v.recipe in order else len(order)
    base = v.label.split("+")[0]
    lab = LABELS.index(base) if base in LABELS else len(LABELS)
    return (r, v.group, lab, v.label)


def _onnx_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.onnx") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ArtifactError(f"{path}: no ONNX artifacts in this folder")
        return files
    if not path.exists():
        raise ArtifactError(f"{path}: no such file or folder")
    return [path]


def _find_checkpoint(folder: Path, recipe: str) -> Path | None:
    for ext in (".pth", ".pt", ".ckpt", ".bin", ".safetensors"):
        exact = folder / f"{recipe}{ext}"
        if exact.is_file():
            return exact
    hits = sorted(p for p in folder.glob(f"{recipe}*") if p.suffix in (".pth", ".pt", ".ckpt") and p.is_file())
    return hits[0] if hits else None


def _guessed_recipe(path: Path) -> str | None:
    """The recipe a file ffkit did not make fits by its I/O signature, or None (it is then timed
    on uniform inputs at its own shapes)."""
    from ffkit.recipes.adoption import resolve
    from ffkit.recipes.onnx_file import read_model_info

    try:
        return resolve(read_model_info(path))[0].name
    except FfkitError:
        return None


def discover(paths: Iterable[str | os.PathLike], recipe: str | None = None,
             checkpoint: str | os.PathLike | None = None, eager: bool = True) -> list[Variant]:
    """The variants to benchmark, sorted by recipe then :data:`LABELS`.

    ``paths``: ONNX files and/or folders (searched recursively for ``*.onnx``); a missing path,
    a non-ONNX file or a folder without artifacts is a one-line error. ``recipe`` is used for
    artifacts that record none and names the checkpoint's recipe. ``checkpoint``: a published
    checkpoint file (its recipe: ``recipe``, or the single recipe among the artifacts) or a
    folder holding ``<recipe>.pth`` files; with ``eager`` and torch importable, each such recipe
    gets a ``torch-eager`` variant.
    """
    from ffkit.recipes import artifact, get_recipe, onnx_file

    if recipe is not None:
        get_recipe(recipe)  # one-line error for a typo
    found: list[Variant] = []
    for raw in paths:
        for file in _onnx_files(Path(raw)):
            proto = onnx_file.load_onnx(file, load_weights=False)
            meta = artifact.metadata(proto)
            name = meta.get("ffkit.recipe") or recipe or _guessed_recipe(file)
            if name is not None:
                get_recipe(name)
            hist = json.loads(meta.get("ffkit.history", "[]"))
            stages = [h.get("stage", "") for h in hist]
            label, precision = variant_label(meta.get("ffkit.variant", "fp32"), stages)
            found.append(Variant(label, "onnx", name, path=file, precision=precision,
                                 variant=meta.get("ffkit.variant", ""), stages=stages,
                                 fixed_batch=_fixed_batch(proto), accuracy=_accuracy(hist, name)))
            del proto
    recipes_seen = list(dict.fromkeys(v.recipe for v in found if v.recipe))
    if checkpoint is not None and eager:
        ck = Path(checkpoint)
        if ck.is_dir():
            targets = [recipe] if recipe else recipes_seen
            for r in targets:
                file = _find_checkpoint(ck, r)
                if file is not None:
                    found.append(Variant(EAGER, "torch", r, checkpoint=file))
        elif ck.is_file():
            owner = recipe or (recipes_seen[0] if len(recipes_seen) == 1 else None)
            if owner is None:
                raise FfkitError(f"{ck}: which recipe is this checkpoint for? pass --recipe "
                                 f"(artifacts hold {', '.join(recipes_seen) or 'none'})")
            found.append(Variant(EAGER, "torch", owner, checkpoint=ck))
        else:
            raise FfkitError(f"{ck}: no such checkpoint file or folder")
    if not found:
        raise ArtifactError("nothing to benchmark: give ONNX artifacts or a folder of them (and --checkpoint for PyTorch)")
    # Disambiguate equal labels (two files of one recipe with the same history).
    seen: dict[str, int] = {}
    for v in sorted(found, key=_sort_key):
        seen[v.key] = seen.get(v.key, 0) + 1
        if seen[v.key] > 1:
            v.label = f"{v.label}#{seen[v.key]}"
    return sorted(found, key=_sort_key)


def _accuracy(history: list[dict], recipe_name: str | None = None) -> dict | None:
    """``{"stage", "budget_met", "outputs": {name: {"criterion", "value", "passed"}}}`` of the last
    stage that checked an accuracy budget (fp16 / int8), or None. ``budget_met`` is re-judged
    against the recipe's *current* budget for that precision when the recorded metric is the
    budget's (budgets may have been tightened since the artifact was built); the recorded
    verdict is kept as ``budget_met_when_built``."""
    for record in reversed(history):
        figures = record.get("figures") or {}
        if "budget_met" not in figures:
            continue
        budget = None
        if recipe_name:
            from ffkit.recipes import get_recipe

            budget = get_recipe(recipe_name).budgets.get(record.get("stage", ""))
        outputs, verdicts = {}, []
        for name, fig in (figures.get("accuracy") or {}).items():
            crit = str(fig.get("criterion", ""))
            metric = crit.split()[0] if crit else None
            value = fig.get(metric) if metric else None
            passed = fig.get("passed")
            if budget is not None and value is not None and metric == budget.metric:
                passed = budget.passes(float(value))
                crit = f"{budget.metric} {'>=' if budget.higher_is_better else '<='} {budget.threshold:g} (current budget)"
            outputs[name] = {"criterion": crit, "value": value, "passed": passed}
            verdicts.append(bool(passed))
        met = all(verdicts) if verdicts else bool(figures["budget_met"])
        return {"stage": record.get("stage"), "budget_met": met, "budget_met_when_built": bool(figures["budget_met"]),
                "outputs": outputs}
    return None


def _fixed_batch(proto) -> int | None:
    """The static first axis of the first graph input, or None when it is dynamic."""
    inits = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
        return None
    return None


def bench_dims(recipe_name: str | None, batch: int, dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """Named dims for one batch: the recipe's sample dims, overridden by ``dims``, with ``N = batch``."""
    base: dict[str, int] = {}
    if recipe_name:
        from ffkit.recipes import get_recipe

        base.update(get_recipe(recipe_name).sample_dims)
    base.update(dims or {})
    base["N"] = batch
    return base


def count_variant_flops(v: Variant, batches: Sequence[int], dims: Mapping[str, int] | None = None) -> None:
    """Fill ``v.flops`` for each batch (ONNX variants only; a torch variant borrows its recipe's)."""
    from ffkit.recipes.onnx_file import load_onnx
    from ffkit.validation.flops import count_flops

    if v.kind != "onnx":
        return
    proto = load_onnx(v.path)
    for b in batches:
        if v.fixed_batch is not None and v.fixed_batch != b:
            continue
        try:
            v.flops[b] = count_flops(proto, bench_dims(v.recipe, b, dims)).total
        except FfkitError:
            pass
    del proto


def _flops_candidates(variants: Sequence[Variant], count_all: bool = False) -> list[Variant]:
    """The ONNX variants whose FLOPs get counted: every one with ``count_all``, else one per group,
    the cheapest to count that does the reference arithmetic (simplified graphs need no
    onnxruntime pass for their shapes; then the plain export; then any FP32; then any)."""
    onnx_vs = [v for v in variants if v.kind == "onnx"]
    if count_all:
        return onnx_vs
    picked = []
    for group in dict.fromkeys(v.group for v in onnx_vs):
        members = [v for v in onnx_vs if v.group == group]
        for pick in (lambda o: o.label == "simplified", lambda o: o.label == BASELINE,
                     lambda o: o.precision == "fp32", lambda o: True):
            hit = next((o for o in members if pick(o)), None)
            if hit is not None:
                picked.append(hit)
                break
    return picked


def _flops_reference(same: Iterable[Variant]) -> Variant | None:
    """The variant whose graph defines a group's FLOPs (every variant does the same arithmetic;
    fused, NCHWc-blocked or quantized graphs just count it less cleanly): the simplified or plain
    FP32 export if counted, else the first counted FP32 ONNX variant, else any counted one."""
    onnx_vs = [o for o in same if o.kind == "onnx" and o.flops]
    for pick in (lambda o: o.label in ("simplified", BASELINE), lambda o: o.precision == "fp32", lambda o: True):
        hit = next((o for o in onnx_vs if pick(o)), None)
        if hit is not None:
            return hit
    return None
