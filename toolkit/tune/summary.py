"""What a tune run prints: the candidate table and the outcome's lines (``ffkit tune`` and the
demo's last step print the same)."""

from __future__ import annotations

from rich import box
from rich.table import Table

__all__ = ["candidate_table", "outcome_lines"]


def candidate_table(result, cpu: str) -> Table:
    """One row per candidate: role, label, latency, verdict alone (the rest at FP32), chosen."""
    table = Table(title=f"ffkit tune: candidates ({cpu})", box=box.ASCII)
    for col in ("role", "candidate", "ms/run", "x FP32", "alone (rest FP32)", "budget used", "chosen"):
        table.add_column(col, overflow="fold")
    for role, cs in result.candidates.items():
        ref_ms = cs[0].latency_ms.get(1)
        for c in cs:
            ms = c.latency_ms.get(1)
            speed = f"{ref_ms / ms:.2f}" if ms and ref_ms else "-"
            table.add_row(role, c.label + (f" ({len(c.excluded)} float)" if c.excluded else ""),
                          f"{ms:.2f}" if ms else "-", speed, "reference" if c is cs[0] else c.reason,
                          f"{max(c.spend.values(), default=0):.2f}", "yes" if result.chosen.get(role) is c else "")
    return table


def outcome_lines(result, cpu: str) -> list[str]:
    """The tuned set, its frames/s against FP32's (same run) and validate's verdict; then each
    single-precision set (every tuned role at one precision, its own run) with its verdict."""
    f = result.final
    lines = [f"tuned set: {', '.join(f'{r}={c.label}' for r, c in result.chosen.items())} ({result.method} search); "
             f"{f.fps:.2f} frames/s vs FP32 {f.ref_fps:.2f} = {f.fps / f.ref_fps:.2f}x (same run, {cpu}); "
             f"validate: {f.text}"]
    for label, u in result.uniform.items():
        ratio = u["frames_per_second"] / u["fp32_frames_per_second"] if u["fp32_frames_per_second"] else float("nan")
        lines.append(f"every tuned role {label}: {u['frames_per_second']:.2f} frames/s ({ratio:.2f}x FP32, its own "
                     f"run); {u['verdict']}")
    return lines
