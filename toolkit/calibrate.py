"""INT8 calibration statistics: collected once per (model, calibration set), cached, and turned
into tensor ranges for any method without running the model again.

For every tensor onnxruntime's quantizer would calibrate (float inputs/outputs of nodes, not
initializers: ``CalibraterBase.select_tensors_to_calibrate``) the collector keeps its min, max
and a value histogram over [-max|x|, max|x|] with 2048 bins, merged across samples exactly as
onnxruntime's ``HistogramCollector.collect_value`` does. From these:

- ``minmax``: the overall min and max (onnxruntime's MinMaxCalibrater without moving average);
- ``percentile``: onnxruntime's ``compute_percentile`` at 99.999 % (its PercentileCalibrater
  defaults: 2048 bins, asymmetric);
- ``entropy``: onnxruntime's KL-divergence threshold search (``get_entropy_threshold``) with
  128 quantized bins over the 2048-bin histogram (TensorRT's setting; onnxruntime's own default
  of 128 collection bins makes its search degenerate to the max range).

The statistics are cached as ``<cache_dir>/<recipe>.<model sha256[:12]>.<calibration digest[:12]>.npz``;
the method is not part of the key, so a re-run with another method, or another exclusion list,
reuses them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from ffkit.recipes.atomic import atomic_path

from .probe import FLOAT_TYPES, Probe, value_types

METHODS = ("minmax", "entropy", "percentile")
NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128
PERCENTILE = 99.999
CACHE_VERSION = 1


def entropy_threshold(histogram: tuple, num_quantized_bins: int = NUM_QUANTIZED_BINS) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime's ``HistogramCollector.get_entropy_threshold``, vectorised (same result).

    ``histogram`` is ``(hist, edges, min, max, ...)`` over a range symmetric about 0. For each
    candidate symmetric window the clipped distribution p (outliers folded into its end bins)
    is compared with its ``num_quantized_bins``-level quantization q (integer-truncated, as
    onnxruntime does) by KL divergence after smoothing; the window with the smallest divergence,
    clipped to [min, max], is returned as ``(low, high)`` in the edges' dtype.
    """
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, edges, lo, hi = histogram[0], histogram[1], histogram[2], histogram[3]
    hist = np.asarray(hist, dtype=np.int64)
    num_bins, dtype = hist.size, edges.dtype
    zero, half = num_bins // 2, num_quantized_bins // 2
    before = np.concatenate([[0], np.cumsum(hist)])
    total = before[-1]
    best, best_div = (np.array(0, dtype), np.array(0, dtype)), None
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += before[start]
        p[-1] += total - before[end]
        nonzero = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[body:].sum()
        norm = nonzero[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(norm != 0, quantized / np.maximum(norm, 1), 0.0).astype(np.int64)
        q[:body] = np.repeat(level, merged)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        div = np.array(np.inf, dtype=dtype) if ps is None or qs is None else np.array(entropy(ps, qs), dtype=dtype)
        if best_div is None or div < best_div:
            best, best_div = (edges[start], edges[end]), div
    low, high = best
    if low < lo:
        low = lo
    if high > hi:
        high = hi
    return np.asarray(low, dtype), np.asarray(high, dtype)


def tensors_to_calibrate(model: onnx.ModelProto, types: Mapping[str, tuple] | None = None) -> list[str]:
    """Float tensors read or written by nodes, not initializers, in node order (as onnxruntime)."""
    types = types if types is not None else value_types(model)
    inits = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        for name in [*node.input, *node.output]:
            if name and name not in inits and types.get(name, (0, None))[0] in FLOAT_TYPES:
                names.append(name)
    return list(dict.fromkeys(names))


@dataclass
class CalibrationStats:
    """Per-tensor ``(hist, edges, min, max, threshold)``, as onnxruntime's collector keeps them."""

    histograms: dict[str, tuple]
    samples: int

    def ranges(self, method: str):
        """onnxruntime ``TensorsData`` of the ranges ``method`` gives (see module docstring)."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, HistogramCollector, TensorsData

        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        if method == "minmax":
            return TensorsData(CalibrationMethod.MinMax,
                               {n: (np.float32(h[2]), np.float32(h[3])) for n, h in self.histograms.items()})
        hists = {n: (h[0], h[1].astype(np.float32), np.float32(h[2]), np.float32(h[3]), np.float32(h[4]))
                 for n, h in self.histograms.items()}
        if method == "entropy":
            result = {n: (*entropy_threshold(h, NUM_QUANTIZED_BINS), h[0], h[1]) for n, h in hists.items()}
            return TensorsData(CalibrationMethod.Entropy, result)
        collector = HistogramCollector(method=method, symmetric=False, num_bins=NUM_BINS,
                                       num_quantized_bins=NUM_QUANTIZED_BINS, percentile=PERCENTILE, scenario="same")
        collector.histogram_dict = hists
        with contextlib.redirect_stdout(io.StringIO()):
            result = collector.compute_collection_result()
        clean = {n: (np.asarray(v[0], np.float32), np.asarray(v[1], np.float32), *v[2:]) for n, v in result.items()}
        return TensorsData(CalibrationMethod.Percentile, clean)

    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Write atomically as one ``.npz`` (histograms plus a JSON ``meta`` record)."""
        names = list(self.histograms)
        arrays = {"names": np.array(json.dumps(names)),
                  "meta": np.array(json.dumps({**meta, "samples": self.samples, "version": CACHE_VERSION}))}
        for i, name in enumerate(names):
            hist, edges, lo, hi, thr = self.histograms[name]
            arrays[f"h{i}"], arrays[f"e{i}"] = hist, edges
            arrays[f"m{i}"] = np.array([lo, hi, thr], dtype=np.float32)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationStats | None":
        """The cached statistics, or None if absent, unreadable or of another cache version."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("version") != CACHE_VERSION:
                    return None
                names = json.loads(str(data["names"]))
                hists = {}
                for i, name in enumerate(names):
                    lo, hi, thr = data[f"m{i}"]
                    hists[name] = (data[f"h{i}"], data[f"e{i}"], lo, hi, thr)
            return cls(hists, int(meta["samples"]))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):   # truncated: recomputed
            return None


def collect(model: onnx.ModelProto, samples: Sequence[Mapping[str, np.ndarray]], progress: bool = True,
            budget_bytes: int = 1 << 30, name: str | None = None) -> CalibrationStats:
    """Run ``model`` on every sample and accumulate each calibrated tensor's statistics (``name``:
    the file the model was read from, for messages)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from .stage import progress_bar

    types = value_types(model)
    probe = Probe(model, tensors_to_calibrate(model, types), types, budget_bytes=budget_bytes, name=name)
    collector = HistogramCollector(method="percentile", symmetric=False, num_bins=NUM_BINS,
                                   num_quantized_bins=NUM_QUANTIZED_BINS, percentile=PERCENTILE, scenario="same")
    samples = list(samples)
    largest = max(samples, key=lambda f: sum(v.size for v in f.values()))
    runs = len(probe.groups(largest)) * len(samples)

    def merge(name, value):
        collector.collect_value({name: np.asarray(value, dtype=np.float32)})

    with progress_bar(runs if progress else 0, f"calibrating on {len(samples)} samples") as tick:
        probe.scan(samples, merge, tick=tick)
    return CalibrationStats(dict(collector.histogram_dict), len(samples))


def cached_stats(model: onnx.ModelProto, model_sha: str, calibration, cache_dir: str | os.PathLike,
                 progress: bool = True, name: str | None = None) -> tuple[CalibrationStats, Path, bool]:
    """The statistics of ``model`` on ``calibration`` (a CalibrationSet): ``(stats, cache path, hit)``."""
    path = Path(cache_dir) / f"{calibration.recipe_name}.{model_sha[:12]}.{calibration.digest[:12]}.npz"
    stats = CalibrationStats.load(path) if path.is_file() else None
    if stats is not None:
        return stats, path, True
    stats = collect(model, calibration.samples, progress, name=name)
    stats.save(path, {"model_sha256": model_sha, "calibration": calibration.summary()})
    return stats, path, False
