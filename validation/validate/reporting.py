"""A :class:`~.engine.Validation` turned into its verdicts and files: ``report.json``,
``report.html``, ``report.png`` and ``frames/*.png`` in the report folder (and ``--json FILE``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .budgets import Budget, budget_rows
from .engine import Validation
from .report_files import stage_rows, write_report_json, write_sheets, write_summary_png
from .report_html import write_html
from .summary import summarise, verdicts

__all__ = ["Outcome", "write_reports"]


@dataclass
class Outcome:
    """The verdicts (``passed``: every set passes), the rows of the table and the report's data."""

    passed: bool
    verdicts: dict
    stage_rows: list[dict]
    report: dict
    folder: Path


def write_reports(val: Validation, budgets: Mapping[str, Budget], folder: Path, machine: dict, *,
                  options: dict, json_out: Optional[Path] = None) -> Outcome:
    """Judge ``val`` against ``budgets`` and write the report folder (made if missing).

    ``machine``: the CPU and its flags (``cpu``, ``isa``, ...), recorded as given; ``options``:
    the swap option values the sets ran with."""
    names = [s.name for s in val.sets]
    cells = summarise(val.rows, budgets)
    verdict = verdicts(cells, names)
    rows = stage_rows(cells, names)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sheets = write_sheets(folder, val.samples, names)
    report = {
        "passed": all(v["passed"] for v in verdict.values()),
        "verdicts": verdict,
        "sets": [{"name": s.name, "folder": str(s.folder), "fallbacks": s.fallbacks, "notes": s.selection.notes,
                  "files": s.files()} for s in val.sets],
        "targets": val.targets,
        "machine": machine,
        "options": options,
        "budgets": budget_rows(budgets),
        "summary": [c.as_dict() for c in cells],
        "stage_rows": rows,
        "speed": val.speed,
        "memory": val.memory,
        "timing": val.timing,
        "sheets": sheets,
        "notes": val.notes,
        "rows": val.rows,
    }
    write_report_json(folder / "report.json", report)
    if json_out is not None:
        write_report_json(json_out, report)
    write_html(folder / "report.html", report, rows, val.rows, sheets)
    write_summary_png(folder / "report.png", rows, verdict, val.speed, str(machine.get("cpu")))
    return Outcome(report["passed"], verdict, rows, report, folder)
