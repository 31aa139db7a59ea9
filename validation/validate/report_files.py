"""``ffkit validate``'s files: the terminal table, ``report.json``, the contact sheets
(``frames/*.png``) and ``report.png`` (the summary as a picture). ``report.html`` is
:mod:`.report_html`. Images are uint8 BGR, written atomically."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
from rich import box
from rich.table import Table

from ..report import write_json, write_png
from .budgets import STAGES, budget_rows
from .summary import Cell

__all__ = ["stage_rows", "terminal_table", "speed_table", "write_report_json", "write_sheets", "write_summary_png",
           "fmt", "safe_name"]

ENLARGED = 192
AMPLIFY = 8.0


def fmt(v) -> str:
    """A figure as the reports print it (``inf``, ``-`` for nothing measured, 4 significant digits)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def safe_name(text: str) -> str:
    """``text`` as a file name part (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def stage_rows(cells: list[Cell], set_names: list[str]) -> list[dict]:
    """One row per set and stage: ``{set, stage, isolated, chained, other, budgets, passed}``,
    each mode's text listing its metrics' worst values (a failing one marked ``FAIL``)."""
    rows = []
    for name in set_names:
        for stage in STAGES:
            mine = [c for c in cells if c.set == name and c.stage == stage]
            if not mine:
                continue
            text = {m: "; ".join(f"{c.metric} {fmt(c.worst)}{'' if c.passed else ' FAIL'}"
                                 for c in mine if c.mode == m) for m in ("isolated", "chained")}
            other = "; ".join(f"{c.metric} {fmt(c.worst)}" for c in mine if c.mode not in ("isolated", "chained"))
            budgets = sorted({c.budget.text() for c in mine if c.budget is not None})
            rows.append({"set": name, "stage": stage, "isolated": text["isolated"], "chained": text["chained"],
                         "other": other, "budgets": ", ".join(budgets), "passed": all(c.passed for c in mine)})
    return rows


def terminal_table(rows: list[dict], verdicts: Mapping[str, dict]) -> Table:
    """The table printed at the end (ASCII borders, folded cells: readable in a log)."""
    table = Table(title="ffkit validate: worst over every frame and face", box=box.ASCII, show_lines=False)
    for col in ("set", "stage", "isolated (this model)", "chained (whole set)", "reference / info", "budget", "ok"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["set"], r["stage"], r["isolated"] or "-", r["chained"] or "-", r["other"] or "",
                      r["budgets"], "pass" if r["passed"] else "FAIL")
    table.caption = " | ".join(f"{name}: {v['text']}" for name, v in verdicts.items())
    return table


def speed_table(speed: Mapping[str, dict], reference: str, cpu: str) -> Table:
    """Frames/s of each set (interleaved in one run) and its ratio to the reference."""
    table = Table(title=f"speed (same run, sets interleaved frame by frame; {cpu})", box=box.ASCII)
    for col in ("set", "frames", "seconds", "frames/s", "x reference"):
        table.add_column(col)
    ref = speed[reference]["frames_per_second"]
    for name, s in speed.items():
        table.add_row(name, str(s["frames"]), f"{s['seconds']:.2f}", fmt(s["frames_per_second"]),
                      f"{s['frames_per_second'] / ref:.2f}" if ref else "-")
    return table


def write_report_json(path: Path, data: dict) -> Path:
    """``report.json`` (infinities and NaN as strings)."""
    return write_json(path, data)


def _crop(img: np.ndarray, box: list[float], pad: float = 0.25) -> np.ndarray:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
    a, b = max(int(x0 - dx), 0), max(int(y0 - dy), 0)
    c, d = min(int(math.ceil(x1 + dx)), w), min(int(math.ceil(y1 + dy)), h)
    if c <= a or d <= b:
        return np.zeros((ENLARGED, ENLARGED, 3), np.uint8)
    return cv2.resize(img[b:d, a:c], (ENLARGED, ENLARGED), interpolation=cv2.INTER_NEAREST)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b| * AMPLIFY``, clipped to 255 (uint8 BGR)."""
    return np.clip(np.abs(a.astype(np.float32) - b.astype(np.float32)) * AMPLIFY, 0, 255).astype(np.uint8)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((20, img.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def _hstack(images: list[np.ndarray]) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    return np.hstack([np.pad(i, ((0, h - i.shape[0]), (0, 4), (0, 0)), constant_values=255) for i in images])


def contact_sheet(sample, reference: str, candidate: str) -> np.ndarray:
    """``reference | candidate | |difference| x8`` of one sampled frame, and under it each of the
    reference's swapped faces enlarged to 192 px the same three ways (uint8 BGR)."""
    ref, cand = sample.outputs[reference], sample.outputs[candidate]
    if ref.shape != cand.shape:
        cand = cv2.resize(cand, (ref.shape[1], ref.shape[0]))
    scale = 1.0 if ref.shape[:2] == sample.image.shape[:2] else ref.shape[0] / sample.image.shape[0]
    top = _hstack([_label(ref, reference), _label(cand, candidate), _label(_diff(cand, ref), f"|diff| x{AMPLIFY:g}")])
    rows = [top]
    for box in sample.boxes:
        b = [v * scale for v in box]
        faces = [_crop(ref, b), _crop(cand, b)]
        rows.append(_hstack([_label(faces[0], "face: reference"), _label(faces[1], "face: candidate"),
                             _label(_diff(faces[1], faces[0]), f"face |diff| x{AMPLIFY:g}")]))
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


def write_sheets(folder: Path, samples, set_names: list[str]) -> list[dict]:
    """One contact sheet per sampled frame and candidate set in ``folder/frames``; their entries
    ``{set, target, frame, file}`` (``file`` relative to ``folder``)."""
    written = []
    for sample in samples:
        for name in set_names[1:]:
            rel = f"frames/{safe_name(sample.target)}_{sample.frame:05d}_{safe_name(name)}.png"
            (folder / "frames").mkdir(parents=True, exist_ok=True)
            write_png(folder / rel, contact_sheet(sample, set_names[0], name))
            written.append({"set": name, "target": sample.target, "frame": sample.frame, "file": rel})
    return written


def write_summary_png(path: Path, rows: list[dict], verdicts: Mapping[str, dict], speed: Mapping[str, dict],
                      cpu: str) -> Path:
    """``report.png``: the verdicts, then one line per set and stage (green pass, red FAIL), then speed."""
    lines: list[tuple[str, tuple]] = [("ffkit validate", (255, 255, 255))]
    for name, v in verdicts.items():
        lines.append((f"{name}: {v['text']}", (120, 220, 120) if v["passed"] else (90, 90, 255)))
    lines.append(("", (0, 0, 0)))
    for r in rows:
        text = f"{r['set'][:22]:<22} {r['stage']:<14} iso: {r['isolated'][:60]:<60} chained: {r['chained'][:60]}"
        lines.append((text, (120, 220, 120) if r["passed"] else (90, 90, 255)))
    lines.append(("", (0, 0, 0)))
    ref = next(iter(speed.values()))["frames_per_second"]
    for name, s in speed.items():
        lines.append((f"speed {name}: {fmt(s['frames_per_second'])} frames/s, x{s['frames_per_second'] / ref:.2f} "
                      f"of the reference ({cpu})", (230, 230, 230)))
    width = 12 + 8 * max(len(t) for t, _ in lines)
    image = np.full((16 + 20 * len(lines), min(width, 2400), 3), 24, np.uint8)
    for k, (text, color) in enumerate(lines):
        cv2.putText(image, text, (8, 24 + 20 * k), cv2.FONT_HERSHEY_PLAIN, 1.0, color, 1, cv2.LINE_AA)
    return write_png(path, image)
