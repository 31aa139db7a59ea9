"""CLI commands (registered on ``ffkit.toolkit.cli.app``): the conversion stages, verify and build.

Each command is a thin wrapper over a stage object of ``ffkit.toolkit.<stage>``; every user
error is an FfkitError (one ``error:`` line, non-zero exit, no output file).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .cli_app import app, friendly  # noqa: F401
from .console import err, human_size, out
from .fp16 import Fp16Stage
from .int8 import Int8Stage
from .optimize import OptimizeStage
from .simplify import SimplifyStage


def recipe_option():
    """``--recipe NAME``: the recipe of an ONNX file ffkit did not make (else guessed from its I/O)."""
    return typer.Option(None, "--recipe", help="Recipe of a file ffkit did not make (default: guessed from its I/O "
                                                 "signature; see `ffkit recipes`).")


def _stage_table(result, title: str, extra: dict[str, str] | None = None) -> Table:
    """A two-column table of what a stage wrote."""
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("output", str(result.path))
    table.add_row("variant", result.variant)
    table.add_row("size", human_size(result.size_bytes))
    for key, value in (extra or {}).items():
        table.add_row(key, value)
    table.add_row("time", f"{result.seconds:.1f} s")
    return table


def _parity_text(records: list[dict]) -> str:
    return "; ".join(f"{' '.join(f'{k}={v}' for k, v in r['dims'].items())}: max abs "
                     f"{max(r['max_abs'].values()):.2e}" for r in records)


def _accuracy_rows(accuracy: dict) -> dict[str, str]:
    rows = {}
    for name, f in accuracy.items():
        figs = [f"rel L2 {f['rel_l2']:.3g}", f"max abs {f['max_abs']:.3g}", f"cosine {f['cosine']:.5f}"]
        if "psnr" in f:
            figs.append(f"PSNR {f['psnr']:.2f} dB")
        verdict = "[green]meets[/]" if f["passed"] else "[red]misses[/]"
        rows[f"accuracy {name}"] = f"{', '.join(figs)} ({verdict} {f['criterion']})"
    return rows


@app.command("simplify")
@friendly
def simplify_cmd(
    model: Path = typer.Argument(..., help="FP32 ONNX model: an ffkit artifact or a file ffkit did not make."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
    skip_fuse_bn: bool = typer.Option(False, "--skip-fuse-bn", help="Keep BatchNorm nodes."),
    onnxsim_check: int = typer.Option(SimplifyStage.onnxsim_check, "--onnxsim-check", help="onnxsim's own random checks (default off)."),
    recipe: Optional[str] = recipe_option(),
):
    """onnxsim with the dynamic axes kept, checked against MODEL at two input shapes."""
    with err.status("simplifying"):
        result = SimplifyStage(skip_fuse_bn=skip_fuse_bn, onnxsim_check=onnxsim_check).run(model, output, recipe=recipe)
    nodes = result.figures["nodes"]
    out.print(_stage_table(result, f"simplify {model}", {"nodes": f"{nodes[0]} -> {nodes[1]}",
                                                         "parity": _parity_text(result.figures["parity"])}))


@app.command("optimize")
@friendly
def optimize_cmd(
    model: Path = typer.Argument(..., help="FP32 ONNX model: an ffkit artifact or a file ffkit did not make."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
    level: str = typer.Option(OptimizeStage.level, "--level",
                              help="basic | extended (portable, default) | all (bound to this CPU and provider)."),
    recipe: Optional[str] = recipe_option(),
):
    """onnxoptimizer passes plus onnxruntime's offline graph optimisation, checked against MODEL."""
    with err.status("optimizing"):
        result = OptimizeStage(level=level).run(model, output, recipe=recipe)
    nodes = result.figures["nodes"]
    extra = {"nodes": f"{nodes[0]} -> {nodes[1]}", "parity": _parity_text(result.figures["parity"])}
    if "bound_to" in result.figures:
        bound = result.figures["bound_to"]
        extra["bound to"] = f"{bound['provider']} on {bound['cpu']['model']} ({', '.join(bound['cpu']['isa'])})"
    out.print(_stage_table(result, f"optimize {model} ({level})", extra))


@app.command("quantize")
@friendly
def quantize_cmd(
    model: Path = typer.Argument(..., help="FP32 ONNX model (ffkit artifact or not), ideally simplified."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
    fp16: bool = typer.Option(False, "--fp16", help="Float16 weights/arithmetic, float32 inputs and outputs."),
    int8: bool = typer.Option(False, "--int8", help="Static INT8 (QDQ), calibrated on --calib."),
    keep_float32: List[str] = typer.Option([], "--keep-fp32",
                                           help="FP16: op type kept in float32 (adds to the default list; repeat)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="INT8: folder of calibration images or .npy/.npz."),
    calib_latents: Optional[Path] = typer.Option(None, "--calib-latents",
                                                 help="INT8 swappers: K x 512 .npy of identity latents."),
    method: str = typer.Option(Int8Stage.method, "--method", help="INT8 calibration: minmax | entropy | percentile."),
    per_channel: bool = typer.Option(Int8Stage.per_channel, "--per-channel/--per-tensor", help="INT8 weight scales per channel."),
    samples: int = typer.Option(Int8Stage.samples, "--samples", help="INT8: at most this many calibration samples."),
    auto_exclude: bool = typer.Option(False, "--auto-exclude",
                                      help="INT8: keep the worst nodes in float until the recipe's budget is met."),
    exclude: List[str] = typer.Option([], "--exclude", help="INT8: node name kept in float (repeat)."),
    recipe: Optional[str] = recipe_option(),
):
    """Reduce precision: --fp16, or --int8 --calib DIR (one of the two)."""
    if fp16 == int8:
        from ffkit.recipes.errors import FfkitError

        raise FfkitError("choose exactly one of --fp16 and --int8")
    if fp16:
        with err.status("converting to float16"):
            result = Fp16Stage(keep_float32=tuple(keep_float32)).run(model, output, recipe=recipe)
        kept = result.figures["nodes_kept"]
        reasons = [why.split(":")[0] for why in kept.values()]
        ops = result.figures["op_types_beyond_converter_default"]
        counts = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
        extra = {"size ratio": f"{result.figures['size_ratio'] * 100:.1f}% of FP32",
                 "kept in float32": f"op types: converter default{' + ' + ', '.join(ops) if ops else ''}; "
                                    f"nodes: {len(kept)}{f' ({counts})' if counts else ''}"}
    else:
        stage = Int8Stage(calib=calib, latents=calib_latents, method=method, per_channel=per_channel,
                          samples=samples, auto_exclude=auto_exclude, exclude_nodes=tuple(exclude))
        result = stage.run(model, output, recipe=recipe)
        f = result.figures
        t = f["types"]
        extra = {"size ratio": f"{f['size_ratio'] * 100:.1f}% of FP32",
                 "types": f"{t['format']} activations {t['activation_type']}, weights {t['weight_type']}, "
                          f"reduce_range {t['reduce_range']} ({t['reduce_range_from']})",
                 "calibration": f"{f['calibration']['samples']} samples ({f['calibration']['skipped']} skipped), "
                                f"{f['method']}, cache {'hit' if f['calibration_cache']['hit'] else 'written'}",
                 "kept in float": str(len(f["excluded_nodes"]))}
    extra.update(_accuracy_rows(result.figures["accuracy"]))
    out.print(_stage_table(result, f"quantize {model}", extra))


@app.command("verify")
@friendly
def verify_cmd(
    candidate: Path = typer.Argument(..., help="ONNX artifact to check."),
    reference: Path = typer.Option(..., "--reference", help="Reference: an ONNX artifact or a checkpoint (.pth)."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="Folder of .npy/.npz tensors or images."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Folder of images (as for INT8 calibration)."),
    calib_latents: Optional[Path] = typer.Option(None, "--calib-latents", help="Swappers: K x 512 latents .npy."),
    samples: int = typer.Option(8, "--samples", help="At most this many samples from the folder."),
    recipe: Optional[str] = recipe_option(),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON here."),
):
    """Compare CANDIDATE with a reference, output by output; exit 3 if it misses its criterion."""
    from ffkit.recipes.errors import FfkitError
    from ffkit.validation.report import verify_table, write_json

    from .verify import verify

    if inputs is not None and calib is not None:
        raise FfkitError("give --inputs or --calib, not both")
    with err.status("verifying"):
        report = verify(candidate, reference, inputs=inputs or calib, samples=samples, latents=calib_latents,
                        recipe_name=recipe)
    out.print(verify_table(report))
    if json_out is not None:
        write_json(json_out, report.as_dict())
    if not report.passed:
        err.print(f"[bold red]FAIL:[/] {candidate} misses its {report.kind} criterion", highlight=False)
        raise typer.Exit(3)
    out.print(f"[green]pass[/] ({report.kind})")


@app.command("build")
@friendly
def build_cmd(
    recipe: str = typer.Argument(..., help="Recipe name (see `ffkit recipes`)."),
    checkpoint: Path = typer.Argument(..., help="Published PyTorch checkpoint."),
    outdir: Path = typer.Option(..., "-o", "--output", help="Output folder (may hold other recipes' builds)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration images (needed by --int8)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also build the FP16 variant."),
    int8: bool = typer.Option(False, "--int8", help="Also build the INT8 variant."),
    calib_latents: Optional[Path] = typer.Option(None, "--calib-latents", help="Swappers: K x 512 latents .npy."),
    method: str = typer.Option(Int8Stage.method, "--method", help="INT8 calibration: minmax | entropy | percentile."),
    samples: int = typer.Option(Int8Stage.samples, "--samples", help="INT8: at most this many calibration samples."),
    auto_exclude: bool = typer.Option(False, "--auto-exclude", help="INT8: keep worst nodes in float to meet budget."),
    level: str = typer.Option(OptimizeStage.level, "--level", help="Optimisation level of the FP32 artifact."),
    unfused_modulation: bool = typer.Option(False, "--unfused-modulation",
                                            help="GFPGAN: static-weight modulated convs (dynamic batch, INT8-able)."),
    emap: Optional[Path] = typer.Option(None, "--emap", help="inswapper: emap .npy or inswapper ONNX."),
    no_emap: bool = typer.Option(False, "--no-emap", help="inswapper: build without the emap (ffkit.emap = none)."),
):
    """Export, simplify, optimize and the asked-for quantizations, each verified, into OUTDIR."""
    from ffkit.validation.report import build_table

    from .build import BuildOptions, build

    opts = BuildOptions(calib=calib, emap=emap, no_emap=no_emap, options=("unfused_modulation",) if unfused_modulation else (),
                        optimize=OptimizeStage(level=level), fp16=Fp16Stage() if fp16 else None,
                        int8=Int8Stage(latents=calib_latents, method=method, samples=samples,
                                       auto_exclude=auto_exclude) if int8 else None)
    result = build(recipe, checkpoint, outdir, opts)
    out.print(build_table(result.recipe, result.variants))
    for v in result.variants:
        if not v["passed"]:
            err.print(f"[bold red]{v['variant']} failed:[/] {v.get('error', 'missed its criterion')}",
                      highlight=False, soft_wrap=True)
    out.print(f"report: {result.outdir / 'report.json'}" + (f", {result.png}" if result.png else ""))
    if not result.passed:
        raise typer.Exit(3)
