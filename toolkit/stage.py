"""What every conversion stage shares (Olive-style passes over ONNX artifacts).

A stage is a small dataclass whose fields are its typed, documented parameters and whose
``run(in_path, out_path) -> StageResult`` reads one ffkit artifact and writes a new one. Every
stage, through :func:`finish`:

- keeps the ``ffkit.*`` metadata of its input (tools drop or keep it unpredictably),
- carries initializers no node uses (the inswapper emap) bit-exact to the END of the output,
- appends itself to ``ffkit.history`` (stage, parameters, tool versions, figures),
- writes atomically: a failed stage leaves no output file and an existing one untouched.

FP32-equivalent stages (simplify, optimize) also call :func:`check_fp32` (outputs within the
recipe's FP32 tolerance of the input's, at the sample shape and at a second shape along every
dynamic axis) and :func:`check_dynamic_axes` (every named dynamic axis still named).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np
import onnx

from . import artifact
from .atomic import check_writable
from .errors import ArtifactError, ParityError
from .inference import make_session, run

@dataclass
class StageResult:
    """What a stage wrote: the artifact, its variant and size, and the recorded figures."""

    stage: str
    path: Path
    recipe: str
    variant: str
    size_bytes: int
    seconds: float
    params: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """Parameters as JSON-friendly values (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


class Stage:
    """Base of the conversion stages: ``name`` plus dataclass fields as parameters.

    Fields declared with ``field(metadata={"record": False})`` (callbacks) are not recorded.
    """

    name: ClassVar[str] = "stage"

    def params(self) -> dict:
        """The stage's parameters as recorded in the artifact history."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.metadata.get("record", True)}

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike) -> StageResult:
        """Read the artifact ``in_path``, write this stage's artifact to ``out_path`` atomically."""
        raise NotImplementedError


def open_input(path: str | os.PathLike, stage: str, accept: Iterable[str] = ("fp32",)):
    """Load a stage's input: ``(model, recipe)``; one-line errors for a non-ONNX, truncated or
    recipe-less file, or one of a precision the stage cannot take (e.g. INT8 of an FP16 model)."""
    model = artifact.load_onnx(path)
    recipe = artifact.recipe_of(model, path)
    found, accept = artifact.precision(model), tuple(accept)
    if found not in accept:
        label = {"int8": "INT8 quantization", "fp16": "FP16 conversion"}.get(stage, stage)
        raise ArtifactError(f"{path}: is an {found.upper()} model; {label} needs "
                            f"{' or '.join(a.upper() for a in accept)} (run it on the FP32 artifact)")
    return model, recipe


def finish(src: onnx.ModelProto, dst: onnx.ModelProto, out_path: str | os.PathLike, stage: Stage,
           started: float, figures: dict | None = None, tools: dict | None = None,
           variant: str | None = None, runs: list | None = None, **metadata: Any) -> StageResult:
    """Carry metadata and detached initializers from ``src``, record the stage, write ``dst``.

    ``runs`` (``dst``'s outputs on the sample inputs, from :func:`check_fp32`) are remembered
    for the next stage of a chain."""
    out_path = Path(out_path)
    artifact.carry_metadata(src, dst)
    carried = artifact.carry_detached_initializers(src, dst)
    variant = variant or artifact.get(src, "variant", "fp32")
    artifact.set_metadata(dst, variant=variant, **metadata)
    figures = {**(figures or {}), **({"carried_initializers": carried} if carried else {})}
    seconds = time.perf_counter() - started
    figures["seconds"] = round(seconds, 2)
    artifact.append_history(dst, stage.name, stage.params(), jsonable(figures), tools)
    artifact.save_onnx(dst, out_path)
    if runs is not None:
        remember_runs(out_path, runs)
    return StageResult(stage.name, out_path, artifact.get(dst, "recipe"), variant, out_path.stat().st_size,
                       seconds, stage.params(), figures)


def prepare_output(out_path: str | os.PathLike, in_path: str | os.PathLike) -> Path:
    """Fail early (one line) if the output cannot be written or would overwrite the input."""
    out_path = Path(out_path)
    check_writable(out_path)
    if out_path.exists() and Path(in_path).exists() and out_path.resolve() == Path(in_path).resolve():
        raise ArtifactError(f"{out_path}: output would overwrite the input; choose another -o")
    return out_path


def dynamic_dims(model: onnx.ModelProto) -> dict[str, dict[int, str]]:
    """``{input/output name: {axis: dim_param}}`` for the graph's named dynamic axes."""
    found = {}
    for vi in [*model.graph.input, *model.graph.output]:
        named = {i: d.dim_param for i, d in enumerate(vi.type.tensor_type.shape.dim) if d.dim_param}
        if named:
            found[vi.name] = named
    return found


def check_dynamic_axes(src: onnx.ModelProto, dst: onnx.ModelProto, recipe, out_path: str | os.PathLike) -> None:
    """Every dynamic axis the recipe names (``N``, ``H``, ``W``, ``A``) that ``src`` has is still
    that ``dim_param`` in ``dst`` (exporter-invented names for static axes may be resolved)."""
    declared = {t.name: t.dynamic_axes for t in (*recipe.inputs, *recipe.outputs)}
    before, after = dynamic_dims(src), dynamic_dims(dst)
    for name, axes in before.items():
        for axis, param in axes.items():
            if declared.get(name, {}).get(axis) == param and after.get(name, {}).get(axis) != param:
                raise ParityError(f"{out_path}: not written, dynamic axis {param!r} of {name} (axis {axis}) was frozen")


def shape_sets(model: onnx.ModelProto, recipe) -> list[dict[str, int]]:
    """The recipe's sample dims, plus a second set moving every dynamic axis the model has."""
    named = {p for axes in dynamic_dims(model).values() for p in axes.values()}
    first = dict(recipe.sample_dims)
    second = {**first, **{k: v for k, v in recipe.alt_dims.items() if k in named}}
    return [first] if second == first else [first, second]


#: Outputs of recently written artifacts on the recipe's sample inputs, keyed by file identity,
#: so the next stage of a chain does not run its input again. Small (a few outputs each).
_RUNS: dict[tuple, list] = {}
_RUNS_KEEP = 4


def _identity(path: str | os.PathLike) -> tuple:
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def remember_runs(path: str | os.PathLike, runs: list) -> None:
    """Record the sample-input outputs of the artifact just written at ``path``."""
    _RUNS[_identity(path)] = runs
    while len(_RUNS) > _RUNS_KEEP:
        _RUNS.pop(next(iter(_RUNS)))


def reference_runs(model: onnx.ModelProto | str | os.PathLike, recipe, dims_list: list[dict[str, int]],
                   seed: int = 0) -> list[tuple[dict, dict]]:
    """``(feeds, outputs)`` of ``model`` (proto or file) in onnxruntime on the recipe's sample
    inputs at each dims (reused when a previous stage wrote that very file)."""
    if not isinstance(model, onnx.ModelProto):
        cached = _RUNS.get(_identity(model))
        if cached is not None and [d for d, _ in cached] == dims_list:
            return [(recipe.sample_inputs(seed=seed, **dims), out) for dims, out in cached]
    session = make_session(model)
    runs = []
    for dims in dims_list:
        feeds = recipe.sample_inputs(seed=seed, **dims)
        runs.append((feeds, run(session, feeds)))
    return runs


def check_fp32(src: onnx.ModelProto, dst: onnx.ModelProto | str | os.PathLike, recipe,
               out_path: str | os.PathLike, src_path: str | os.PathLike | None = None) -> tuple[list[dict], list]:
    """``dst`` matches ``src`` within the recipe's FP32 tolerance at two shapes, else ParityError.

    ``src_path`` (the file ``src`` was read from) lets a chained stage reuse its outputs and
    spares re-serialising it; ``dst`` may be a file. Returns one figure record per shape
    (``{"dims", "max_abs": {output: float}, "passed"}``) and ``dst``'s runs for :func:`finish`.
    """
    dims_list = shape_sets(src, recipe)
    expected = reference_runs(src_path if src_path is not None else src, recipe, dims_list)
    session = make_session(dst)
    records, runs = [], []
    for dims, (feeds, ref) in zip(dims_list, expected):
        got = run(session, feeds)
        runs.append((dims, got))
        max_abs, excess = {}, -np.inf
        for name, r in ref.items():
            if got[name].shape != r.shape:
                raise ParityError(f"{out_path}: not written, output {name} has shape {got[name].shape} instead of "
                                  f"{r.shape} at {dims} (a dynamic axis was frozen)")
            max_abs[name] = float(np.max(np.abs(got[name].astype(np.float64) - r)))
            excess = max(excess, recipe.tolerance.excess(got[name], r))
        records.append({"dims": dims, "max_abs": max_abs, "passed": bool(excess <= 0)})
        if excess > 0:
            worst = max(max_abs.items(), key=lambda kv: kv[1])
            raise ParityError(f"{out_path}: not written, differs from its input beyond {recipe.name}'s FP32 tolerance "
                              f"(atol {recipe.tolerance.atol:g}, rtol {recipe.tolerance.rtol:g}): "
                              f"{worst[0]} max abs error {worst[1]:.3g} at {dims}")
    return records, runs


@contextlib.contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr for ``total`` steps; yields the advance function.

    Transient, and a no-op when stderr is not a terminal or ``total`` is 0."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .console import err

    if not total or not err.is_terminal:
        yield lambda: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def tool_versions(*names: str) -> dict[str, str]:
    """``{package: version}`` of the named tools (missing ones omitted)."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def started() -> float:
    """A stage's start time (``time.perf_counter``)."""
    return time.perf_counter()
