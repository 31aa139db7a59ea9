"""The report: figures derived from the raw times, profile summaries, and the outputs.

* :func:`finish` derives the figures from the raw times: median / p90 latency, throughput,
  speed-up against PyTorch eager and against the plain ONNX FP32 export (both computed from the
  medians), achieved GFLOP/s (FLOPs from :mod:`ffkit.validation.flops`) and the fraction of the
  peak of the variant's precision.
* :func:`summarize_profile` reduces an onnxruntime profile (``--profile``) to the top operator
  types and nodes by time.
* :func:`markdown_table` is the table ``docs/benchmarks.md`` shows; :func:`write_json` writes
  the whole report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .discovery import BASELINE, EAGER, Variant, _flops_reference
from .harness import timing_stats


def _fmt_ratio(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def finish(variants: Sequence[Variant], raw: Mapping[str, dict], peak: Mapping[str, dict]) -> list[dict]:
    """Per-variant result records with per-batch figures derived from the raw times.

    Speed-ups are ratios of **medians**: ``speedup_vs_eager = eager median / this median`` and
    ``speedup_vs_onnx_fp32 = onnx-fp32 median / this median`` (> 1 means faster), at equal batch.
    ``gflops_per_s = FLOPs / median`` with the FLOPs of the group's plain FP32 graph (see
    :func:`_flops_reference`; each variant's own count is kept as ``graph_flops``);
    ``fraction_of_peak`` divides it by the peak of the variant's precision (int8 -> the INT8
    GEMM, everything else -> the FP32 GEMM) measured in the variant's own process just before
    and after it ran (``local_peak``; the run-wide peak when there is none);
    ``fraction_of_run_peak`` divides by the best peak seen in the whole run.
    ``speedup_vs_*_normalized``: the same ratios with each median multiplied by the FP32 GEMM
    peak measured beside it, which cancels a shared machine's varying load to first order.
    With ``--compare-settings`` (``raw[key]["old_settings"]``): ``old_settings_median_ms`` and
    ``speedup_vs_old_settings = old-settings median / this median`` per batch, and the session
    options each side really ran with (``session_applied``, ``old_settings.session_applied``).
    """
    by_recipe: dict[str, dict[str, Variant]] = {}
    for v in variants:
        by_recipe.setdefault(v.group, {})[v.label] = v
    medians: dict[tuple[str, int], float] = {}
    for v in variants:
        for row in raw.get(v.key, {}).get("batches", []):
            if "times_s" in row:
                medians[(v.key, row["batch"])] = float(np.median(row["times_s"]))
    records = []
    for v in variants:
        res = raw.get(v.key, {})
        same = by_recipe.get(v.group, {})
        ref = _flops_reference(same.values())
        rec = {**v.as_dict(), "key": v.key, "group": v.group, "peak_mb": res.get("peak_mb"), "memory_method": res.get("memory_method"),
               "load_s": res.get("load_s"), "error": res.get("error"), "batches": []}
        rec["graph_flops"] = rec.pop("flops")
        rec["flops_from"] = ref.key if ref is not None else None
        flops = dict(ref.flops) if ref is not None else {}
        if flops.get(1) and v.fixed_batch is None:
            # A fixed-batch reference (GFPGAN's fused export) has no count at N > 1; per-sample
            # arithmetic is the same for every variant of these CNNs, so it scales with N.
            for row in res.get("batches", []):
                flops.setdefault(row["batch"], flops[1] * row["batch"])
        peak_key = "int8" if v.precision == "int8" else "fp32"
        run_peak = (peak.get(peak_key) or {}).get("best_gflops") or (peak.get(peak_key) or {}).get("gflops")
        local = (res.get("local_peak") or {}).get(peak_key)
        peak_g = local or run_peak
        rec["local_peak"] = res.get("local_peak")
        rec["session_applied"] = res.get("session_applied")
        old_res = res.get("old_settings")
        old_medians = {r["batch"]: float(np.median(r["times_s"])) for r in (old_res or {}).get("batches", [])
                       if "times_s" in r}
        if old_res is not None:
            rec["old_settings"] = {"session_applied": old_res.get("session_applied"), "error": old_res.get("error"),
                                   "peak_mb": old_res.get("peak_mb")}
        for row in res.get("batches", []):
            b = row["batch"]
            if "times_s" not in row:
                rec["batches"].append({"batch": b, "skipped": row.get("skipped", "not measured")})
                continue
            stats = timing_stats(row["times_s"])
            med = stats["median_ms"] / 1e3
            out = {"batch": b, **{k: round(v_, 5) if isinstance(v_, float) else v_ for k, v_ in stats.items()},
                   "throughput_per_s": round(b / med, 2), "times_ms": [round(t * 1e3, 5) for t in row["times_s"]]}
            eager = same.get(EAGER)
            base = same.get(BASELINE)
            out["speedup_vs_eager"] = _fmt_ratio(medians[(eager.key, b)] / med) if eager and (eager.key, b) in medians else None
            out["speedup_vs_onnx_fp32"] = _fmt_ratio(medians[(base.key, b)] / med) if base and (base.key, b) in medians else None
            # The same ratios with each side's time scaled by the FP32 GEMM peak measured beside it
            # (time x local peak ~ time on an idle machine): comparable across moments of load.
            gauge = lambda key: ((raw.get(key) or {}).get("local_peak") or {}).get("fp32")  # noqa: E731
            for name, other in (("eager", eager), ("onnx_fp32", base)):
                value = None
                if other is not None and (other.key, b) in medians and gauge(other.key) and gauge(v.key):
                    value = _fmt_ratio(medians[(other.key, b)] * gauge(other.key) / (med * gauge(v.key)))
                out[f"speedup_vs_{name}_normalized"] = value
            f = flops.get(b)
            out["gflops"] = round(f / 1e9, 4) if f else None
            out["gflops_per_s"] = round(f / med / 1e9, 2) if f else None
            out["fraction_of_peak"] = round(f / med / 1e9 / peak_g, 4) if f and peak_g else None
            out["fraction_of_run_peak"] = round(f / med / 1e9 / run_peak, 4) if f and run_peak else None
            out["peak_precision"] = peak_key
            out["peak_gflops"] = peak_g
            if old_res is not None:
                old_med = old_medians.get(b)
                out["old_settings_median_ms"] = round(old_med * 1e3, 5) if old_med else None
                out["speedup_vs_old_settings"] = _fmt_ratio(old_med / med) if old_med else None
            rec["batches"].append(out)
        if "profile" in res:
            rec["profile"] = res["profile"]
        records.append(rec)
    return records


def summarize_profile(path: str | os.PathLike, top: int = 10) -> dict:
    """Top operator types and nodes by total kernel time in an onnxruntime profile JSON.

    Returns ``{"file", "runs", "total_ms_per_run", "by_op": [{"op", "ms_per_run", "share", "nodes"}],
    "by_node": [{"node", "op", "ms_per_run", "share"}]}``; ``share`` is of the summed kernel time.
    """
    events = json.loads(Path(path).read_text())
    runs = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run") or 1
    by_op: dict[str, float] = {}
    op_nodes: dict[str, set] = {}
    by_node: dict[str, tuple[str, float]] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        op = (e.get("args") or {}).get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        dur = float(e.get("dur", 0)) / 1e3  # us -> ms
        by_op[op] = by_op.get(op, 0.0) + dur
        op_nodes.setdefault(op, set()).add(node)
        by_node[node] = (op, by_node.get(node, (op, 0.0))[1] + dur)
    total = sum(by_op.values()) or 1.0
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    nodes = sorted(by_node.items(), key=lambda kv: -kv[1][1])[:top]
    return {"file": str(path), "runs": runs, "total_ms_per_run": round(total / runs, 3),
            "by_op": [{"op": op, "ms_per_run": round(ms / runs, 3), "share": round(ms / total, 4), "nodes": len(op_nodes[op])}
                      for op, ms in ops],
            "by_node": [{"node": n, "op": op, "ms_per_run": round(ms / runs, 3), "share": round(ms / total, 4)}
                        for n, (op, ms) in nodes]}


def _budget_text(acc: dict | None) -> str:
    if not acc:
        return ""
    values = [f"{o['criterion'].split()[0]} {o['value']:.4g}" for o in acc["outputs"].values() if o.get("value") is not None]
    return ("met" if acc["budget_met"] else "MISSED") + (f" ({values[0]})" if values else "")


def markdown_table(report: Mapping) -> str:
    """The results as a GitHub-flavoured markdown table (what ``docs/benchmarks.md`` shows)."""
    def fmt(x, spec="{:.1f}", none="-"):
        return none if x is None else spec.format(x)

    compared = report.get("settings_compared")
    extra_head, extra_rule = (" old-settings ms | new vs old |", "--:|--:|") if compared else ("", "")
    lines = ["| recipe | variant | N | median ms | p90 ms | items/s | peak MB | vs eager | vs onnx-fp32 "
             "| GFLOP | GFLOP/s | % of peak |" + extra_head + " accuracy budget |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + extra_rule + "---|"]
    if compared:
        lines.insert(0, settings_line(report) + "\n")
    session = (report.get("settings") or {}).get("session") or {}
    if session.get("provider_options"):
        lines.insert(0, "provider options: " + "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in opts) for name, opts in session["provider_options"]) + "\n")
    for rec in report["results"]:
        if rec.get("error"):
            lines.append(f"| {rec['group']} | {rec['label']} | | error: {rec['error'][:60]} | | | | | | | | | |"
                         + (" | |" if compared else ""))
            continue
        for i, b in enumerate(rec["batches"]):
            head = [rec["group"] if i == 0 else "", rec["label"] if i == 0 else "", str(b["batch"])]
            if "skipped" in b:
                lines.append("| " + " | ".join(head + [b["skipped"]] + [""] * (11 if compared else 9)) + " |")
                continue
            frac = b.get("fraction_of_peak")
            row = head + [fmt(b["median_ms"]), fmt(b["p90_ms"]), fmt(b["throughput_per_s"], "{:.2f}"),
                          fmt(rec.get("peak_mb"), "{:.0f}") if i == 0 else "",
                          fmt(b.get("speedup_vs_eager"), "{:.2f}x"), fmt(b.get("speedup_vs_onnx_fp32"), "{:.2f}x"),
                          fmt(b.get("gflops"), "{:.2f}"), fmt(b.get("gflops_per_s")),
                          f"{frac * 100:.0f}% {b['peak_precision']}" if frac is not None else "-"]
            if compared:
                row += [fmt(b.get("old_settings_median_ms")), fmt(b.get("speedup_vs_old_settings"), "{:.2f}x")]
            row.append(_budget_text(rec.get("accuracy")) if i == 0 else "")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _spin_text(applied: Mapping | None, configured: bool | None) -> str:
    entry = applied.get("allow_spinning") if applied else {True: "1", False: "0"}.get(configured)
    return {"1": "on", "0": "off", None: "onnxruntime default (on)"}.get(entry, str(entry))


def settings_line(report: Mapping) -> str:
    """One line naming the old and the new runtime settings of a ``--compare-settings`` run, as the
    sessions reported them back (spinning, provider options)."""
    compared = report.get("settings_compared") or {}
    applied = {"old": None, "new": None}
    for rec in report.get("results", []):
        if rec.get("session_applied") and applied["new"] is None:
            applied["new"] = rec["session_applied"]
            applied["old"] = (rec.get("old_settings") or {}).get("session_applied")
    parts = []
    for side in ("old", "new"):
        cfg = compared.get(side) or {}
        got = applied[side] or {}
        opts = {k: v for k, v in (got.get("provider_options") or {}).items() if v}
        parts.append(f"{side} settings: spinning {_spin_text(got, cfg.get('spinning'))}, provider options "
                     f"{'; '.join(f'{k}: {v}' for k, v in opts.items()) or 'none'}"
                     f"{'' if cfg.get('provider_defaults', True) else ' (no defaults)'}")
    return " | ".join(parts)


def write_json(report: Mapping, path: str | os.PathLike) -> Path:
    """Write the report as indented JSON (atomically)."""
    from ffkit.recipes.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    return path
