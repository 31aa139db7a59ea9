"""``ffkit build``: export -> simplify -> optimize (FP32), plus FP16 and INT8 on request, each verified.

Artifacts are named ``<recipe>.<variant>.onnx`` (``gfpgan_v1.4.int8-unfused.onnx``), so the
models of one pipeline can share an output folder. Every variant is written to a private
work folder first, verified against the exported FP32 model (itself checked against PyTorch
at export) and moved into the folder only if it passes: FP32 at the recipe's manifest
tolerance on its sample inputs at two shapes, FP16/INT8 at the recipe's accuracy budget on the
sample inputs and on the calibration images when given. ``report.json`` (all builds of the
folder, this recipe's entry replaced) and, for image outputs, ``report.png`` (reference,
each variant and its error heatmap) are updated.

FP16 and INT8 start from the simplified model, not the optimised one: onnxruntime's fused
contrib ops (``com.microsoft`` FusedConv...) have no float16 conversion rules and are not
quantizable; onnxruntime applies the same fusions when it loads them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ffkit.recipes import artifact, onnx_file
from ffkit.recipes.atomic import replace_file
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.version import __version__
from ffkit.runtime.media import read_image
from ffkit.validation.face_metrics import photo_inputs
from ffkit.validation.parity import judge

from .fp16 import Fp16Stage
from .int8 import Int8Stage
from .optimize import OptimizeStage
from .simplify import SimplifyStage


@dataclass
class BuildOptions:
    """What ``ffkit build`` makes: the stages it runs, each configured by its own stage object.

    calib: calibration folder (INT8 needs it; also used to verify FP16/INT8).
    options: recipe export options (``unfused_modulation``). emap: inswapper emap (.npy or ONNX);
      no_emap: build inswapper without one anyway (recorded as ``ffkit.emap = none``).
    simplify / optimize: the FP32 stages (defaults: :class:`SimplifyStage`, :class:`OptimizeStage`).
    fp16: make the FP16 variant with this :class:`Fp16Stage` (None: no FP16 variant).
    int8: make the INT8 variant with this :class:`Int8Stage` (None: none); its ``samples`` and
      ``latents`` say how the calibration folder is read, its ``calibration`` and ``cache_dir``
      are set by the build.
    verify_samples: calibration samples FP16/INT8 are verified on (held out when the folder has them).
    """

    calib: Path | None = None
    options: tuple[str, ...] = ()
    emap: Path | None = None
    no_emap: bool = False
    simplify: SimplifyStage = field(default_factory=SimplifyStage)
    optimize: OptimizeStage = field(default_factory=OptimizeStage)
    fp16: Fp16Stage | None = None
    int8: Int8Stage | None = None
    verify_samples: int = 8


@dataclass
class BuildReport:
    """One build's entry of ``report.json`` plus where things went."""

    recipe: str
    outdir: Path
    variants: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    png: Path | None = None

    @property
    def passed(self) -> bool:
        """Every variant asked for was written and verified."""
        return bool(self.variants) and all(v["passed"] for v in self.variants)

    def entry(self, checkpoint) -> dict:
        """This build's ``report.json`` entry."""
        return {"recipe": self.recipe, "checkpoint": str(checkpoint), "ffkit": __version__,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(self.seconds, 1),
                "passed": self.passed, "variants": self.variants}


def _summary(variant: str, checks, kind: str) -> dict:
    """Worst figures over the outputs of one verification (for the table and report.json)."""
    figs = [c.figures for c in checks]
    psnr = [f["psnr"] for f in figs if "psnr" in f]
    return {"variant": variant, "kind": kind,
            "max_abs": max(f["max_abs"] for f in figs), "rel_l2": max(f["rel_l2"] for f in figs),
            "cosine": min(f["cosine"] for f in figs), "psnr": min(psnr) if psnr else None,
            "criterion": "; ".join(sorted({c.criterion for c in checks})),
            "outputs": {c.name: {**c.figures, "value": c.value, "passed": c.passed} for c in checks},
            "passed": all(c.passed for c in checks)}


class _Steps:
    """Build-step progress: a rich bar on a terminal, one line per step otherwise."""

    def __init__(self, total: int, recipe: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from .console import err

        self.err, self.progress = err, None
        if err.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=err, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(recipe, total=total)
        self.recipe = recipe

    def step(self, text: str) -> None:
        """Show the step now running."""
        if self.progress is not None:
            self.progress.update(self.task, description=f"{self.recipe}: {text}")
        else:
            self.err.print(f"{self.recipe}: {text}", highlight=False)

    def done(self) -> None:
        """Count one step done."""
        if self.progress is not None:
            self.progress.advance(self.task)

    def close(self) -> None:
        """Remove the bar."""
        if self.progress is not None:
            self.progress.stop()


def build(recipe_name: str, checkpoint: str | os.PathLike, outdir: str | os.PathLike,
          opts: BuildOptions | None = None) -> BuildReport:
    """Build ``recipe_name`` from ``checkpoint`` into ``outdir`` (see module docstring).

    User errors found before any work (unknown recipe, missing checkpoint, INT8 without a
    calibration folder or with an unusable one) raise FfkitError; a variant that fails is
    recorded in the report (``passed: false`` with the error) and not written.
    """
    opts = opts or BuildOptions()
    start = time.perf_counter()
    recipe, finalize = _check_request(recipe_name, checkpoint, outdir, opts)
    calibration, held_out = _calibration(recipe, opts)
    outdir = Path(outdir)
    made_outdir = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    result = BuildReport(recipe.name, outdir)
    steps = _Steps(3 + 2 * (1 + (opts.fp16 is not None) + (opts.int8 is not None)), recipe.name)
    work = Path(tempfile.mkdtemp(dir=outdir, prefix=f".ffkit-build-{recipe.name}-"))
    try:
        run = _BuildRun(recipe, opts, outdir, work, steps, result)
        exported = run.export(checkpoint, finalize)
        run.references(exported, calibration, held_out)
        simplified, simplified_runs = run.simplify(exported)
        run.variant(lambda out: opts.optimize.run(simplified, out, reference=simplified_runs), "optimize", "fp32")
        if opts.fp16 is not None:
            run.variant(lambda out: opts.fp16.run(simplified, out), "fp16", "fp16")
        if opts.int8 is not None:
            int8 = dataclasses.replace(opts.int8, calibration=calibration, cache_dir=outdir / ".ffkit-calib")
            run.variant(lambda out: int8.run(simplified, out), "int8", "int8")
        steps.step("report")
        result.png = _write_png(recipe, outdir, exported, result.variants, run.preview)
        steps.done()
    finally:
        steps.close()
        shutil.rmtree(work, ignore_errors=True)
        if made_outdir and not any(outdir.iterdir()):   # a failed build leaves no empty folder it made
            outdir.rmdir()
    result.seconds = time.perf_counter() - start
    _record(result, checkpoint)
    return result


def _check_request(recipe_name: str, checkpoint, outdir, opts: BuildOptions):
    """The recipe and its finalize options, after the checks made before any work (one-line FfkitError)."""
    from ffkit.recipes import get_recipe

    from .export import check_finalize_kwargs

    recipe = get_recipe(recipe_name)
    finalize = {**({"emap": opts.emap} if opts.emap else {}), **({"no_emap": True} if opts.no_emap else {})}
    check_finalize_kwargs(recipe, finalize)
    if Path(outdir).exists() and not Path(outdir).is_dir():
        raise FfkitError(f"{outdir}: exists and is not a folder")
    if not Path(checkpoint).is_file():
        raise FfkitError(f"{checkpoint}: no such checkpoint file")
    for name in opts.options:
        try:
            recipe.option(name)
        except KeyError:
            raise FfkitError(f"{recipe.name} has no export option {name!r}") from None
    if opts.int8 is not None and opts.calib is None:
        raise FfkitError(f"{recipe.name}: --int8 needs --calib DIR (a folder of calibration images)")
    return recipe, finalize


def _calibration(recipe, opts: BuildOptions):
    """``(calibration set or None, held-out samples)``: calibrate on the first ``samples``; verify
    on the next ``verify_samples`` when the folder has them (held out), else on the first ones
    (in-sample, said so in the report)."""
    from ffkit.validation.calibration import load_calibration

    if opts.calib is None:
        return None, []
    wanted = opts.int8.samples if opts.int8 is not None else Int8Stage.samples
    latents = opts.int8.latents if opts.int8 is not None else None
    found = load_calibration(recipe, opts.calib, samples=(wanted or 10 ** 9) + opts.verify_samples, latents=latents)
    if wanted and len(found) > wanted:
        return dataclasses.replace(found, samples=found.samples[:wanted]), found.samples[wanted:]
    return found, []


@dataclass
class _BuildRun:
    """One build in its work folder: the exported reference, its outputs, and each variant made,
    verified and moved into ``outdir`` (or recorded as failed)."""

    recipe: Any
    opts: BuildOptions
    outdir: Path
    work: Path
    steps: _Steps
    result: BuildReport
    base_variant: str = "fp32"
    fp32_size: int = 0
    sample_inputs: list = field(default_factory=list)
    calib_inputs: list = field(default_factory=list)
    calib_kind: str = ""
    reference: dict = field(default_factory=dict)

    @property
    def preview(self):
        """The inputs report.png shows."""
        return self.calib_inputs[0] if self.calib_inputs else self.sample_inputs[0]

    def export(self, checkpoint, finalize: dict) -> Path:
        """Export the checkpoint into the work folder."""
        from .export import export_recipe

        self.steps.step("export")
        exported = self.work / "export.onnx"
        export_recipe(self.recipe.name, checkpoint, exported, options=self.opts.options, finalize_kwargs=finalize)
        self.steps.done()
        return exported

    def references(self, exported: Path, calibration, held_out: list) -> None:
        """The exported model's outputs on the sample inputs and the verification images."""
        from ffkit.validation.calibration import sample_set

        from .stage import model_shape_sets
        from .verify import run_onnx

        ref_model = onnx_file.load_onnx(exported)
        self.fp32_size = exported.stat().st_size
        self.base_variant = artifact.get(ref_model, "variant", "fp32")
        self.sample_inputs = sample_set(self.recipe, model_shape_sets(ref_model, self.recipe)).samples
        self.calib_inputs = held_out or (calibration.samples[: self.opts.verify_samples] if calibration else [])
        self.calib_kind = "held-out" if held_out else "calibration (in-sample)"
        if not self.calib_inputs and photo_inputs(self.recipe):   # a detector's budget is judged on real faces
            self.calib_inputs, self.calib_kind = photo_inputs(self.recipe), "bundled photo"
        self.reference = {"sample": run_onnx(ref_model, self.sample_inputs, name=exported),
                          "calib": run_onnx(ref_model, self.calib_inputs, name=exported) if self.calib_inputs else []}

    def simplify(self, exported: Path):
        """``(simplified model, its sample runs)``; the exported one (no runs) if onnxsim fails."""
        simplified = self.work / "simplified.onnx"
        self.steps.step("simplify")
        try:
            runs = self.opts.simplify.run(exported, simplified).runs
        except FfkitError as err:
            self.result.variants.append({"variant": f"{self.base_variant} (simplify)", "kind": "fp32", "file": None,
                                         "passed": False, "error": str(err)})
            simplified, runs = exported, None
        self.steps.done()
        return simplified, runs

    def variant(self, stage_fn: Callable[[Path], Any], label: str, kind: str) -> Path | None:
        """Run one stage into the work folder, verify it, move it into outdir if it passes."""
        tmp_out = self.work / f"{label}.onnx"
        self.steps.step(label)
        try:
            res = stage_fn(tmp_out)
        except FfkitError as err:
            self.steps.done()
            self.steps.done()
            self.result.variants.append({"variant": artifact.variant_with(self.base_variant, kind), "kind": kind,
                                         "file": None, "passed": False, "error": str(err)})
            return None
        self.steps.done()
        self.steps.step(f"verify {res.variant}")
        entry = self.verify(tmp_out, res, kind)
        self.steps.done()
        final = self.outdir / f"{self.recipe.name}.{res.variant}.onnx"
        if entry["passed"]:
            replace_file(tmp_out, final)
            entry["file"] = final.name
        else:
            entry["file"] = None
            entry["error"] = "failed verification; not written"
        self.result.variants.append(entry)
        return final if entry["passed"] else None

    def verify(self, candidate: Path, res, kind: str) -> dict:
        """The report entry of one variant, judged against the exported model's outputs."""
        from .verify import run_onnx

        calib = self.calib_inputs if kind != "fp32" else []
        inputs = self.sample_inputs + calib
        refs = self.reference["sample"] + (self.reference["calib"] if calib else [])
        budget = {"fp16": self.opts.fp16, "int8": self.opts.int8}.get(kind)
        checks = judge(self.recipe, kind, run_onnx(candidate, inputs), refs,
                       budget=budget.budget if budget is not None else None, inputs=inputs)
        entry = _summary(res.variant, checks, kind)
        entry.update(size_bytes=res.size_bytes, size_ratio=round(res.size_bytes / self.fp32_size, 4),
                     verified_on=f"{len(self.sample_inputs)} sample input(s)" +
                     (f" + {len(calib)} {self.calib_kind} image(s)" if calib else ""), stage=res.figures)
        return entry


def _record(result: BuildReport, checkpoint) -> None:
    """Replace this recipe's entry of the folder's ``report.json``."""
    from ffkit.validation import report as rep

    path = result.outdir / "report.json"
    data = rep.read_json(path, {}) or {}
    builds = data.get("builds", {}) if isinstance(data, dict) else {}
    builds[result.recipe] = result.entry(checkpoint)
    rep.write_json(path, {"ffkit": __version__, "builds": builds})


def _write_png(recipe, outdir: Path, exported: Path, variants: list[dict], feeds) -> Path | None:
    """This recipe's row of ``report.png`` (image outputs only), then the sheet of all rows."""
    from ffkit.validation import report as rep

    from .verify import run_onnx

    if recipe.output_pixels is None:
        return None
    name = recipe.outputs[0].name
    feeds = {k: v[:1] for k, v in feeds.items()}
    to_img = lambda out: recipe.output_pixels.to_pixels(out[name])[0]  # noqa: E731
    reference = to_img(run_onnx(exported, [feeds])[0])
    shown = [(v["variant"], to_img(run_onnx(outdir / v["file"], [feeds])[0])) for v in variants if v.get("file")]
    row = rep.comparison_row(recipe.name, reference, shown)
    rows_dir = outdir / ".ffkit-report"
    rows_dir.mkdir(exist_ok=True)
    rep.write_png(rows_dir / f"{recipe.name}.png", row)
    rows = []
    for png in sorted(rows_dir.glob("*.png")):
        try:
            rows.append(read_image(png))
        except FfkitError:   # a damaged row of an earlier build: left out of the sheet
            pass
    return rep.write_png(outdir / "report.png", rep.comparison_sheet(rows))
