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
dynamic axis, judged by the one parity routine :mod:`ffkit.validation.parity`) and
:func:`check_dynamic_axes` (every named dynamic axis still named). Nothing is cached between
stages behind the caller's back: a chain passes one stage's :attr:`StageResult.runs` to the next
as ``reference``.
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

from ffkit.recipes import artifact, onnx_file
from ffkit.recipes.atomic import check_writable
from ffkit.recipes.errors import ArtifactError, ParityError
from ffkit.recipes.paths import refuse_overwrite
from ffkit.recipes.run_limits import RunGuard
from ffkit.runtime.sessions import create_session, run_session
from ffkit.validation.parity import fp32_parity, shape_sets

#: Outputs of one artifact on its recipe's sample inputs (seed 0): ``[(dims, {output: array})]``,
#: one entry per test shape. Passed explicitly from one stage of a chain to the next.
SampleRuns = list[tuple[dict[str, int], dict[str, np.ndarray]]]

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
    runs: SampleRuns | None = field(default=None, repr=False)  # the output's sample runs, when checked


def jsonable(value: Any) -> Any:
    """Parameters as JSON-friendly values (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
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

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike,
            reference: SampleRuns | None = None, recipe: str | None = None) -> StageResult:
        """Read the artifact ``in_path``, write this stage's artifact to ``out_path`` atomically.

        ``reference``: ``in_path``'s sample runs when the caller has them (a previous stage's
        :attr:`StageResult.runs`), so FP32 stages need not run their input again.
        ``recipe``: the recipe of an input ffkit did not make (default: guessed from its I/O)."""
        raise NotImplementedError


def open_input(path: str | os.PathLike, stage: str, accept: Iterable[str] = ("fp32",),
               recipe_name: str | None = None):
    """Load a stage's input: ``(model, recipe)``. A file ffkit did not make is adopted: its
    recipe is ``recipe_name`` or guessed from its I/O (:func:`ffkit.recipes.artifact.recipe_of`).
    One-line errors for a non-ONNX or truncated file, one that fits no recipe, or one of a
    precision the stage cannot take (e.g. INT8 of an FP16 model)."""
    model = onnx_file.load_onnx(path)
    recipe = artifact.recipe_of(model, path, recipe_name)
    found, accept = artifact.precision(model), tuple(accept)
    if found not in accept:
        label = {"int8": "INT8 quantization", "fp16": "FP16 conversion"}.get(stage, stage)
        raise ArtifactError(f"{path}: is an {found.upper()} model; {label} needs "
                            f"{' or '.join(a.upper() for a in accept)} (run it on the FP32 artifact)")
    check_run_sizes(path, model, recipe)
    return model, recipe


def check_run_sizes(path: str | os.PathLike, model: onnx.ModelProto, recipe) -> None:
    """Refuse (one line naming ``path``) a file whose run at the shapes the stages and checks use
    (:func:`model_shape_sets`) would make a tensor over the run cap
    (:mod:`ffkit.recipes.run_limits`), before any tool (onnxsim, the quantizer) runs it."""
    guard = RunGuard(path, str(path))
    for dims in model_shape_sets(model, recipe):
        guard.check(recipe.sample_inputs(seed=0, **dims))


def finish(src: onnx.ModelProto, dst: onnx.ModelProto, out_path: str | os.PathLike, stage: Stage,
           started: float, figures: dict | None = None, tools: dict | None = None,
           variant: str | None = None, runs: list | None = None, **metadata: Any) -> StageResult:
    """Carry metadata and detached initializers from ``src``, record the stage, write ``dst``.

    ``runs`` (``dst``'s outputs on the sample inputs, from :func:`check_fp32`) are returned in
    the result, for the next stage of a chain."""
    out_path = Path(out_path)
    artifact.carry_metadata(src, dst)
    carried = artifact.carry_detached_initializers(src, dst)
    variant = variant or artifact.get(src, "variant", "fp32")
    artifact.set_metadata(dst, variant=variant, **metadata)
    figures = {**(figures or {}), **({"carried_initializers": carried} if carried else {})}
    seconds = time.perf_counter() - started
    figures["seconds"] = round(seconds, 2)
    artifact.append_history(dst, stage.name, stage.params(), jsonable(figures), tools)
    onnx_file.save_onnx(dst, out_path)
    return StageResult(stage.name, out_path, artifact.get(dst, "recipe"), variant, out_path.stat().st_size,
                       seconds, stage.params(), figures, runs)


def prepare_output(out_path: str | os.PathLike, in_path: str | os.PathLike) -> Path:
    """Fail early (one line) if the output cannot be written or would overwrite the input."""
    out_path = Path(out_path)
    check_writable(out_path)
    refuse_overwrite(out_path, in_path, error=ArtifactError)
    return out_path


def check_dynamic_axes(src: onnx.ModelProto, dst: onnx.ModelProto, recipe, out_path: str | os.PathLike) -> None:
    """Every dynamic axis the recipe names (``N``, ``H``, ``W``, ``A``) that ``src`` has is still
    that ``dim_param`` in ``dst`` (exporter-invented names for static axes may be resolved)."""
    declared = {t.name: t.dynamic_axes for t in (*recipe.inputs, *recipe.outputs)}
    before, after = onnx_file.dynamic_dims(src), onnx_file.dynamic_dims(dst)
    for name, axes in before.items():
        for axis, param in axes.items():
            if declared.get(name, {}).get(axis) == param and after.get(name, {}).get(axis) != param:
                raise ParityError(f"{out_path}: not written, dynamic axis {param!r} of {name} (axis {axis}) was frozen")


def model_shape_sets(model: onnx.ModelProto, recipe) -> list[dict[str, int]]:
    """:func:`~ffkit.validation.parity.shape_sets` for the axes ``model`` really leaves dynamic:
    each axis the recipe names (``N``, ``H``, ``W``) whose graph input dim is not a fixed value,
    whatever the file calls it."""
    dims = {vi.name: vi.type.tensor_type.shape.dim for vi in model.graph.input}
    named = set()
    for spec in recipe.inputs:
        have = dims.get(spec.name)
        for axis, want in enumerate(spec.shape):
            if isinstance(want, str) and have is not None and axis < len(have) and not have[axis].HasField("dim_value"):
                named.add(want)
    return shape_sets(recipe, named)


def sample_runs(model: onnx.ModelProto | str | os.PathLike, recipe, dims_list: list[dict[str, int]],
                seed: int = 0, name: str | os.PathLike | None = None) -> SampleRuns:
    """``model``'s (proto or file) outputs in onnxruntime on the recipe's sample inputs at each
    dims; ``name``: the file a proto was read from, named by any error."""
    session = create_session(model, name=str(name) if name is not None else None)
    return [(dims, run_session(session, recipe.sample_inputs(seed=seed, **dims))) for dims in dims_list]


def check_fp32(src: onnx.ModelProto, dst: onnx.ModelProto | str | os.PathLike, recipe,
               out_path: str | os.PathLike, reference: SampleRuns | None = None,
               in_path: str | os.PathLike | None = None) -> tuple[list[dict], SampleRuns]:
    """``dst`` matches ``src`` within the recipe's FP32 tolerance at two shapes, else ParityError.

    ``reference`` is ``src``'s own :func:`sample_runs` when the caller has them (the previous
    stage of a chain returned them in :attr:`StageResult.runs`); they are computed otherwise.
    ``dst`` may be a file; ``in_path`` is the file ``src`` was read from. Returns one figure record per shape (``{"dims", "max_abs": {output:
    float}, "passed"}``) and ``dst``'s runs, for the next stage.
    """
    dims_list = model_shape_sets(src, recipe)
    if reference is None or [d for d, _ in reference] != dims_list:
        reference = sample_runs(src, recipe, dims_list, name=in_path)
    session = create_session(dst, name=str(out_path))
    runs = [(dims, run_session(session, recipe.sample_inputs(seed=0, **dims))) for dims in dims_list]
    records = fp32_parity(recipe, [(dims, got, ref) for (dims, got), (_, ref) in zip(runs, reference)],
                          out_path, what="its input")
    return [r.as_dict() for r in records], runs


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
