"""The ``ffkit`` command line: thin Typer commands over the stage modules.

Every user-facing failure is an :class:`FfkitError`: printed as one ``error:`` line, non-zero
exit, no traceback. Stage modules import torch lazily, so torch-free commands stay torch-free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import cli_bench, cli_detect, cli_package, cli_runtime, cli_serve, cli_stages, cli_tune, cli_validate, signals  # noqa: F401 - cli_* register commands
from .cli_app import app, friendly
from .console import err, human_size, out


@app.command("recipes")
@friendly
def recipes_cmd():
    """List the recipes with their ONNX inputs and outputs."""
    from ffkit.recipes import all_recipes

    table = Table(title="ffkit recipes", show_lines=True)
    for col in ("recipe", "role", "inputs", "outputs", "tolerance"):
        table.add_column(col)
    for r in all_recipes():
        fmt = lambda specs: "\n".join(f"{t.name} [{'x'.join(map(str, t.shape))}]" for t in specs)  # noqa: E731
        table.add_row(r.name, r.role, fmt(r.inputs), fmt(r.outputs),
                      f"atol {r.tolerance.atol:g}\nrtol {r.tolerance.rtol:g}")
    out.print(table)


@app.command("export")
@friendly
def export_cmd(
    recipe: str = typer.Argument(..., help="Recipe name (see `ffkit recipes`)."),
    checkpoint: Path = typer.Argument(..., help="Published PyTorch checkpoint (.pth)."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default 17)."),
    unfused_modulation: bool = typer.Option(False, "--unfused-modulation",
                                            help="GFPGAN: static-weight modulated convs, dynamic batch."),
    emap: Optional[Path] = typer.Option(None, "--emap",
                                        help="inswapper: 512x512 emap as .npy, or an inswapper ONNX holding one."),
    no_emap: bool = typer.Option(False, "--no-emap",
                                 help="inswapper: export without the emap anyway (ffkit.emap = none; "
                                      "insightface and FaceFusion cannot run it)."),
):
    """Rebuild RECIPE in PyTorch, load CHECKPOINT safely, export ONNX and check parity."""
    from .export import export_recipe

    options = ("unfused_modulation",) if unfused_modulation else ()
    finalize = {**({"emap": emap} if emap is not None else {}), **({"no_emap": True} if no_emap else {})}
    with err.status("exporting") as status:
        result = export_recipe(recipe, checkpoint, output, opset=opset, options=options,
                               finalize_kwargs=finalize, say=lambda m: status.update(m))
    table = Table(title=f"{result.recipe} -> {result.path}")
    for col in ("shape", "output", "max abs error", "pass"):
        table.add_column(col)
    for check in result.checks:
        for name, value in check.max_abs.items():
            table.add_row(" ".join(f"{k}={v}" for k, v in check.dims.items()), name, f"{value:.2e}",
                          "[green]yes[/]" if check.passed else "[red]no[/]")
    out.print(table)
    out.print(f"wrote {result.path} ({human_size(result.size_bytes)}, {result.variant}) in {result.seconds:.1f} s")


def main() -> None:
    """Console-script entry point: SIGTERM ends a command like Ctrl-C does (temp files removed,
    nothing half-written left under a final name), with exit code 143."""
    signals.install()
    app(prog_name="ffkit")



if __name__ == "__main__":
    sys.exit(main())
