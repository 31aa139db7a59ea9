"""``ffkit package --for facefusion``: a models folder written as FaceFusion's model files
(registered on the app; torch-free). A command of its own, not an option of ``ffkit build``:
build makes one recipe's variants per run, while a FaceFusion folder gathers every role's file at
once, from whatever a models folder holds (built, quantized or adopted files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ffkit.recipes.errors import FfkitError

from .cli_app import app, friendly
from .console import err, out
from .facefusion.package import TARGETS, VARIANTS, package_facefusion


@app.command("package")
@friendly
def package_cmd(
    models: Path = typer.Argument(..., help="Folder of artifacts (what `ffkit build` writes)."),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Folder to write (new, or FaceFusion's .assets/models: its files of the same "
                                     "names are replaced, the others kept)."),
    target: str = typer.Option(..., "--for", help=f"The application the folder is for: {', '.join(TARGETS)}."),
    variant: Optional[str] = typer.Option(None, "--variant",
                                          help=f"Preferred variant ({' | '.join(VARIANTS)}); a slot without one "
                                               "takes the best other (fp32 first), with a note."),
):
    """Write MODELS' artifacts under FaceFusion 3.x's model file names, each with its .hash; wrap the
    ones whose I/O differs from FaceFusion's (each wrapper checked against FaceFusion's decode)."""
    if target not in TARGETS:
        raise FfkitError(f"--for {target}: not one of {', '.join(TARGETS)}")
    with err.status("packaging") as status:
        result = package_facefusion(models, output, variant, say=lambda m: status.update(m))
    table = Table(title=f"FaceFusion models -> {result.target}")
    for col in ("slot", "file", "from", "wrapper", "check"):
        table.add_column(col)
    for p in result.written:
        table.add_row(p.slot.key, p.name, f"{p.source.path.name} ({p.source.recipe.name} {p.source.variant})",
                      p.wrapper, p.check)
    out.print(table)
    for line in result.notes + result.skipped:
        out.print(line, highlight=False)
    out.print(f"wrote {len(result.written)} files and their .hash to {result.target}")
