"""``ffkit tune``'s run: candidates per role, each judged alone (the rest at FP32), the float
fallback ladder where INT8 fails, timings, the search, and the outputs (:mod:`.output`)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ffkit.recipes.errors import FfkitError
from ffkit.validation.validate.budgets import load_budgets
from ffkit.validation.validate.engine import expand_targets
from ffkit.validation.validate.sets import ModelSet

from .cache import TuneCache
from .candidates import DEFAULT_KINDS, Candidate, plain_candidates
from .fallback import ladder, rank_nodes
from .judge import REFERENCE, Judge
from .search import Option, ranked_sets, search
from .speed import time_candidates

__all__ = ["TuneRequest", "TuneResult", "run_tune"]

#: Model runs per frame of the roles that run once per frame; the others run once per face.
PER_FRAME = {"detector": 1.0, "frame_enhancer": 1.0}


@dataclass
class TuneRequest:
    """What to tune: the folder, calibration images, judging targets and source, the swap
    option values (``settings``), the budget file, the time limit, which candidates and roles."""

    models: Path
    calib: Path
    targets: Sequence[Path]
    source: Path
    settings: object
    budget: Optional[Path] = None
    time_limit_min: float = 15.0
    kinds: Sequence[str] = DEFAULT_KINDS
    roles: Optional[Sequence[str]] = None
    every: int = 1
    frames: int = 0
    calib_samples: int = 16
    shortlist: int = 4
    method: str = "auto"
    rounds: int = 2


@dataclass
class TuneResult:
    chosen: dict
    candidates: dict
    final: object
    reference: ModelSet
    budgets: dict
    method: str
    checks: list
    ranking: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    cache: Optional[TuneCache] = None
    uniform: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)


def _reference(req: TuneRequest) -> ModelSet:
    settings = dataclasses.replace(req.settings, values={**req.settings.values, "variant": "fp32"})
    return ModelSet(REFERENCE, settings.pick(req.models), Path(req.models))


def _judge_alone(judge: Judge, cands: Sequence[Candidate]) -> None:
    todo = [c for c in cands if c.passed is None]
    for c, j in zip(todo, judge.judge([{c.role: c} for c in todo])):
        c.passed, c.reason, c.spend = j.passed, j.text, j.spend


def run_tune(req: TuneRequest, on_step: Callable[[str], None] = lambda message: None) -> TuneResult:
    """Tune ``req.models`` (see the module docstring); writes nothing but the cache (the caller
    places the files and writes the reports, :mod:`.output`)."""
    start = time.monotonic()
    deadline = start + req.time_limit_min * 60

    def time_left() -> float:
        return deadline - time.monotonic()

    budgets = load_budgets(req.budget)
    targets = expand_targets(req.targets)
    models = Path(req.models)
    cache = TuneCache.of(models)
    reference = _reference(req)
    judge = Judge(req.settings, reference, Path(req.source), targets, budgets, cache, req.every, req.frames,
                  on_step=on_step)
    roles = [(role, ref) for role, ref in reference.selection.used() if req.roles is None or role in req.roles]
    if req.roles is not None and not roles:
        raise FfkitError(f"--roles {','.join(req.roles)}: none of these roles is in the set of {models}")
    notes: list[str] = []
    cands: dict[str, list[Candidate]] = {}
    calibrations, origins = _calibrations(req, reference, [role for role, _ in roles], notes, on_step) \
        if {"int8", "fallback"} & set(req.kinds) else ({}, {})
    for role, ref in roles:
        base = Candidate(role, "fp32", ref.path, ref.recipe.name, passed=True, reason="reference")
        cands[role], more = plain_candidates(cache, base, req.kinds, calibrations.get(role), on_step, time_left)
        notes += more
    _judge_alone(judge, [c for cs in cands.values() for c in cs[1:]])
    first = judge.judge([{}])[0]
    faces = max(1.0, _count_faces(first.rows))
    frames = max(1, len({(r["target"], r["frame"]) for r in first.rows if r["frame"] >= 0}))
    calls = {role: PER_FRAME.get(role, 1.0 / frames if role == "embedder" else faces) for role in cands}
    worth = set(cands) if req.roles else _worth_a_fallback(cands, calls, first.ref_fps, _session(req.settings), notes)
    ranking = _fallbacks(req, {r: cs for r, cs in cands.items() if r in worth}, calibrations, cache, judge, notes,
                         on_step, time_left)
    passing = {role: [c for c in cs if c.passed] for role, cs in cands.items()}
    batches = {role: (1,) if role in PER_FRAME or faces < 1.5 else (1, int(round(faces))) for role in passing}
    time_candidates([c for cs in passing.values() for c in cs], _session(req.settings), batches, cache,
                    rounds=req.rounds, on_step=on_step)
    options = {role: [Option(_key(c), _latency(c) / 1e3 * calls[role], c.spend) for c in cs]
               for role, cs in passing.items()}
    by_key = {_key(c): c for cs in passing.values() for c in cs}
    ref_seconds = 1.0 / first.ref_fps if first.ref_fps else 0.0
    options = _worth_their_cost(options, ref_seconds, by_key, notes)
    base = max(0.0, ref_seconds - sum(opts[0].seconds for opts in options.values()))

    def check(choice) -> bool:
        on_step("checking " + ", ".join(f"{r}={by_key[o.key].label}" for r, o in choice.items()))
        return judge.judge([{r: by_key[o.key] for r, o in choice.items()}])[0].passed

    few = math.prod(len(o) for o in options.values()) <= 64
    if req.method == "exhaustive" or (req.method == "auto" and few):   # its first checks, in one interleaved run
        judge.judge([{r: by_key[o.key] for r, o in s.items()} for s in ranked_sets(options, base)[:3]])
    outcome = search(options, base, check, method=req.method)
    chosen = {role: by_key[o.key] for role, o in outcome.choice.items()}
    for role, ref in reference.selection.used():   # roles not tuned keep their FP32 file, in set.json too
        chosen.setdefault(role, Candidate(role, "fp32", ref.path, ref.recipe.name, passed=True, reason="not tuned"))
    chosen = {role: chosen[role] for role, _ in reference.selection.used()}
    final = judge.judge([chosen])[0]
    if all(c.label == "fp32" for c in chosen.values()):
        final.fps = final.ref_fps   # the reference's own files: one speed, not two noisy ones
    checks = [{"set": {r: by_key[k].label for r, k in keys.items()}, "passed": ok} for keys, ok in outcome.checks]
    result = TuneResult(chosen, cands, final, reference, budgets, outcome.method, checks, ranking, notes,
                        time.monotonic() - start, cache)
    result.uniform = _uniform_sets(judge, cands)
    result.calibration = {role: {**c.summary(), "from": origins[role]} for role, c in calibrations.items()}
    result.seconds = time.monotonic() - start
    return result


def _uniform_sets(judge: Judge, cands: dict) -> dict:
    """Every tuned role at one precision (all optimized FP32, all FP16, all INT8 of each
    calibration method), judged in one run, to show what the tuned set is compared with:
    ``{label: {"passed", "frames_per_second", "fp32_frames_per_second", "verdict"}}``."""
    from .candidates import INT8_METHODS

    sets = {}
    for label in ("fp32-optimized", "fp16", *INT8_METHODS):
        chosen = {role: next((c for c in cs if c.label == label), None) for role, cs in cands.items()}
        if chosen and all(chosen.values()):
            sets[label] = chosen
    judged = judge.judge(list(sets.values()))
    return {label: {"passed": j.passed, "frames_per_second": j.fps, "fp32_frames_per_second": j.ref_fps,
                    "verdict": j.text} for label, j in zip(sets, judged)}


def _count_faces(rows) -> float:
    frames = {(r["target"], r["frame"]) for r in rows if r["frame"] >= 0}
    faces = [r for r in rows if r["stage"] == "swapper" and r["metric"] == "psnr" and r["mode"] == "isolated"]
    return len(faces) / max(1, len(frames))


def _key(c: Candidate) -> str:
    return f"{c.role}:{c.path.name}"


def _latency(c: Candidate) -> float:
    return c.latency_ms.get(max(c.latency_ms), 0.0) / max(c.latency_ms) if c.latency_ms else 0.0


def _session(settings):
    from ffkit.runtime.sessions import resolve_providers

    from ..bench.config import SessionConfig

    return SessionConfig(providers=tuple(resolve_providers(settings.values["providers"]).providers),
                         provider_options=tuple(settings.provider_options))


def _calibrations(req: TuneRequest, reference: ModelSet, roles: list[str], notes: list[str],
                  on_step) -> tuple[dict, dict]:
    """Per role, the INT8 calibration set: the inputs the FP32 pipeline gave the role's model on
    ``req.calib`` (:func:`~ffkit.validation.pipeline_calibration.record_role_inputs`), or, for a
    role that got none (no face found), the calibration folder read as ``ffkit quantize`` reads it.
    Returns ``(sets, where each came from)``, both by role."""
    from ffkit.runtime.media import read_image
    from ffkit.validation.calibration import load_calibration
    from ffkit.validation.pipeline_calibration import record_role_inputs

    recorded = record_role_inputs(reference.selection, req.settings.options, read_image(req.source), Path(req.calib),
                                  source_name=str(req.source), roles=roles, limit=req.calib_samples, on_step=on_step)
    origins = {role: c.files[0] for role, c in recorded.items()}
    for role in roles:
        if role not in recorded:
            ref = getattr(reference.selection, role)
            notes.append(f"{role}: the pipeline gave it no input on {req.calib} (no face found); calibrated on "
                         "the images as ffkit quantize reads them")
            recorded[role] = load_calibration(ref.recipe, req.calib, samples=req.calib_samples)
            origins[role] = f"the images of {req.calib}"
    return recorded, origins


def _best_int8(cs: Sequence[Candidate], judge: Judge, role: str):
    """The role's INT8 candidate (one per calibration method) whose error alone is least, with
    that judgement; ``(None, None)`` when there is none or one passes already."""
    from .candidates import INT8_METHODS
    from .fallback import role_error

    int8s = [c for c in cs if c.label in INT8_METHODS]
    if not int8s or any(c.passed for c in int8s):
        return None, None
    judged = judge.judge([{role: c} for c in int8s])
    best = min(range(len(int8s)), key=lambda i: role_error(judged[i], role))
    return int8s[best], judged[best]


#: A role whose FP32 model takes less than this share of the FP32 set's frame time gets no float
#: fallback ladder: even a perfect INT8 of it could not make the set faster by more than that
#: (unless ``--roles`` names the roles to tune).
FALLBACK_MIN_SHARE = 0.05


#: A candidate that passes but saves less than this share of the FP32 set's frame time is not
#: chosen: it would spend accuracy for a gain below the timing noise.
MIN_GAIN_SHARE = 0.01


def _worth_their_cost(options: dict, ref_seconds: float, by_key: dict, notes: list[str]) -> dict:
    """``options`` without the candidates saving less than :data:`MIN_GAIN_SHARE` of the frame
    time over their role's FP32 (the first option); a note for each role that loses one."""
    if not ref_seconds:
        return options
    kept = {}
    for role, opts in options.items():
        floor = MIN_GAIN_SHARE * ref_seconds
        kept[role] = [o for i, o in enumerate(opts) if i == 0 or opts[0].seconds - o.seconds >= floor]
        dropped = [by_key[o.key].label for o in opts if o not in kept[role]]
        if dropped:
            notes.append(f"{role}: {', '.join(dropped)} pass but would save under {MIN_GAIN_SHARE:.0%} of the frame "
                         "time; FP32 kept")
    return kept


def _worth_a_fallback(cands: dict, calls: dict, ref_fps: float, session, notes: list[str]) -> set[str]:
    """The roles whose FP32 model is at least :data:`FALLBACK_MIN_SHARE` of the frame time (a
    quick timing, :func:`~.speed.rough_ms`); a note for each role left out."""
    from .speed import rough_ms

    if not ref_fps:
        return set(cands)
    frame_ms = 1e3 / ref_fps
    worth = set()
    for role, cs in cands.items():
        share = rough_ms(cs[0], session) * calls[role] / frame_ms
        if share >= FALLBACK_MIN_SHARE:
            worth.add(role)
        elif any(c.label.startswith("int8") and not c.passed for c in cs):
            notes.append(f"{role}: no float fallback tried: its FP32 model is about {share:.1%} of the frame time, "
                         f"so INT8 could save at most that")
    return worth


def _fallbacks(req, cands, calibrations, cache, judge, notes, on_step, time_left) -> dict:
    """The ladder of each role whose INT8 candidates all fail alone (added to ``cands``), from the
    best of them: the ranking per role."""
    ranking = {}
    if "fallback" not in req.kinds:
        return ranking
    for role, cs in cands.items():
        int8, alone = _best_int8(cs, judge, role)
        if int8 is None:
            continue
        if time_left() <= 0:
            notes.append(f"{role}: INT8 fails alone; no float fallback tried, the time limit was reached")
            continue
        ranked, singles, rest = rank_nodes(role, cs[0], int8, alone, calibrations[role], cache, judge.judge,
                                           req.shortlist, on_step, time_left)
        ranking[role] = ranked
        steps = ladder(role, cs[0], int8, ranked, singles, rest, calibrations[role], cache, judge.judge, on_step,
                       time_left)
        for c in steps:
            if all(c.path != o.path for o in cs):
                cs.append(c)
        _judge_alone(judge, cs)
    return ranking
