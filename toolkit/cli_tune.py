"""``ffkit tune``: the fastest model set of a folder whose swaps stay within ``ffkit validate``'s
budgets (:mod:`ffkit.toolkit.tune`), with every swap option of the one declaration
(:data:`ffkit.runtime.swap_options.SWAP_OPTIONS`, as ``ffkit swap`` and ``ffkit validate`` take them)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.roles import ROLE_NAMES
from ffkit.runtime.swap_options import SWAP_OPTIONS, swap_settings

from .cli_app import app, friendly
from .cli_runtime import _typer_option, _warn
from .console import err, out

_FILE_PARAMS = (
    ("models", Path, typer.Option(..., "--models", help="Folder of FP32 artifacts to tune; the chosen files and "
                                                        "set.json are written there.")),
    ("calib", Path, typer.Option(..., "--calib", help="Folder of calibration images (INT8).")),
    ("validate", list[Path], typer.Option(..., "--validate", help="Image, video or folder the sets are judged on; "
                                                                  "repeatable.")),
    ("source", Path, typer.Option(..., "--source", help="Image with the face to paste while judging.")),
    ("budget", Optional[Path], typer.Option(None, "--budget", help="JSON {\"stage.metric\": bound} replacing "
                                                                   "validate's default budgets.")),
    ("time_limit", float, typer.Option(15.0, "--time-limit", min=0.1, help="Minutes: candidates not built by then "
                                                                         "are skipped (the report says which).")),
    ("candidates", str, typer.Option(",".join(("fp32", "optimized", "fp16", "int8", "fallback")), "--candidates",
                                     help="Which candidates to build: fp32, simplified, optimized, fp16, int8, "
                                          "fallback (INT8 with nodes kept in float).")),
    ("roles", Optional[str], typer.Option(None, "--roles", help="Tune only these roles (comma list); the others "
                                                                "stay FP32.")),
    ("search", str, typer.Option("auto", "--search", help="auto (exhaustive when the sets are few), exhaustive "
                                                          "or greedy.")),
    ("every", int, typer.Option(1, "--every", min=1, help="Videos: judge every K-th frame.")),
    ("frames", int, typer.Option(8, "--frames", min=0, help="Videos: at most N frames each (0 = all).")),
    ("report", Optional[Path], typer.Option(None, "--report", help="Report folder (default MODELS/tune-report).")),
)


def tune_signature() -> inspect.Signature:
    fixed = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, annotation, option in _FILE_PARAMS]
    return inspect.Signature(fixed + [_typer_option(spec) for spec in SWAP_OPTIONS])


def tune_cmd(**params):
    """Find the fastest set of files in MODELS whose swaps ffkit validate cannot tell from FP32.

    Per role: FP32 (as given, optimized), FP16, INT8, and INT8 with the nodes that hurt the swap
    most kept in float; each timed here with the given providers and judged by validate
    (isolated and chained); the fastest set passing every budget is written to MODELS/set.json,
    which ffkit swap, serve and Ray batches then use (--variant overrides it). Exit 0 done, 2 bad input.
    """
    files = {name: params.pop(name) for name, _, _ in _FILE_PARAMS}
    settings = swap_settings(params)
    run_tune_cli(settings, **files)


tune_cmd.__signature__ = tune_signature()
app.command("tune")(friendly(tune_cmd))


def _parse_list(text: Optional[str], allowed, flag: str) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise FfkitError(f"{flag} {text}: a comma list of {', '.join(allowed)}")
    return items


def _check(models: Path, calib: Path, source: Path) -> None:
    from ffkit.runtime.media import read_image

    for folder, flag in ((models, "--models"), (calib, "--calib")):
        if not folder.is_dir():
            raise FfkitError(f"{folder}: {flag} folder not found" if not folder.exists() else
                             f"{folder}: {flag} takes a folder")
    read_image(source)


def run_tune_cli(settings, *, models, calib, validate, source, budget, time_limit, candidates, roles, search, every,
                 frames, report) -> None:
    """Run ``ffkit tune`` once its options are checked; place the files; print and write the report."""
    from .bench.machine import machine_info
    from .tune.candidates import KINDS
    from .tune.output import write_outputs
    from .tune.run import TuneRequest, run_tune
    from .tune.summary import candidate_table, outcome_lines

    _check(models, calib, source)
    kinds = _parse_list(candidates, KINDS, "--candidates")
    if search not in ("auto", "exhaustive", "greedy"):
        raise FfkitError(f"--search {search}: auto, exhaustive or greedy")
    if settings.values["variant"] is not None:
        _warn("--variant is ignored: tune chooses the variant of every role")
    req = TuneRequest(models, calib, validate, source, settings, budget, time_limit, kinds,
                      _parse_list(roles, ROLE_NAMES, "--roles"), every, frames, method=search)
    if err.is_terminal:
        with err.status("tune: starting") as status:
            result = run_tune(req, on_step=lambda m: status.update(f"tune: {m}"))
    else:   # a log: one line per step
        result = run_tune(req, on_step=lambda m: err.print(f"tune: {m}", highlight=False, soft_wrap=True))
    machine = machine_info()
    set_path, folder = write_outputs(result, settings, models, report, machine)
    out.print(candidate_table(result, f"{machine['cpu']}, {' '.join(machine['isa'])}"))
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    for line in outcome_lines(result, machine["cpu"]):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"wrote {set_path}; report: {folder / 'report.html'} ({result.seconds:.0f} s; cache: "
              f"{result.cache.builds} built, {result.cache.hits} reused)", highlight=False, soft_wrap=True)
