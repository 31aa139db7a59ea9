"""Sets judged by ``ffkit validate``'s engine (:mod:`ffkit.validation.validate`): its isolated and
chained figures, its budgets and its verdict; nothing of its metrics is computed here.

A set is FP32 (the reference, picked as ``ffkit validate`` picks it) with some roles replaced
by candidates. Its validate rows are budget-free and cached by the sha256 of every file in
the set, of the source and targets, and the swap options (:class:`~.cache.TuneCache`): a run
that changes only the budget re-judges nothing. ``spend``: the share of each budget a set
uses (0 = the reference's value, 1 = at the bound), the accuracy the search pays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ffkit.runtime.models import identify
from ffkit.validation.validate.engine import run_validation
from ffkit.validation.validate.sets import ModelSet
from ffkit.validation.validate.summary import summarise, verdicts

from .cache import TuneCache, content_key
from .candidates import Candidate

__all__ = ["Judge", "Judgement", "spend_of", "REFERENCE"]

REFERENCE = "fp32"
#: Metrics whose best value is 1 (a ``min`` budget below 1).
_UNIT = {"cosine", "ssim", "box_iou", "agreement", "mask_iou"}


def spend_of(cell) -> float:
    """The share of ``cell``'s budget its worst value uses: 0 at the ideal, 1 at the bound, over
    1 beyond it (PSNR: bound / value; unit metrics: (1 - value) / (1 - bound); ``max`` budgets:
    value / bound, a zero bound spends 0 or 2)."""
    b, v = cell.budget, cell.worst
    if b is None or v is None or math.isnan(v):
        return 0.0
    if b.kind == "max":
        if b.bound <= 0:
            return 0.0 if v <= b.bound else 2.0
        return max(0.0, v / b.bound)
    if cell.metric in _UNIT and b.bound < 1:
        return max(0.0, (1.0 - v) / (1.0 - b.bound))
    if v <= 0:
        return 2.0
    return max(0.0, b.bound / v) if math.isfinite(v) else 0.0


@dataclass
class Judgement:
    """One set's verdict: ``passed``, validate's ``text``, ``spend`` per ``stage.metric.mode``,
    its frames/s and the reference's in the same run, its rows (for the report)."""

    passed: bool
    text: str
    spend: dict
    fps: float
    ref_fps: float
    rows: list = field(default_factory=list, repr=False)
    cached: bool = False

    @property
    def worst_spend(self) -> float:
        return max(self.spend.values(), default=0.0)


@dataclass
class Judge:
    """Judges sets of candidates against the FP32 reference (see the module docstring)."""

    settings: object
    reference: ModelSet
    source: Path
    targets: Sequence[Path]
    budgets: Mapping
    cache: TuneCache
    every: int = 1
    frames: int = 0
    chunk: int = 4
    on_step: Callable[[str], None] = lambda message: None

    def __post_init__(self):
        self.context = content_key(
            self.cache.sha(self.source), [self.cache.sha(t) for t in self.targets], self.every, self.frames,
            {k: v for k, v in self.settings.values.items() if k not in ("variant", "workers")},
            sorted((role, self.cache.sha(ref.path)) for role, ref in self.reference.selection.used()))

    def key(self, choice: Mapping[str, Candidate]) -> str:
        return content_key(self.context, sorted((r, self.cache.sha(c.path)) for r, c in choice.items()
                                                if c.path != self._ref_path(r)))

    def _ref_path(self, role: str):
        ref = getattr(self.reference.selection, role, None)
        return ref.path if ref is not None else None

    def model_set(self, name: str, choice: Mapping[str, Candidate]) -> ModelSet:
        """The reference's selection with ``choice``'s files in their roles."""
        swapped = {role: identify(c.path) for role, c in choice.items() if c.path != self._ref_path(role)}
        selection = dataclasses.replace(self.reference.selection, notes=[], tuned=None, **swapped)
        return ModelSet(name, selection, self.reference.folder)

    def judge(self, choices: Sequence[Mapping[str, Candidate]]) -> list[Judgement]:
        """validate's verdict of every set in ``choices`` (cached ones are not run again)."""
        keys = [self.key(c) for c in choices]
        found = {k: self.cache.load_judged(k) for k in dict.fromkeys(keys)}
        todo = [k for k, v in found.items() if v is None]
        by_key = dict(zip(keys, choices))
        for start in range(0, len(todo), self.chunk):
            part = todo[start:start + self.chunk]
            found.update(self._run(part, [by_key[k] for k in part]))
        return [self._verdict(found[k], cached=k not in todo) for k in keys]

    def _run(self, keys: list[str], choices: list[Mapping[str, Candidate]]) -> dict:
        names = [f"set{i}" for i in range(len(choices))]
        sets = [self.reference] + [self.model_set(n, c) for n, c in zip(names, choices)]
        self.on_step("judging " + "; ".join(",".join(f"{r}={c.label}" for r, c in ch.items()) or "fp32"
                                            for ch in choices))
        pool = self.settings.session_pool(1)
        val = run_validation(sets, self.settings, pool, self.source, list(self.targets), every=self.every,
                             frames=self.frames)
        ref_fps = val.speed[REFERENCE]["frames_per_second"]
        out = {}
        for key, name in zip(keys, names):
            rows = [{**r, "set": "candidate"} for r in val.rows if r["set"] == name]
            data = {"rows": rows, "fps": val.speed[name]["frames_per_second"], "ref_fps": ref_fps,
                    "frames": val.speed[name]["frames"]}
            self.cache.save_judged(key, data)
            out[key] = data
        return out

    def _verdict(self, data: dict, cached: bool) -> Judgement:
        cells = summarise(data["rows"], self.budgets)
        verdict = verdicts(cells, [REFERENCE, "candidate"])["candidate"]
        spend = {f"{c.stage}.{c.metric}.{c.mode}": spend_of(c) for c in cells if c.budget is not None}
        return Judgement(bool(verdict["passed"]), verdict["text"], spend, float(data["fps"]), float(data["ref_fps"]),
                         data["rows"], cached)
