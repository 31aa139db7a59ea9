"""What ``ffkit tune`` leaves: the chosen files in the models folder (``<recipe>.tuned.<label>.onnx``;
a role that stays FP32 keeps its own file), ``set.json`` (read by
:func:`ffkit.runtime.models.read_tuned_set`: ``ffkit swap``, serve and Ray batches pick it), and
the report folder in ``ffkit validate``'s format (its writer: report.json, report.html,
report.png) plus ``tune.json`` (every candidate, its speed, its verdict alone, the ranking of
the float fallback, the search's checks)."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Mapping

from ffkit.recipes.atomic import atomic_path
from ffkit.runtime.models import TUNED_SET
from ffkit.validation.validate.engine import Validation, peak_rss_mb, rss_mb
from ffkit.validation.validate.reporting import write_reports
from ffkit.validation.validate.sets import ModelSet

from .candidates import Candidate

__all__ = ["place_files", "write_set", "write_tune_reports", "write_outputs", "summary_of", "TUNED_MARK"]

TUNED_MARK = ".tuned."


def place_files(models: Path, chosen: Mapping[str, Candidate], reference) -> dict[str, Path]:
    """The chosen files in ``models`` (copied from the cache; earlier tuned files not chosen now
    removed): ``{role: path in models}``."""
    placed = {}
    for role, c in chosen.items():
        ref = getattr(reference, role)
        if c.path == ref.path:
            placed[role] = ref.path
            continue
        dest = models / f"{c.recipe}{TUNED_MARK}{c.label}.onnx"
        with atomic_path(dest, need_bytes=c.path.stat().st_size) as tmp:
            shutil.copyfile(c.path, tmp)
        placed[role] = dest
    keep = {p.name for p in placed.values()}
    for old in models.glob(f"*{TUNED_MARK}*.onnx"):
        if old.name not in keep:
            old.unlink()
    return placed


def write_set(models: Path, placed: Mapping[str, Path], chosen: Mapping[str, Candidate], summary: dict) -> Path:
    """``set.json``: the file, recipe, variant, size and sha256 of each role, and the run's figures."""
    from .cache import TuneCache

    sha = TuneCache(models).sha
    data = {"format": "ffkit-tuned-set", "version": 1, "made_by": "ffkit tune",
            "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "roles": {role: {"file": path.name, "recipe": chosen[role].recipe, "variant": chosen[role].label,
                             "size": path.stat().st_size, "sha256": sha(path)} for role, path in placed.items()},
            **summary}
    path = models / TUNED_SET
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=str))
    return path


def write_tune_reports(folder: Path, reference: ModelSet, tuned: ModelSet, final, budgets, machine: dict,
                       options: dict, tune_data: dict):
    """validate's report of the tuned set against FP32 (from the final judgement's rows) and
    ``tune.json``; returns validate's Outcome."""
    rows = [{**r, "set": tuned.name} for r in final.rows]
    frames = max((r["frame"] for r in rows if r.get("frame", -1) >= 0), default=0) + 1
    speed = {reference.name: {"frames_per_second": final.ref_fps},
             tuned.name: {"frames_per_second": final.fps}}
    for s in speed.values():
        s.update(frames=frames, seconds=frames / s["frames_per_second"] if s["frames_per_second"] else None)
    val = Validation([reference, tuned], rows=rows, speed=speed,
                     memory={"rss_start_mb": rss_mb(), "rss_end_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()},
                     notes=["judged by ffkit tune; contact sheets are not kept for cached judgements"])
    outcome = write_reports(val, budgets, folder, machine, options=options)
    path = Path(folder) / "tune.json"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(tune_data, indent=1, default=str))
    return outcome


def write_outputs(result, settings, models: Path, report: Path | None, machine: dict) -> tuple[Path, Path]:
    """Everything a tune run leaves (see the module docstring): ``(set.json, report folder)``.
    ``result``: :func:`~.run.run_tune`'s; ``settings``: the swap options it ran with."""
    models = Path(models)
    placed = place_files(models, result.chosen, result.reference.selection)
    summary = summary_of(result, machine)
    set_path = write_set(models, placed, result.chosen, summary)
    tuned = ModelSet("tuned", settings.pick(models), models)
    folder = Path(report) if report is not None else models / "tune-report"
    write_tune_reports(folder, result.reference, tuned, result.final, result.budgets, machine,
                       {k: list(v) if isinstance(v, tuple) else v for k, v in settings.values.items()},
                       {**summary, "set": str(set_path)})
    return set_path, folder


def summary_of(result, machine: dict) -> dict:
    """The run's figures for set.json and tune.json."""
    f = result.final
    return {"frames_per_second": {"fp32": f.ref_fps, "tuned": f.fps, "ratio": f.fps / f.ref_fps if f.ref_fps else None},
            "verdict": f.text, "passed": f.passed, "search": result.method, "checks": result.checks,
            "chosen": {r: c.as_dict() for r, c in result.chosen.items()},
            "candidates": {r: [c.as_dict() for c in cs] for r, cs in result.candidates.items()},
            "single_precision_sets": result.uniform, "calibration": result.calibration,
            "fallback_ranking": result.ranking, "notes": result.notes,
            "seconds": round(result.seconds, 1),
            "cache": {"built": result.cache.builds, "reused": result.cache.hits,
                      "judged": result.cache.judged, "judgements_reused": result.cache.judged_hits},
            "budgets": {k: b.bound for k, b in result.budgets.items()},
            "machine": {"cpu": machine.get("cpu"), "isa": machine.get("isa")}}
