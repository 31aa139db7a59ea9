"""CLI commands (registered on ``ffkit.toolkit.cli.app``): ``ffkit bench``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ffkit.recipes.errors import FfkitError

from .cli_app import app, friendly  # noqa: F401
from .console import err, out


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise FfkitError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise FfkitError(f"{what}: expected positive integers, got {text!r}")
    return values


def _dims(text: str) -> dict[str, int]:
    dims = {}
    for item in filter(None, text.replace(" ", "").split(",")):
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise FfkitError(f"--dims: expected NAME=SIZE[,NAME=SIZE], got {item!r}")
        dims[name] = int(value)
    return dims


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    colour = "green" if x >= 1.0 else "red"
    return f"[{colour}]{x:.2f}x[/]"


def _budget(rec: dict) -> str:
    acc = rec.get("accuracy")
    if not acc:
        return ""
    values = [f"{o['criterion'].split()[0]} {o['value']:.4g}" for o in acc["outputs"].values() if o.get("value") is not None]
    mark = "[green]met[/]" if acc["budget_met"] else "[red]MISSED[/]"
    return f"{mark} {values[0] if values else ''}".strip()


def results_table(report: dict) -> Table:
    """One row per variant and batch: latency, throughput, memory, speed-ups, roofline."""
    peak = report.get("peak") or {}
    p32 = (peak.get("fp32") or {}).get("best_gflops")
    p8 = (peak.get("int8") or {}).get("best_gflops")
    threads = report["settings"]["session"]["threads"]
    isa = set(report["machine"].get("isa") or ())
    flags = ", ".join(f"{f} {'yes' if f in isa else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni"))
    compared = report.get("settings_compared")
    title = (f"ffkit bench: {report['machine'].get('cpu', '?')} ({flags}), {threads} thread(s); best GEMM peak seen: FP32 "
             f"{p32 or '-'} GFLOP/s, INT8 {p8 or '-'} GOP/s (% peak: against the peak measured beside each row)")
    if compared:
        from .bench.report import settings_line

        title += "\n" + settings_line(report) + " (median ms: new settings; torch eager: the new spinning policy)"
    table = Table(title=title, show_lines=False)
    columns = [("recipe", "left"), ("variant", "left"), ("N", "right"), ("median ms", "right"), ("p90 ms", "right"),
               ("items/s", "right"), ("peak MB", "right"), ("vs eager", "right"), ("vs onnx-fp32", "right"),
               ("GFLOP", "right"), ("GFLOP/s", "right"), ("% peak", "right")]
    if compared:
        columns += [("old-settings ms", "right"), ("new vs old", "right")]
    for col, just in columns + [("budget", "left")]:
        table.add_column(col, justify=just, no_wrap=col != "budget")
    blank = len(columns) - 3
    last_recipe = None
    for rec in report["results"]:
        name = rec["group"]
        if last_recipe is not None and name != last_recipe:
            table.add_section()
        last_recipe = name
        if rec.get("error"):
            table.add_row(name, rec["label"], "", f"[red]error: {rec['error'][:80]}[/]", *[""] * blank)
            continue
        for i, b in enumerate(rec["batches"]):
            first = i == 0
            if "skipped" in b:
                table.add_row(name if first else "", rec["label"] if first else "", str(b["batch"]),
                              f"[dim]{b['skipped']}[/]", *[""] * blank)
                continue
            frac = b.get("fraction_of_peak")
            old = [_ms(b.get("old_settings_median_ms")), _ratio(b.get("speedup_vs_old_settings"))] if compared else []
            table.add_row(name if first else "", rec["label"] if first else "", str(b["batch"]), _ms(b["median_ms"]),
                          _ms(b["p90_ms"]), f"{b['throughput_per_s']:.1f}",
                          f"{rec['peak_mb']:.0f}" if first and rec.get("peak_mb") is not None else "",
                          _ratio(b.get("speedup_vs_eager")), _ratio(b.get("speedup_vs_onnx_fp32")),
                          f"{b['gflops']:.2f}" if b.get("gflops") else "-",
                          f"{b['gflops_per_s']:.1f}" if b.get("gflops_per_s") else "-",
                          f"{frac * 100:.0f}% {b['peak_precision']}" if frac is not None else "-",
                          *old, _budget(rec) if first else "")
    return table


def profile_tables(rec: dict) -> list[Table]:
    """The top operators and nodes of one variant's profile."""
    prof = rec["profile"]
    title = f"{rec['key']}: {prof['total_ms_per_run']:.1f} ms/run of kernels at N={prof.get('batch')} ({prof['file']})"
    ops = Table(title=title + " - by operator")
    for col in ("operator", "nodes", "ms/run", "share"):
        ops.add_column(col, justify="left" if col == "operator" else "right")
    for row in prof["by_op"]:
        ops.add_row(row["op"], str(row["nodes"]), f"{row['ms_per_run']:.2f}", f"{row['share'] * 100:.1f}%")
    nodes = Table(title=f"{rec['key']} - by node")
    for col in ("node", "operator", "ms/run", "share"):
        nodes.add_column(col, justify="right" if col in ("ms/run", "share") else "left")
    for row in prof["by_node"]:
        nodes.add_row(row["node"], row["op"], f"{row['ms_per_run']:.2f}", f"{row['share'] * 100:.1f}%")
    return [ops, nodes]


@app.command("bench")
@friendly
def bench_cmd(
    paths: Optional[List[Path]] = typer.Argument(None, help="ONNX artifacts and/or folders of them (searched recursively)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe of artifacts that record none, and of --checkpoint."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                              help="Published checkpoint (or a folder of <recipe>.pth) for the PyTorch eager row."),
    batch: str = typer.Option("1,4", "--batch", help="Batch sizes, comma separated."),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads for ORT and torch (0: physical cores)."),
    providers: str = typer.Option("CPUExecutionProvider", "--providers", help="ORT execution providers, comma separated."),
    provider_option: Optional[list[str]] = typer.Option(None, "--provider-option",
                                                        help="PROVIDER:KEY=VALUE for onnxruntime, repeatable "
                                                             "(recorded in the report)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report (raw times included) here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the table as markdown here."),
    dims: str = typer.Option("", "--dims", help="Dynamic axes other than N, e.g. H=640,W=640 (default: the recipe's)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed runs before timing, per batch."),
    repeat: int = typer.Option(20, "--repeat", help="Timed runs per batch (at most)."),
    max_seconds: float = typer.Option(15.0, "--max-seconds", help="Stop timing a batch after this long (see --min-runs)."),
    min_runs: int = typer.Option(5, "--min-runs", help="Timed runs per batch even past --max-seconds."),
    rounds: int = typer.Option(1, "--rounds", help="Measure all variants round-robin this many times, pooling runs."),
    level: str = typer.Option("all", "--level", help="ORT graph optimisation level: disable|basic|extended|all."),
    spin: Optional[bool] = typer.Option(None, "--spin/--no-spin",
                                        help="Thread spin-waiting: ORT intra-op spinning, and for PyTorch OMP_WAIT_POLICY "
                                             "(default: the libraries' own, spinning). --no-spin on a shared machine."),
    eager: bool = typer.Option(True, "--eager/--no-eager", help="Include PyTorch eager when a checkpoint is given."),
    peak: bool = typer.Option(True, "--peak/--no-peak", help="Measure the FP32 and INT8 GEMM peak."),
    isolate: bool = typer.Option(True, "--isolate/--in-process", help="Measure each variant in a fresh process."),
    profile: bool = typer.Option(False, "--profile", help="Also profile each ONNX variant per node (ORT profiler)."),
    profile_dir: Optional[Path] = typer.Option(None, "--profile-dir", help="Where the raw profile JSON files go."),
    top: int = typer.Option(10, "--top", help="Operators / nodes shown per profile."),
    compare_settings: bool = typer.Option(False, "--compare-settings",
                                          help="Time each ONNX variant on the runtime's old session settings (spinning on, "
                                               "no provider options) and its current ones (default_spinning, provider "
                                               "defaults) in this run; shows both and the ratio. Overrides --spin."),
    pipeline: bool = typer.Option(False, "--pipeline", help="Benchmark `ffkit swap` end to end instead, per stage."),
    models: Optional[Path] = typer.Option(None, "--models", help="--pipeline: folder of artifacts."),
    target: Optional[Path] = typer.Option(None, "--target", help="--pipeline: target video."),
    source: Optional[Path] = typer.Option(None, "--source", help="--pipeline: source face image (default: a built-in one)."),
    frames: int = typer.Option(0, "--frames", help="--pipeline: stop after this many frames (0: all)."),
    enhance: bool = typer.Option(False, "--enhance", help="--pipeline: include the GFPGAN enhancer."),
    swapper: Optional[str] = typer.Option(None, "--swapper", help="--pipeline: swapper recipe or file (see ffkit swap)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="--pipeline: prefer fp32 | fp16 | int8 artifacts."),
    score_threshold: float = typer.Option(0.5, "--score-threshold", help="--pipeline: detector score threshold."),
    max_faces: int = typer.Option(0, "--max-faces", help="--pipeline: at most this many faces per frame (0: all)."),
    workers: int = typer.Option(0, "--workers", help="--pipeline: also time the threaded swap_video with this many workers."),
):
    """Speed, memory and roofline of every variant side by side, against the machine's own GEMM peak."""
    from . import bench

    if pipeline:
        from .bench.pipeline import pipeline_bench_cli

        pipeline_bench_cli(models=models, target=target, source=source, frames=frames, threads=threads,
                           providers=providers, json_out=json_out, enhance=enhance, swapper=swapper, variant=variant,
                           score_threshold=score_threshold, max_faces=max_faces, workers=workers)
        return
    if not paths and checkpoint is None:
        raise FfkitError("give ONNX artifacts or a folder of them (or --pipeline --models DIR --target VIDEO)")
    settings = _bench_settings(batch=batch, dims=dims, threads=threads, level=level, spin=spin, providers=providers,
                               provider_option=provider_option, warmup=warmup, repeat=repeat,
                               max_seconds=max_seconds, min_runs=min_runs, rounds=rounds, isolate=isolate, peak=peak,
                               compare_settings=compare_settings, profile=profile, profile_dir=profile_dir,
                               top=top, json_out=json_out)
    if json_out is not None:
        from ffkit.recipes.atomic import check_writable

        check_writable(json_out)
    variants = bench.discover(paths or [], recipe=recipe, checkpoint=checkpoint, eager=eager)
    report = _run_with_progress(variants, settings, json_out)
    _print_report(report, compare_settings)
    _write_outputs(report, json_out, markdown)
    errors = [r for r in report["results"] if r.get("error")]
    if errors:
        raise FfkitError(f"{len(errors)} variant(s) failed to run: " + "; ".join(f"{r['key']}: {r['error']}" for r in errors[:3]))


def _bench_settings(*, batch: str, dims: str, threads: int, level: str, spin: Optional[bool], providers: str,
                    provider_option: Optional[list[str]], warmup: int, repeat: int, max_seconds: float,
                    min_runs: int, rounds: int, isolate: bool, peak: bool, compare_settings: bool, profile: bool,
                    profile_dir: Optional[Path], top: int, json_out: Optional[Path]):
    """The :class:`BenchSettings` the options ask for (one-line FfkitError on a malformed one); the
    profiles go beside ``--json`` (or to ``ffkit-bench-profiles``) unless ``--profile-dir`` says."""
    from ffkit.runtime.provider_options import parse_provider_options

    from . import bench

    cfg = bench.SessionConfig(threads=threads, level=level, spinning=spin,
                              providers=tuple(p.strip() for p in providers.split(",") if p.strip()),
                              provider_options=parse_provider_options(provider_option or ()))
    if profile and profile_dir is None:
        profile_dir = json_out.with_suffix(".profiles") if json_out else Path("ffkit-bench-profiles")
    return bench.BenchSettings(batches=_int_list(batch, "--batch"), dims=_dims(dims), session=cfg,
                               warmup=warmup, repeat=repeat, max_seconds=max_seconds, min_runs=max(1, min_runs),
                               rounds=max(1, rounds),
                               isolate=isolate, peak=peak, compare_settings=compare_settings,
                               profile_dir=str(profile_dir) if profile else None, profile_top=top)


def _run_with_progress(variants, settings, json_out: Optional[Path]) -> dict:
    """``run_bench`` under a progress bar on stderr (one line per step in a log), writing the
    partial report to ``json_out`` as it goes."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import bench

    per_round = sum(3 if settings.compare_settings and v.kind == "onnx" else 1 for v in variants)
    steps = len(variants) + per_round * settings.rounds + (1 if settings.peak else 0)
    with Progress(TextColumn("[bold]bench[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=err, transient=True) as progress:
        task = progress.add_task("", total=steps)
        started = [False]

        def step(msg: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=msg)
            if not err.is_terminal:  # a log file: one line per step instead of a live bar
                err.print(f"bench: {msg}", highlight=False)

        partial = (lambda rep: bench.write_json(rep, json_out)) if json_out is not None else None
        report = bench.run_bench(variants, settings, on_step=step, on_partial=partial)
        progress.advance(task)
    return report


def _print_report(report: dict, compare_settings: bool) -> None:
    """The results table, then each profiled variant's operator and node tables."""
    table = results_table(report)
    # a log keeps every row on one line, however many columns (rich would wrap them at the width)
    out.print(table, width=None if out.is_terminal else max(out.width, 260 if compare_settings else out.width))
    for rec in report["results"]:
        if rec.get("profile"):
            for t in profile_tables(rec):
                out.print(t)


def _write_outputs(report: dict, json_out: Optional[Path], markdown: Optional[Path]) -> None:
    """Write the full JSON report and the markdown table where asked, saying so."""
    from . import bench

    if json_out is not None:
        bench.write_json(report, json_out)
        out.print(f"wrote {json_out}")
    if markdown is not None:
        from ffkit.recipes.atomic import atomic_path

        with atomic_path(markdown) as tmp:
            tmp.write_text(bench.markdown_table(report))
        out.print(f"wrote {markdown}")
