"""``report.html``: one self-contained page (no script, no stylesheet or font from the network):
the verdict, one table row per set and stage (``<tr data-set=... data-stage=...>``), the speed,
the key metrics over the frames as inline SVG plots, the contact sheets (PNG files beside the
page, referenced relatively: ``frames/...``), the budgets with their sources and the files."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Mapping

from ffkit.recipes.atomic import atomic_path

from .report_files import fmt

__all__ = ["write_html", "PLOTS"]

#: The figures plotted over the frames: (stage, mode, metric, axis label).
PLOTS = (("swapper", "isolated", "psnr", "swapper PSNR isolated (dB)"),
         ("output", "chained", "psnr", "output PSNR in the paste region (dB)"),
         ("identity", "chained", "drop", "identity drop, chained"),
         ("detector", "isolated", "box_iou", "detector box IoU"))
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
CAP = 100.0   # an infinite PSNR is drawn at the top (identical pixels)

CSS = ("body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}"
       "td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px;vertical-align:top}th{background:#eee}"
       ".pass{background:#e6f4e6}.fail{background:#fbe3e3}.verdict{font-size:18px;padding:6px;margin:4px 0}"
       "img{max-width:100%;border:1px solid #ccc}code{font-size:12px}")


def _series(rows: list[dict], stage: str, mode: str, metric: str) -> dict[str, list[float]]:
    """Per set, the worst value of each frame (over its faces), in frame order."""
    out: dict[str, dict] = {}
    worse = min if metric in ("psnr", "ssim", "cosine", "box_iou") else max
    for r in rows:
        if (r["stage"], r["mode"], r["metric"]) != (stage, mode, metric) or r["target"] == "source":
            continue
        key = (r["target"], r["frame"])
        slot = out.setdefault(r["set"], {})
        v = float(r["value"])
        slot[key] = v if key not in slot else worse(slot[key], v)
    return {name: list(values.values()) for name, values in out.items()}


def svg_plot(title: str, series: Mapping[str, list[float]], width: int = 640, height: int = 200) -> str:
    """An inline SVG line plot of ``series`` (one polyline per set; +inf drawn at :data:`CAP`)."""
    values = [min(v, CAP) for s in series.values() for v in s if not math.isnan(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    n = max(len(s) for s in series.values())
    x = lambda i: 40 + (width - 50) * (i / max(n - 1, 1))   # noqa: E731
    y = lambda v: height - 20 - (height - 40) * ((min(v, CAP) - lo) / (hi - lo))   # noqa: E731
    parts = [f'<svg width="{width}" height="{height}" role="img">',
             f'<text x="40" y="14" font-size="12">{escape(title)}</text>',
             f'<text x="2" y="{y(hi) + 4:.0f}" font-size="10">{fmt(hi)}</text>',
             f'<text x="2" y="{y(lo) + 4:.0f}" font-size="10">{fmt(lo)}</text>',
             f'<line x1="40" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" stroke="#888"/>']
    for k, (name, s) in enumerate(series.items()):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s) if not math.isnan(v))
        color = COLORS[k % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
        parts.append(f'<text x="{width - 200}" y="{16 + 12 * k}" font-size="11" fill="{color}">{escape(name)}</text>')
    parts.append(f'<text x="40" y="{height - 4}" font-size="10">frames (in target order)</text></svg>')
    return "".join(parts)


def _table(head: list[str], body: list[list[str]], attrs: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for k, row in enumerate(body):
        out.append(f"<tr{attrs[k] if attrs else ''}>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


def _stage_table(stage_rows: list[dict]) -> str:
    attrs = [f' data-set="{escape(r["set"])}" data-stage="{escape(r["stage"])}" class="{"pass" if r["passed"] else "fail"}"'
             for r in stage_rows]
    body = [[r["set"], r["stage"], r["isolated"] or "-", r["chained"] or "-", r["other"], r["budgets"],
             "pass" if r["passed"] else "FAIL"] for r in stage_rows]
    return _table(["set", "stage", "isolated (this model)", "chained (whole set)", "reference / info", "budget", "ok"],
                  body, attrs)


def write_html(path: Path, report: dict, stage_rows: list[dict], rows: list[dict], sheets: list[dict]) -> Path:
    """Write ``report.html`` for ``report`` (the report.json data) atomically."""
    verdicts = report["verdicts"]
    html = [f"<!doctype html><html><head><meta charset='utf-8'><title>ffkit validate</title><style>{CSS}</style>"
            "</head><body><h1>ffkit validate</h1><h2>Verdict</h2>"]
    for name, v in verdicts.items():
        html.append(f'<div class="verdict {"pass" if v["passed"] else "fail"}" id="verdict-{escape(name)}">'
                    f"<b>{escape(name)}</b>: {escape(v['text'])}</div>")
    for s in report["sets"]:
        for note in s["fallbacks"]:
            html.append(f"<p>note ({escape(s['name'])}): {escape(note)}</p>")
    m = report["machine"]
    html.append(f"<p>CPU: {escape(str(m.get('cpu')))}; flags: {escape(' '.join(m.get('isa', [])))}; "
                f"targets: {escape(', '.join(t['path'] for t in report['targets']))}</p>")
    html.append("<h2>Stages</h2>" + _stage_table(stage_rows))
    speed = report["speed"]
    ref = next(iter(speed.values()))["frames_per_second"]
    html.append("<h2>Speed (same run, interleaved)</h2>" + _table(
        ["set", "frames", "seconds", "frames/s", "x reference"],
        [[n, s["frames"], f"{s['seconds']:.2f}", fmt(s["frames_per_second"]),
          f"{s['frames_per_second'] / ref:.2f}" if ref else "-"] for n, s in speed.items()]))
    mem = report["memory"]
    html.append(f"<p>memory: peak RSS {mem['peak_rss_mb']:.0f} MiB; RSS {mem['rss_start_mb']:.0f} MiB at the first "
                f"frame, {mem['rss_end_mb']:.0f} MiB after the last</p>")
    html.append("<h2>Over the frames</h2>")
    for stage, mode, metric, title in PLOTS:
        html.append(svg_plot(title, _series(rows, stage, mode, metric)))
    html.append("<h2>Sampled frames: reference | candidate | amplified difference</h2>")
    for s in sheets:
        html.append(f"<h3>{escape(s['set'])}: {escape(s['target'])} frame {s['frame']}</h3>"
                    f'<img src="{escape(s["file"])}" alt="{escape(s["set"])} {escape(s["target"])}">')
    html.append("<h2>Budgets</h2>" + _table(["budget", "bound", "reason", "source"],
                                            [[b["key"], f"{b['kind']} {b['bound']:g}", b["reason"], b["source"]]
                                             for b in report["budgets"]]))
    html.append("<h2>Files</h2>" + _table(["set", "role", "file", "recipe", "variant", "sha256"],
                                          [[s["name"], f["role"], f["file"], f["recipe"], f["variant"], f["sha256"]]
                                           for s in report["sets"] for f in s["files"]]))
    html.append("</body></html>")
    with atomic_path(Path(path)) as tmp:
        tmp.write_text("\n".join(html), encoding="utf-8")
    return Path(path)
