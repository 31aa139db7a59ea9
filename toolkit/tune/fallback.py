"""The INT8 float fallback ranked by what each node does to the swap, not by a tensor budget.

1. Shortlist: the quantized nodes most blamed by the INT8 stage's own SQNR measure
   (:func:`ffkit.toolkit.int8.blame_ranking`).
2. For each shortlisted node, the INT8 file with that node kept in float is judged by
   ``ffkit validate`` with the rest of the set at FP32; the node's end-to-end error is how much
   of the budgets keeping it in float gives back, at the role's own stage metric (isolated) and
   at the set's output (chained, the identity included).
3. The ladder: INT8 with the 1, 2, 4, ... (and all shortlisted) end-to-end worst nodes kept in float.

The fallback starts from the role's best INT8 candidate (the calibration method whose error,
:func:`role_error`, is least): its method is kept along the ladder.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .candidates import Candidate, build_candidate, int8_method, int8_stage
from .judge import Judgement

__all__ = ["role_error", "rank_nodes", "ladder"]

#: The stages whose figures are the set's output.
OUTPUT_STAGES = ("output", "identity")


def role_error(judgement: Judgement, role: str) -> float:
    """The error a role's candidate causes: the larger of the worst budget share at its own
    stage (isolated) and at the set's output (chained)."""
    own = [v for k, v in judgement.spend.items() if k.startswith(f"{role}.") and k.endswith(".isolated")]
    out = [v for k, v in judgement.spend.items() if k.split(".")[0] in OUTPUT_STAGES and k.endswith(".chained")]
    return max([0.0, *own, *out])


def rank_nodes(role: str, fp32: Candidate, int8: Candidate, int8_alone: Judgement, calibration, cache,
               judge: Callable[[list[dict]], list[Judgement]], shortlist: int = 4,
               on_step: Callable[[str], None] = lambda message: None,
               time_left: Callable[[], float] = lambda: 1.0) -> tuple[list[dict], list[Candidate], list[str]]:
    """The shortlisted nodes ranked by end-to-end error given back, worst first:
    ``([{"node", "blame_db", "error_kept_in_float", "gain"}], the single-node candidates, the
    other quantized nodes most blamed first)``."""
    from ..int8 import blame_ranking

    on_step(f"{role}: ranking INT8 nodes (SQNR shortlist)")
    everything = blame_ranking(fp32.path, int8.path, calibration.samples[:2])
    blamed, rest = everything[:shortlist], [node for node, _ in everything[shortlist:]]
    singles = []
    for i, (node, _) in enumerate(blamed):
        if time_left() <= 0 and singles:
            rest = [n for n, _ in blamed[i:]] + rest
            blamed = blamed[:i]   # the time limit: rank the nodes built so far
            break
        on_step(f"{role}: INT8 with {node} in float ({i + 1}/{len(blamed)})")
        singles.append(build_candidate(cache, fp32, f"{int8.label}-float1",
                                       int8_stage(calibration, cache, (node,), int8_method(int8)), calibration))
    judged = judge([{role: c} for c in singles])
    base = role_error(int8_alone, role)
    ranking = [{"node": node, "blame_db": round(db, 3), "error_kept_in_float": round(role_error(j, role), 4),
                "gain": round(base - role_error(j, role), 4)}
               for (node, db), j in zip(blamed, judged)]
    order = sorted(range(len(ranking)), key=lambda i: (-ranking[i]["gain"], -ranking[i]["blame_db"]))
    return [ranking[i] for i in order], [singles[i] for i in order], rest


#: The float fallback ladder stops at this many nodes kept in float.
MAX_FLOAT = 16


def ladder(role: str, fp32: Candidate, int8: Candidate, ranking: Sequence[dict], singles: Sequence[Candidate],
           rest: Sequence[str], calibration, cache, judge: Callable[[list[dict]], list[Judgement]],
           on_step: Callable[[str], None] = lambda message: None,
           time_left: Callable[[], float] = lambda: 1.0, max_float: int = MAX_FLOAT) -> list[Candidate]:
    """``int8`` rebuilt with the 1, 2, 4, ... worst nodes kept in float: the shortlist in
    ``ranking``'s order, then, while every step still fails, the ``rest`` (blame order) up to
    ``max_float`` nodes. Each step is judged alone as it is built; the ladder stops at the first
    that passes (or at the time limit)."""
    if not ranking:
        return []
    order = [r["node"] for r in ranking] + list(rest)
    top = min(max_float, len(order))
    sizes = sorted({*(2 ** i for i in range(1, 8) if 2 ** i < top), len(ranking), top} - {1})
    out = [singles[0]]
    if any(c.passed for c in singles):
        return out
    for k in sizes:
        if time_left() <= 0:
            break
        on_step(f"{role}: INT8 with {k} nodes in float")
        step = build_candidate(cache, fp32, f"{int8.label}-float{k}",
                               int8_stage(calibration, cache, tuple(order[:k]), int8_method(int8)), calibration)
        j = judge([{role: step}])[0]
        step.passed, step.reason, step.spend = j.passed, j.text, j.spend
        out.append(step)
        if step.passed:
            break
    return out
