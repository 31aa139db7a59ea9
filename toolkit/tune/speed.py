"""Each candidate timed by the bench harness (:func:`ffkit.toolkit.bench.harness.measure`: the
project's session factory, the recipe's sample inputs, warm-up then timed runs), in this
process, round-robin over every candidate of every role (interleaved: a burst of load on a
shared machine is spread over all of them), at batch 1 and at the batch the pipeline really
gives the role. Medians are cached by file sha256, providers, batch and CPU."""

from __future__ import annotations

import statistics
from typing import Callable, Mapping, Sequence

from ..bench.config import SessionConfig
from ..bench.harness import measure
from ..bench.machine import machine_info
from .cache import TuneCache, content_key
from .candidates import Candidate

__all__ = ["time_candidates", "rough_ms"]


def _fixed_batch(path) -> int | None:
    """The static batch of the file's first input, if it has one (other batches are skipped)."""
    from ffkit.recipes.onnx_file import read_model_info

    inputs = read_model_info(path).inputs
    first = inputs[0].shape[0] if inputs and inputs[0].shape else None
    return first if isinstance(first, int) and first > 0 else None


def time_candidates(candidates: Sequence[Candidate], session: SessionConfig, batches: Mapping[str, Sequence[int]],
                    cache: TuneCache, rounds: int = 2, max_seconds: float = 2.0,
                    on_step: Callable[[str], None] = lambda message: None) -> None:
    """Fill each candidate's ``latency_ms`` ({batch: median ms}); ``batches``: per role."""
    cpu = machine_info().get("cpu")
    keys = {id(c): content_key(cache.sha(c.path), session.as_dict(), list(batches[c.role]), cpu) for c in candidates}
    todo = []
    for c in candidates:
        hit = cache.load_value("speed", keys[id(c)])
        if hit is not None:
            c.latency_ms = {int(b): v for b, v in hit.items()}
        else:
            todo.append(c)
    times: dict[int, dict[int, list[float]]] = {id(c): {} for c in todo}
    for rnd in range(rounds):
        for i, c in enumerate(todo):
            on_step(f"timing {c.role} {c.label} (round {rnd + 1}/{rounds}, {i + 1}/{len(todo)})")
            spec = {"kind": "onnx", "path": str(c.path), "recipe": c.recipe, "batches": list(batches[c.role]),
                    "session": session.as_dict(), "warmup": 2, "repeat": 10, "max_seconds": max_seconds,
                    "min_runs": 3, "fixed_batch": _fixed_batch(c.path)}
            for row in measure(spec)["batches"]:
                if "times_s" in row:
                    times[id(c)].setdefault(row["batch"], []).extend(row["times_s"])
    for c in todo:
        c.latency_ms = {b: round(statistics.median(t) * 1e3, 3) for b, t in times[id(c)].items()}
        cache.save_value("speed", keys[id(c)], c.latency_ms)


def rough_ms(candidate: Candidate, session: SessionConfig) -> float:
    """A quick batch-1 latency of ``candidate`` (ms, median of 3 runs after one warm-up; not
    cached, not interleaved): enough to tell which roles matter to the frame time, never a
    figure that is reported."""
    spec = {"kind": "onnx", "path": str(candidate.path), "recipe": candidate.recipe, "batches": [1],
            "session": session.as_dict(), "warmup": 1, "repeat": 3, "max_seconds": 1.0, "min_runs": 1,
            "fixed_batch": _fixed_batch(candidate.path)}
    rows = [r for r in measure(spec)["batches"] if "times_s" in r]
    return statistics.median(rows[0]["times_s"]) * 1e3 if rows else 0.0
