"""The INT8 float fallback ranked by what each node does to the swap, not by a tensor budget.

1. Shortlist: the quantized nodes most blamed by the INT8 stage's own SQNR measure
   (:func:`ffkit.toolkit.int8.blame_ranking`).
2. For each shortlisted node, the INT8 file with that node kept in float is judged by
   ``ffkit validate`` with the rest of the set at FP32; the node's end-to-end error is how much
   of the budgets keeping it in float gives back, at the role's own stage metric (isolated) and
   at the set's output (chained, the identity included).
3. The ladder: INT8 with the 1, 2, 4, ... (and all shortlisted) end-to-end worst nodes kept in float.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .candidates import Candidate, build_candidate, int8_stage
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
               time_left: Callable[[], float] = lambda: 1.0) -> tuple[list[dict], list[Candidate]]:
    """The shortlisted nodes ranked by end-to-end error given back, worst first:
    ``([{"node", "blame_db", "error_kept_in_float", "gain"}], the single-node candidates)``."""
    from ..int8 import blame_ranking

    on_step(f"{role}: ranking INT8 nodes (SQNR shortlist)")
    blamed = blame_ranking(fp32.path, int8.path, calibration.samples[:2])[:shortlist]
    singles = []
    for i, (node, _) in enumerate(blamed):
        if time_left() <= 0 and singles:
            blamed = blamed[:i]   # the time limit: rank the nodes built so far
            break
        on_step(f"{role}: INT8 with {node} in float ({i + 1}/{len(blamed)})")
        singles.append(build_candidate(cache, fp32, "int8-float1", int8_stage(calibration, cache, (node,)),
                                       calibration))
    judged = judge([{role: c} for c in singles])
    base = role_error(int8_alone, role)
    ranking = [{"node": node, "blame_db": round(db, 3), "error_kept_in_float": round(role_error(j, role), 4),
                "gain": round(base - role_error(j, role), 4)}
               for (node, db), j in zip(blamed, judged)]
    order = sorted(range(len(ranking)), key=lambda i: (-ranking[i]["gain"], -ranking[i]["blame_db"]))
    return [ranking[i] for i in order], [singles[i] for i in order]


def ladder(role: str, fp32: Candidate, ranking: Sequence[dict], singles: Sequence[Candidate], calibration, cache,
           on_step: Callable[[str], None] = lambda message: None,
           time_left: Callable[[], float] = lambda: 1.0) -> list[Candidate]:
    """INT8 with the 1, 2, 4, ... worst nodes (by ``ranking``) kept in float."""
    if not ranking:
        return []
    out = [singles[0]]
    k = 2
    sizes = []
    while k < len(ranking):
        sizes.append(k)
        k *= 2
    sizes += [len(ranking)] if len(ranking) > 1 else []
    for k in sizes:
        if time_left() <= 0:
            break
        nodes = tuple(r["node"] for r in ranking[:k])
        on_step(f"{role}: INT8 with {k} nodes in float")
        out.append(build_candidate(cache, fp32, f"int8-float{k}", int8_stage(calibration, cache, nodes), calibration))
    return out
