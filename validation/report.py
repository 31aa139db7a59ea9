"""Human and machine reports of verification and builds: rich tables, JSON files, a PNG sheet.

- :func:`verify_table`: one row per output of a :class:`~ffkit.validation.parity.VerifyReport`.
- :func:`build_table`: one row per built variant (variant, size, max error, cosine/PSNR, pass).
- :func:`write_json` / :func:`read_json`: atomic JSON files (``report.json``).
- :func:`comparison_sheet`: for image outputs, rows of ``reference | variant | |error| heatmap``
  panels (uint8 BGR), written as ``report.png`` by :func:`write_png`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
from rich.table import Table


def _fmt(value: Any, kind: str = "g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.2f}" if kind == "db" else f"{value:.6f}" if kind == "cos" else f"{value:.3g}"


def _verdict(passed: bool) -> str:
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"


def verify_table(report) -> Table:
    """A rich table of a VerifyReport: output, rel L2, max abs, cosine, PSNR, criterion, pass."""
    table = Table(title=f"{report.candidate} vs {report.reference} ({report.recipe}, {report.kind})",
                  caption=f"inputs: {report.inputs}")
    for col in ("output", "rel L2", "max abs", "cosine", "PSNR dB", "criterion", "pass"):
        table.add_column(col, justify="right" if col not in ("output", "criterion") else "left")
    for o in report.outputs:
        f = o.figures
        table.add_row(o.name, _fmt(f.get("rel_l2")), _fmt(f.get("max_abs")), _fmt(f.get("cosine"), "cos"),
                      _fmt(f.get("psnr"), "db"), o.criterion, _verdict(o.passed))
    return table


def human_size(n: int) -> str:
    """Bytes as a short human string (``12.3 MB``, decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def build_table(recipe: str, variants: Sequence[Mapping[str, Any]]) -> Table:
    """A rich table of one build: variant, file, size, max error, cosine/PSNR, criterion, pass.

    Each variant is a ``report.json`` entry: ``{"variant", "file", "size_bytes", "max_abs",
    "cosine", "psnr", "criterion", "passed", "error"}`` (missing figures shown as ``-``).
    """
    table = Table(title=f"ffkit build {recipe}")
    for col in ("variant", "file", "size", "max abs error", "cosine", "PSNR dB", "criterion", "pass"):
        table.add_column(col)
    for v in variants:
        size = human_size(v["size_bytes"]) if v.get("size_bytes") else "-"
        if v.get("size_ratio") is not None and v.get("variant", "").split("-")[0] != "fp32":
            size += f" ({v['size_ratio'] * 100:.0f}%)"
        table.add_row(v["variant"], v.get("file") or "[red]not written[/]", size, _fmt(v.get("max_abs")),
                      _fmt(v.get("cosine"), "cos"), _fmt(v.get("psnr"), "db"),
                      v.get("criterion") or v.get("error", ""), _verdict(bool(v.get("passed"))))
    return table


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (infinities as strings)."""
    from ffkit.recipes.atomic import atomic_path

    def clean(v):
        if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
            return str(v)
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.floating, np.integer)):
            return clean(v.item())
        return v

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean(data), indent=1, sort_keys=False) + "\n")
    return path


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


PANEL = 192


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text[:30], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _panel(img_bgr: np.ndarray) -> np.ndarray:
    return cv2.resize(img_bgr, (PANEL, PANEL), interpolation=cv2.INTER_AREA if img_bgr.shape[0] > PANEL
                      else cv2.INTER_NEAREST)


def heatmap(candidate: np.ndarray, reference: np.ndarray, scale: float) -> np.ndarray:
    """``H x W x 3`` uint8 BGR (JET) of the mean absolute channel difference, ``scale`` = red."""
    diff = np.abs(candidate.astype(np.float32) - reference.astype(np.float32)).mean(axis=-1)
    level = np.clip(diff / max(scale, 1e-12) * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(level, cv2.COLORMAP_JET)


def comparison_row(title: str, reference: np.ndarray, variants: Iterable[tuple[str, np.ndarray]]) -> np.ndarray:
    """One sheet row: the reference image, then each variant and its error heatmap.

    Images are ``H x W x 3`` uint8 BGR. The heatmaps share one scale: the largest mean absolute
    difference among the variants (in pixel levels, at least 1), printed in the labels.
    """
    variants = list(variants)
    diffs = [np.abs(v.astype(np.float32) - reference.astype(np.float32)).mean(axis=-1).max() for _, v in variants]
    scale = max([1.0, *diffs])
    panels = [_label(_panel(reference), f"{title}: reference")]
    for (name, img), peak in zip(variants, diffs):
        panels.append(_label(_panel(img), name))
        panels.append(_label(_panel(heatmap(img, reference, scale)), f"|err| max {peak:.1f}/255 (red={scale:.0f})"))
    return np.concatenate(panels, axis=1)


def comparison_sheet(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of possibly different widths stacked vertically (right-padded with black)."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(padded, axis=0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 BGR image as PNG atomically."""
    from ffkit.recipes.atomic import atomic_path

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path
