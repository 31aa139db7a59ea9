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
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.version import __version__
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
    from ffkit.recipes import get_recipe
    from ffkit.validation import report as rep
    from ffkit.validation.calibration import load_calibration, sample_set

    from .export import check_finalize_kwargs, export_recipe
    from .stage import model_shape_sets
    from .verify import run_onnx

    opts = opts or BuildOptions()
    start = time.perf_counter()
    recipe = get_recipe(recipe_name)
    finalize = {**({"emap": opts.emap} if opts.emap else {}), **({"no_emap": True} if opts.no_emap else {})}
    check_finalize_kwargs(recipe, finalize)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise FfkitError(f"{outdir}: exists and is not a folder")
    if not Path(checkpoint).is_file():
        raise FfkitError(f"{checkpoint}: no such checkpoint file")
    for name in opts.options:
        try:
            recipe.option(name)
        except KeyError:
            raise FfkitError(f"{recipe.name} has no export option {name!r}") from None
    calibration, held_out = None, []
    if opts.int8 is not None and opts.calib is None:
        raise FfkitError(f"{recipe.name}: --int8 needs --calib DIR (a folder of calibration images)")
    if opts.calib is not None:
        # calibrate on the first `samples`; verify on the next `verify_samples` when the folder has
        # them (held out), else on the first ones (in-sample, said so in the report)
        wanted = opts.int8.samples if opts.int8 is not None else Int8Stage.samples
        latents = opts.int8.latents if opts.int8 is not None else None
        found = load_calibration(recipe, opts.calib, samples=(wanted or 10 ** 9) + opts.verify_samples,
                                 latents=latents)
        if wanted and len(found) > wanted:
            calibration = dataclasses.replace(found, samples=found.samples[:wanted])
            held_out = found.samples[wanted:]
        else:
            calibration = found
    made_outdir = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)

    result = BuildReport(recipe.name, outdir)
    steps = _Steps(3 + 2 * (1 + (opts.fp16 is not None) + (opts.int8 is not None)), recipe.name)
    work = Path(tempfile.mkdtemp(dir=outdir, prefix=f".ffkit-build-{recipe.name}-"))
    try:
        steps.step("export")
        exported = work / "export.onnx"
        export_recipe(recipe.name, checkpoint, exported, options=opts.options,
                      finalize_kwargs=finalize)
        steps.done()
        ref_model = onnx_file.load_onnx(exported)
        fp32_size = exported.stat().st_size
        base_variant = artifact.get(ref_model, "variant", "fp32")
        sample_inputs = sample_set(recipe, model_shape_sets(ref_model, recipe)).samples
        calib_inputs = held_out or (calibration.samples[: opts.verify_samples] if calibration else [])
        calib_kind = "held-out" if held_out else "calibration (in-sample)"
        if not calib_inputs and photo_inputs(recipe):   # a detector's budget is judged on real faces
            calib_inputs, calib_kind = photo_inputs(recipe), "bundled photo"
        reference = {"sample": run_onnx(ref_model, sample_inputs),
                     "calib": run_onnx(ref_model, calib_inputs) if calib_inputs else []}
        del ref_model

        def verified(stage_fn: Callable[[Path], Any], label: str, kind: str) -> Path | None:
            """Run one stage into the work folder, verify it, move it into outdir if it passes."""
            tmp_out = work / f"{label}.onnx"
            steps.step(label)
            try:
                res = stage_fn(tmp_out)
            except FfkitError as err:
                steps.done()
                steps.done()
                result.variants.append({"variant": artifact.variant_with(base_variant, kind), "kind": kind,
                                        "file": None, "passed": False, "error": str(err)})
                return None
            steps.done()
            steps.step(f"verify {res.variant}")
            inputs = sample_inputs + (calib_inputs if kind != "fp32" else [])
            refs = reference["sample"] + (reference["calib"] if kind != "fp32" else [])
            budget = {"fp16": opts.fp16, "int8": opts.int8}.get(kind)
            checks = judge(recipe, kind, run_onnx(tmp_out, inputs), refs,
                           budget=budget.budget if budget is not None else None, inputs=inputs)
            entry = _summary(res.variant, checks, kind)
            entry.update(size_bytes=res.size_bytes, size_ratio=round(res.size_bytes / fp32_size, 4),
                         verified_on=f"{len(sample_inputs)} sample input(s)" +
                         (f" + {len(calib_inputs)} {calib_kind} image(s)" if kind != "fp32" and calib_inputs else ""),
                         stage=res.figures)
            steps.done()
            final = outdir / f"{recipe.name}.{res.variant}.onnx"
            if entry["passed"]:
                os.replace(tmp_out, final)
                entry["file"] = final.name
            else:
                entry["file"] = None
                entry["error"] = "failed verification; not written"
            result.variants.append(entry)
            return final if entry["passed"] else None

        simplified = work / "simplified.onnx"
        steps.step("simplify")
        simplified_runs = None  # the simplified model's sample runs, handed to the FP32 stage after it
        try:
            simplified_runs = opts.simplify.run(exported, simplified).runs
        except FfkitError as err:
            result.variants.append({"variant": f"{base_variant} (simplify)", "kind": "fp32", "file": None,
                                    "passed": False, "error": str(err)})
            simplified = exported
        steps.done()
        verified(lambda out: opts.optimize.run(simplified, out, reference=simplified_runs), "optimize", "fp32")
        if opts.fp16 is not None:
            verified(lambda out: opts.fp16.run(simplified, out), "fp16", "fp16")
        if opts.int8 is not None:
            int8 = dataclasses.replace(opts.int8, calibration=calibration, cache_dir=outdir / ".ffkit-calib")
            verified(lambda out: int8.run(simplified, out), "int8", "int8")
        steps.step("report")
        result.png = _write_png(recipe, outdir, exported, result.variants,
                                calib_inputs[0] if calib_inputs else sample_inputs[0])
        steps.done()
    finally:
        steps.close()
        shutil.rmtree(work, ignore_errors=True)
        if made_outdir and not any(outdir.iterdir()):   # a failed build leaves no empty folder it made
            outdir.rmdir()
    result.seconds = time.perf_counter() - start
    data = rep.read_json(outdir / "report.json", {}) or {}
    builds = data.get("builds", {}) if isinstance(data, dict) else {}
    builds[recipe.name] = result.entry(checkpoint)
    rep.write_json(outdir / "report.json", {"ffkit": __version__, "builds": builds})
    return result


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
    import cv2

    rows = [cv2.imread(str(p)) for p in sorted(rows_dir.glob("*.png"))]
    return rep.write_png(outdir / "report.png", rep.comparison_sheet([r for r in rows if r is not None]))
