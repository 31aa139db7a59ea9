"""Accuracy metrics between a candidate output and its reference (numpy only, torch-free).

Every function takes two arrays of the same shape (any float dtype; computed in float64) and
returns a Python float. ``candidate`` is the artifact under test, ``reference`` the trusted one;
the asymmetric metrics (relative L2, SQNR, PSNR's peak) are relative to the reference.

Contracts:

- :func:`max_abs`: ``max |c - r|`` over all elements (0 for identical arrays).
- :func:`rel_l2`: ``||c - r||_2 / ||r||_2`` over all elements; ``0`` when both are zero,
  ``inf`` when only the reference is zero.
- :func:`cosine`: the cosine similarity of each sample (axis 0 is the batch; each sample is
  flattened), and the WORST (smallest) over the batch. Zero vectors: 1 if both are zero, else 0.
- :func:`psnr`: ``10 log10(peak^2 / mean((c - r)^2))`` in dB, ``peak`` being the width of the
  output's nominal range (1 for [0,1] images, 2 for [-1,1]); ``inf`` for identical arrays.
- :func:`sqnr`: ``20 log10(||r|| / ||r - c||)`` in dB, as onnxruntime's
  ``qdq_loss_debug.compute_signal_to_quantization_noice_ratio`` (norms floored at float eps).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

#: Names of the metrics :func:`compare` returns, in display order.
METRICS = ("rel_l2", "max_abs", "cosine", "psnr")


def _pair(candidate, reference) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(candidate, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if c.shape != r.shape:
        raise ValueError(f"shape mismatch: candidate {c.shape} vs reference {r.shape}")
    return c, r


def max_abs(candidate, reference) -> float:
    """Largest absolute element-wise difference."""
    c, r = _pair(candidate, reference)
    return float(np.max(np.abs(c - r))) if c.size else 0.0


def rel_l2(candidate, reference) -> float:
    """``||c - r|| / ||r||`` (Frobenius norms over every element)."""
    c, r = _pair(candidate, reference)
    diff, norm = float(np.linalg.norm(c - r)), float(np.linalg.norm(r))
    if norm == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / norm


def cosine(candidate, reference) -> float:
    """Smallest per-sample cosine similarity (axis 0 = batch; 0-d/1-d arrays are one sample)."""
    c, r = _pair(candidate, reference)
    if c.ndim <= 1:
        c, r = c.reshape(1, -1), r.reshape(1, -1)
    c, r = c.reshape(c.shape[0], -1), r.reshape(r.shape[0], -1)
    nc, nr = np.linalg.norm(c, axis=1), np.linalg.norm(r, axis=1)
    dots = np.sum(c * r, axis=1)
    both_zero = (nc == 0) & (nr == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, np.where((nc == 0) | (nr == 0), 0.0, dots / (nc * nr)))
    return float(np.min(cos))


def psnr(candidate, reference, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over the nominal range width ``peak``."""
    c, r = _pair(candidate, reference)
    mse = float(np.mean((c - r) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def sqnr(candidate, reference) -> float:
    """Signal-to-quantization-noise ratio in dB, onnxruntime's qdq-debugging formula."""
    c, r = _pair(candidate, reference)
    eps = float(np.finfo(np.float64).eps)
    signal = max(float(np.linalg.norm(r)), eps)
    noise = max(float(np.linalg.norm(r - c)), eps)
    return 20.0 * math.log10(signal / noise)


def compare(candidate, reference, peak: float | None = None) -> dict[str, float]:
    """All four figures of one output: ``rel_l2``, ``max_abs``, ``cosine`` and, when ``peak``
    is given (image outputs), ``psnr``; absent metrics are omitted."""
    figures = {"rel_l2": rel_l2(candidate, reference), "max_abs": max_abs(candidate, reference),
               "cosine": cosine(candidate, reference)}
    if peak is not None:
        figures["psnr"] = psnr(candidate, reference, peak)
    return figures


def compare_batches(candidates: list[Mapping[str, np.ndarray]], references: list[Mapping[str, np.ndarray]],
                    peaks: Mapping[str, float | None]) -> dict[str, dict[str, float]]:
    """Per output name, the figures over a list of runs (several input shapes or samples).

    Runs may differ in shape, so each metric is computed per run and combined as the worst:
    largest ``rel_l2``/``max_abs``, smallest ``cosine``/``psnr``.
    """
    worst: dict[str, dict[str, float]] = {}
    for cand, ref in zip(candidates, references, strict=True):
        for name, r in ref.items():
            figures = compare(cand[name], r, peaks.get(name))
            slot = worst.setdefault(name, {})
            for key, value in figures.items():
                if key not in slot:
                    slot[key] = value
                elif key in ("cosine", "psnr"):
                    slot[key] = min(slot[key], value)
                else:
                    slot[key] = max(slot[key], value)
    return worst
