"""The figures of a run reduced to one cell per set, stage, metric and mode (the worst value over
every frame and face, and the mean), judged against the budgets, and the verdict.

The verdict of a candidate set names the first stage (pipeline order,
:data:`~.budgets.STAGES`) with a failing budget, and whether it fails *isolated* (this model:
it misses the budget on the reference's own inputs) or only *chained* (inherited: it passes
alone, the error comes from an earlier stage). Pixels changed outside every paste region are
reported as a bug, in any set, the reference included.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

from .budgets import STAGES, Budget, passes

__all__ = ["Cell", "summarise", "verdicts"]


@dataclass
class Cell:
    """One set's ``stage.metric`` in one mode: worst and mean over ``count`` figures; the budget
    (None for an informative figure) and whether the worst meets it."""

    set: str
    stage: str
    metric: str
    mode: str
    worst: float
    mean: float
    count: int
    budget: Budget | None
    passed: bool

    def as_dict(self) -> dict:
        return {"set": self.set, "stage": self.stage, "metric": self.metric, "mode": self.mode,
                "worst": self.worst, "mean": self.mean, "count": self.count,
                "budget": self.budget.text() if self.budget else None, "passed": self.passed}


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        return sum(finite) / len(finite)
    real = [v for v in values if not math.isnan(v)]
    return real[0] if real else math.nan


def summarise(rows: list[dict], budgets: Mapping[str, Budget]) -> list[Cell]:
    """One :class:`Cell` per (set, stage, metric, mode), in set then stage order."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["stage"], r["metric"], r["mode"])].append(float(r["value"]))
    sets = list(dict.fromkeys(r["set"] for r in rows))
    cells = []
    for key, values in groups.items():
        set_name, stage, metric, mode = key
        budget = budgets.get(f"{stage}.{metric}") if mode in ("isolated", "chained") else None
        real = [v for v in values if not math.isnan(v)]
        if not real:
            worst = math.nan
        elif budget is not None and budget.kind == "min" or budget is None and metric in ("psnr", "ssim", "cosine"):
            worst = min(real)
        else:
            worst = max(real)
        cells.append(Cell(set_name, stage, metric, mode, worst, _finite_mean(values), len(real), budget,
                          passes(budget, worst) if budget is not None else True))
    order = {s: i for i, s in enumerate(STAGES)}
    cells.sort(key=lambda c: (sets.index(c.set), order.get(c.stage, 99), c.metric, c.mode))
    return cells


def verdicts(cells: list[Cell], set_names: list[str]) -> dict[str, dict]:
    """``{set: {"passed", "stage", "where", "metric", "value", "budget", "text"}}`` for every set;
    the reference only fails on a bug (pixels changed outside the paste regions)."""
    out = {}
    for k, name in enumerate(set_names):
        mine = [c for c in cells if c.set == name and c.budget is not None]
        bug = next((c for c in mine if c.metric == "outside_changed" and not c.passed), None)
        if bug is not None:
            out[name] = {"passed": False, "stage": "output", "where": "bug", "metric": bug.metric, "value": bug.worst,
                         "budget": bug.budget.text(),
                         "text": f"BUG: {bug.worst:g} pixels changed outside every paste region"}
            continue
        failing = [c for c in mine if not c.passed] if k > 0 else []
        if not failing:
            out[name] = {"passed": True, "text": "reference" if k == 0 else "PASS: every stage within its budget"}
            continue
        order = {s: i for i, s in enumerate(STAGES)}
        stage = min((c.stage for c in failing), key=lambda s: order.get(s, 99))
        here = [c for c in failing if c.stage == stage]
        isolated = [c for c in here if c.mode == "isolated"]
        first = (isolated or here)[0]
        where = "isolated" if isolated else "chained only"
        why = "this model" if isolated else "inherited from an earlier stage"
        out[name] = {"passed": False, "stage": stage, "where": where, "metric": first.metric, "value": first.worst,
                     "budget": first.budget.text(),
                     "text": f"FAIL: {stage} fails {where} ({why}): {first.metric} {_fmt(first.worst)}, "
                             f"budget {first.budget.text()}"}
    return out


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.4g}"
