"""The whole run: :func:`run_bench` counts FLOPs, measures the GEMM peak, then every variant (in
a fresh process each by default, round-robin over ``rounds``), pools the raw times
(:func:`_merge`) and returns the JSON-able report with the figures of :func:`finish`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ffkit.recipes.errors import FfkitError

from .config import BenchSettings, SessionConfig, new_runtime_config, old_runtime_config
from .discovery import Variant, _flops_candidates, count_variant_flops
from .harness import LOCAL_PEAK_SHAPE, measure, measure_isolated, peak_probe
from .machine import machine_info, physical_cores
from .report import finish, summarize_profile


def run_bench(variants: Sequence[Variant], settings: BenchSettings,
              on_step: Callable[[str], None] = lambda msg: None,
              on_partial: Callable[[dict], None] | None = None) -> dict:
    """Measure ``variants`` (and the peak) and return the full JSON-able report.

    ``on_step(message)`` is called before each measurement (for a progress display);
    ``on_partial(report)``, when given, after each one with the report so far. With
    ``settings.rounds > 1`` the variants are measured round-robin that many times and each
    variant's runs are pooled, so a burst of load on a shared machine is spread over all rows.
    With ``settings.compare_settings`` each ONNX variant is timed twice in turn, on the runtime's
    old session settings and then its current ones (``report["settings_compared"]``); the
    variant's main figures are the current ones, ``raw[key]["old_settings"]`` the old.
    """
    if settings.session.threads == 0:
        settings.session = SessionConfig(**{**settings.session.as_dict(), "threads": physical_cores()})
    old_cfg = None
    if settings.compare_settings:
        # main rows (and torch eager) on the runtime's current settings, a second row on its old ones
        old_cfg = old_runtime_config(settings.session)
        settings.session = new_runtime_config(settings.session)
    report: dict[str, Any] = {"machine": machine_info(), "settings": settings.as_dict(),
                              "flops_convention": "multiply-add = 2 FLOPs; Conv, ConvTranspose, Gemm, MatMul (and quantized forms) counted"}
    if old_cfg is not None:
        report["settings_compared"] = {
            "old": old_cfg.as_dict(), "new": settings.session.as_dict(),
            "old_means": "the runtime's old settings: intra-op spinning on, no provider options",
            "new_means": "ffkit.runtime.sessions.default_spinning(workers=1) on this machine at start, "
                         "provider options over the runtime's defaults"}
    for v in _flops_candidates(variants, settings.count_all_flops):
        on_step(f"counting FLOPs: {v.key}")
        count_variant_flops(v, settings.batches, settings.dims)
    peak: dict[str, dict] = {}
    if settings.peak:
        on_step("measuring peak: FP32 and INT8 GEMM")
        peak = peak_probe(settings.session, isolate=settings.isolate,
                          shapes=[(1024, 1024, 1024), (2048, 2048, 2048), LOCAL_PEAK_SHAPE])
    report["peak"] = peak
    raw: dict[str, dict] = {}
    if settings.profile_dir:
        Path(settings.profile_dir).mkdir(parents=True, exist_ok=True)
    for rnd in range(max(1, settings.rounds)):
        for v in variants:
            tag = f" (round {rnd + 1}/{settings.rounds})" if settings.rounds > 1 else ""
            on_step(f"{v.key}{tag}")
            spec = {"kind": v.kind, "path": str(v.path) if v.path else None, "recipe": v.recipe,
                    "checkpoint": str(v.checkpoint) if v.checkpoint else None, "batches": list(settings.batches),
                    "dims": settings.dims, "session": settings.session.as_dict(), "warmup": settings.warmup,
                    "repeat": settings.repeat, "max_seconds": settings.max_seconds, "min_runs": settings.min_runs,
                    "fixed_batch": v.fixed_batch, "local_peak": settings.peak and settings.local_peak}
            if settings.profile_dir and v.kind == "onnx" and rnd == 0:
                spec.update(profile_dir=settings.profile_dir, profile_runs=settings.profile_runs,
                            profile_name=re.sub(r"[^A-Za-z0-9_.+-]", "_", v.key))
            if old_cfg is not None and v.kind == "onnx":
                on_step(f"{v.key}{tag}: old runtime settings")
                old_spec = {**spec, "session": old_cfg.as_dict(), "profile_dir": None}
                old_res = measure_isolated(old_spec) if settings.isolate else _measure_caught(old_spec)
                on_step(f"{v.key}{tag}: current runtime settings")
            res = measure_isolated(spec) if settings.isolate else _measure_caught(spec)
            _merge(raw, v.key, res)
            if old_cfg is not None and v.kind == "onnx":
                _merge(raw[v.key], "old_settings", old_res)
            if res.get("profile_file"):
                raw[v.key]["profile"] = {**summarize_profile(res["profile_file"], settings.profile_top),
                                         "batch": res.get("profile_batch")}
            if on_partial is not None:
                measured = [u for u in variants if u.key in raw]
                on_partial({**report, "partial": True, "results": finish(measured, raw, peak)})
    for p, probe in peak.items():
        seen = [probe.get("gflops") or 0] + [r["local_peak"][p] for r in raw.values() if (r.get("local_peak") or {}).get(p)]
        probe["best_gflops"] = round(max(seen), 2)
        probe["local_samples"] = len(seen) - 1
    report["results"] = finish(variants, raw, peak)
    if hasattr(os, "getloadavg"):
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _measure_caught(spec: Mapping[str, Any]) -> dict:
    try:
        return measure(spec)
    except FfkitError as e:
        return {"error": str(e)}


def _merge(raw: dict, key: str, res: dict) -> None:
    if key not in raw:
        raw[key] = res
        return
    old = raw[key]
    if "error" in res and "error" not in old:
        return
    old["peak_mb"] = max(old.get("peak_mb") or 0, res.get("peak_mb") or 0)
    if res.get("local_peak") and old.get("local_peak"):
        old["local_peak"] = {p: max(old["local_peak"][p], res["local_peak"][p]) for p in old["local_peak"]}
    rows = {r["batch"]: r for r in res.get("batches", [])}
    for r in old.get("batches", []):
        new = rows.get(r["batch"], {})
        if "times_s" in r and "times_s" in new:
            r["times_s"] = [*r["times_s"], *new["times_s"]]
