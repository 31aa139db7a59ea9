"""``ffkit validate``: judge a model set against a reference set end to end, stage by stage
(:mod:`ffkit.validation.validate`), with every swap option of the one declaration
(:data:`ffkit.runtime.swap_options.SWAP_OPTIONS`, as ``ffkit swap`` takes them)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.swap_options import SWAP_OPTIONS, swap_settings

from .cli_app import app, friendly
from .cli_runtime import _typer_option, _warn
from .console import err, out

#: The parameters that are not swap options.
_FILE_PARAMS = (
    ("source", Path, typer.Option(..., "--source", help="Image with the face to paste (the largest face is used).")),
    ("target", list[Path], typer.Option(..., "--target", help="Image, video or folder of them; repeatable.")),
    ("models", Path, typer.Option(..., "--models", help="Folder of artifacts: the candidates (and the FP32 "
                                                        "reference unless --against).")),
    ("output", Path, typer.Option(..., "-o", "--output", help="Report folder (report.html, report.json, "
                                                              "report.png, frames/).")),
    ("variants", str, typer.Option("fp16,int8", "--variants", help="Candidate precisions of --models, "
                                                                    "each against its FP32.")),
    ("against", Optional[Path], typer.Option(None, "--against", help="Reference folder (e.g. adopted FaceFusion "
                                                                     "files); --models is then the candidate.")),
    ("mix", Optional[str], typer.Option(None, "--set", help="One candidate mixing precisions per role: "
                                                            "detector=int8,swapper=fp16,...")),
    ("json_out", Optional[Path], typer.Option(None, "--json", help="Also write report.json's data here.")),
    ("every", int, typer.Option(1, "--every", min=1, help="Videos: judge every K-th frame.")),
    ("frames", int, typer.Option(0, "--frames", min=0, help="Videos: at most N frames each (0 = all).")),
    ("budget", Optional[Path], typer.Option(None, "--budget", help="JSON {\"stage.metric\": bound} replacing "
                                                                   "default budgets.")),
)


def validate_signature() -> inspect.Signature:
    """The command's parameters: the files and sets, then every declared swap option."""
    fixed = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, annotation, option in _FILE_PARAMS]
    return inspect.Signature(fixed + [_typer_option(spec) for spec in SWAP_OPTIONS])


def validate_cmd(**params):
    """Judge a model set against a reference set on real frames, stage by stage: each stage isolated
    (the candidate model on the reference's inputs) and chained (the candidate set alone).

    Exit 0: every set within its budgets; 3: a budget fails; 2: bad input.
    """
    files = {name: params.pop(name) for name, _, _ in _FILE_PARAMS}
    settings = swap_settings(params)
    code = run_validate(settings, **files)
    if code:
        raise typer.Exit(code)


validate_cmd.__signature__ = validate_signature()
app.command("validate")(friendly(validate_cmd))


def _check(source, target, models, output, against, budget, json_out):
    """The cheap checks before any model is loaded: ``(targets, budgets)``."""
    from ffkit.runtime.media import is_video_path, probe_video, read_image
    from ffkit.validation.validate.budgets import load_budgets
    from ffkit.validation.validate.engine import expand_targets

    read_image(source)
    targets = expand_targets(target)
    for t in targets:
        if is_video_path(t):
            probe_video(t)
        else:
            read_image(t)
    for folder, flag in ((models, "--models"), (against, "--against")):
        if folder is not None and not Path(folder).is_dir():
            raise FfkitError(f"{folder}: {flag} folder not found" if not Path(folder).exists() else
                             f"{folder}: {flag} takes a folder of ONNX files")
    if output.exists() and not output.is_dir():
        raise FfkitError(f"{output}: exists and is not a folder (-o takes the report folder)")
    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise FfkitError(f"{json_out}: cannot write output, folder {json_out.resolve().parent} does not exist")
    return targets, load_budgets(budget)


def run_validate(settings, *, source, target, models, output, variants, against, mix, json_out, every, frames,
                 budget) -> int:
    """Run ``ffkit validate`` once its options are checked; print the tables; the exit code (0 or 3)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ffkit.validation.validate.engine import run_validation
    from ffkit.validation.validate.report_files import speed_table, terminal_table
    from ffkit.validation.validate.reporting import write_reports
    from ffkit.validation.validate.sets import build_sets, parse_mix, parse_variants

    from .validate_machine import validate_machine

    targets, budgets = _check(source, target, models, output, against, budget, json_out)
    if against is not None and mix is not None:
        raise FfkitError("--set mixes precisions of --models against its FP32; it does not combine with --against")
    sets = build_sets(settings, models, variants=parse_variants(variants), against=against,
                      mix=parse_mix(mix) if mix else None)
    for s in sets:
        for note in s.fallbacks:
            err.print(f"note ({s.name}): {note}", highlight=False, soft_wrap=True)
    if settings.values["detect_every"] != 1 or settings.values["smooth"] != 0.0:
        _warn("validate detects on every judged frame; --detect-every and --smooth are not applied")
    pool = settings.session_pool(1, warn=_warn)
    with Progress(TextColumn("validating {task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=False) as progress:
        task = progress.add_task("", total=None)

        def tick(name: str, done: int, total: int) -> None:
            progress.update(task, description=name, completed=done, total=total or None)

        val = run_validation(sets, settings, pool, source, targets, every=every, frames=frames, progress=tick)
    machine = validate_machine()
    outcome = write_reports(val, budgets, output, machine, options=_jsonable(settings.values), json_out=json_out)
    out.print(terminal_table(outcome.stage_rows, outcome.verdicts))
    out.print(speed_table(val.speed, sets[0].name, f"{machine['cpu']}, {' '.join(machine['isa'])}"))
    t = val.timing
    out.print(f"validate took {t['wall_seconds']:.1f} s, {t['overhead_ratio']:.2f}x the {t['swap_seconds']:.1f} s the "
              f"sets spent swapping (the judging and reports are the rest; {machine['cpu']})", highlight=False,
              soft_wrap=True)
    for name, v in outcome.verdicts.items():
        out.print(f"{name}: {v['text']}", highlight=False, soft_wrap=True)
    out.print(f"report: {output / 'report.html'}", highlight=False, soft_wrap=True)
    return 0 if outcome.passed else 3


def _jsonable(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
