"""The search for the fastest set within budget, on plain numbers (no model is run here).

Each role has options (its candidates that pass alone): the seconds per frame it adds (latency
x calls per frame) and the share of each budget it spends alone. A set's frame time is a fixed
base plus its options' seconds; its spend is estimated per budget as the sum of its options'
(errors add up along the chain), and ``check(choice)`` is the exact verdict (validate's, on the
set itself). :func:`exhaustive` checks every set within the estimate, fastest first;
:func:`greedy` takes the move with the most speed gained per accuracy spent until none fits,
then checks, undoing the weakest move while the check fails. :func:`search` picks exhaustive
when the sets are few.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

__all__ = ["Option", "Outcome", "estimate", "frame_seconds", "ranked_sets", "exhaustive", "greedy", "search"]


@dataclass(frozen=True)
class Option:
    """One candidate of a role as the search sees it (``key``: what ``check`` is given back)."""

    key: str
    seconds: float
    spend: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Outcome:
    """The chosen option per role, how it was found, and every exact check made."""

    choice: dict
    method: str
    checks: list = field(default_factory=list)


def estimate(choice: Mapping[str, Option]) -> float:
    """The worst budget share of a set, its options' spends summed per budget."""
    total: dict[str, float] = {}
    for option in choice.values():
        for key, value in option.spend.items():
            total[key] = total.get(key, 0.0) + value
    return max(total.values(), default=0.0)


def frame_seconds(base: float, choice: Mapping[str, Option]) -> float:
    return base + sum(o.seconds for o in choice.values())


def _checker(check: Callable[[dict], bool], log: list) -> Callable[[dict], bool]:
    def run(choice: dict) -> bool:
        keys = {r: o.key for r, o in choice.items()}
        for seen, ok in log:
            if seen == keys:
                return ok
        ok = bool(check(choice))
        log.append((keys, ok))
        return ok
    return run


def ranked_sets(options: Mapping[str, Sequence[Option]], base: float) -> list[dict]:
    """Every set within the estimate, fastest first (what :func:`exhaustive` checks, in order)."""
    roles = list(options)
    sets = [dict(zip(roles, combo)) for combo in itertools.product(*(options[r] for r in roles))]
    sets = [s for s in sets if estimate(s) <= 1.0]
    sets.sort(key=lambda s: (frame_seconds(base, s), estimate(s)))
    return sets


def exhaustive(options: Mapping[str, Sequence[Option]], base: float, check: Callable[[dict], bool],
               max_checks: int = 8) -> Outcome:
    """Every set within the estimate, fastest first, checked until one passes (the first
    option of each role, the reference, is the answer when none does)."""
    log: list = []
    run = _checker(check, log)
    reference = {r: opts[0] for r, opts in options.items()}
    for s in ranked_sets(options, base)[:max_checks]:
        if s == reference or run(s):
            return Outcome(s, "exhaustive", log)
    return Outcome(reference, "exhaustive", log)


def _best_move(options, current, forbidden):
    best, now = None, estimate(current)
    for role, opts in options.items():
        for o in opts:
            if (role, o.key) in forbidden or o.seconds >= current[role].seconds:
                continue
            trial = {**current, role: o}
            spent = estimate(trial)
            if spent > 1.0:
                continue
            gain = current[role].seconds - o.seconds
            ratio = gain / max(spent - now, 1e-9)
            if best is None or (ratio, gain) > (best[0], best[1]):
                best = (ratio, gain, role, o)
    return best


def greedy(options: Mapping[str, Sequence[Option]], base: float, check: Callable[[dict], bool],
           max_checks: int = 8) -> Outcome:
    """Greedy by speed gained per budget spent (see the module docstring), then checked exactly;
    a failing check undoes the last (weakest) move, forbids it, and the greedy goes on."""
    log: list = []
    run = _checker(check, log)
    current = {r: opts[0] for r, opts in options.items()}
    reference = dict(current)
    moves: list[tuple[str, Option]] = []
    forbidden: set = set()
    while True:
        while (move := _best_move(options, current, forbidden)) is not None:
            _, _, role, option = move
            moves.append((role, current[role]))
            current = {**current, role: option}
        if current == reference or run(current):
            return Outcome(current, "greedy", log)
        if len(log) >= max_checks or not moves:
            return Outcome(reference, "greedy", log)
        role, previous = moves.pop()
        forbidden.add((role, current[role].key))
        current = {**current, role: previous}


def search(options: Mapping[str, Sequence[Option]], base: float, check: Callable[[dict], bool],
           exhaustive_limit: int = 64, method: str = "auto", max_checks: int = 8) -> Outcome:
    """:func:`exhaustive` when the sets number at most ``exhaustive_limit`` (or ``method``
    says so), else :func:`greedy`."""
    count = math.prod(len(o) for o in options.values())
    if method == "exhaustive" or (method == "auto" and count <= exhaustive_limit):
        return exhaustive(options, base, check, max_checks)
    return greedy(options, base, check, max_checks)
