"""The measuring harness: what runs inside the process that times a variant.

* :func:`measure` times one variant in the current process: build the session (or the PyTorch
  model), warm up (:func:`time_runs`), then repeated runs at each batch on the recipe's sample
  inputs (:func:`_onnx_feeds`); returns the raw times and the peak memory (:class:`MemoryProbe`).
  :func:`measure_isolated` runs the same thing in a fresh Python process (the default; the
  worker is :func:`_worker_main`, run by ``python -m ffkit.toolkit.bench``), so one variant's
  allocations cannot hide or inflate another's.
* :func:`peak_probe` measures the machine's practical peak with a large FP32 GEMM (``MatMul``)
  and an INT8 one (``QLinearMatMul``, u8 x s8, the MLAS kernel INT8 convolutions use) through
  onnxruntime with the same threads and session options as the variants; with ``local_peak``
  :func:`measure` also probes it just before and after the variant, in its own process.

Memory method: the process's resident set is read just before the session / model is created
(``VmRSS``), the high-water mark is reset (``/proc/self/clear_refs`` = 5), and after the last run
``VmHWM - baseline`` is the variant's peak: weights, arena, activations and workspace of the
largest batch. Where the reset is not available the fresh process's ``ru_maxrss`` is used.

Every session comes from :func:`ffkit.runtime.sessions.create_session` with the
:class:`~ffkit.runtime.sessions.SessionSettings` of :meth:`SessionConfig.settings`:
``intra_op_num_threads`` = the benchmark's threads (default: physical cores),
``inter_op_num_threads`` = 1, sequential execution, graph optimisation level ``all`` (includes
the NCHWc layout transformer), CPU memory arena on. See ``docs/benchmarks.md`` for the
measurements behind these choices.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ffkit.recipes.errors import FfkitError

from .config import SessionConfig
from .discovery import bench_dims
from .machine import physical_cores

#: The marker the worker prints before its JSON result (anything the libraries print comes before).
_RESULT_MARKER = "@@FFKIT-BENCH@@"


def _status_kb(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
        return int(m.group(1)) if m else None
    except OSError:  # pragma: no cover
        return None


class MemoryProbe:
    """Peak resident memory added after :meth:`start` (see the module docstring for the method)."""

    def start(self) -> None:
        import gc

        gc.collect()
        self.baseline_kb = _status_kb("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM-after-reset minus VmRSS-before"
        except OSError:  # pragma: no cover
            self.method = "ru_maxrss minus VmRSS-before (fresh process)"

    def peak_mb(self) -> float:
        hwm = _status_kb("VmHWM")
        if hwm is None or self.method.startswith("ru_maxrss"):  # pragma: no cover
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(max(0, hwm - self.baseline_kb) / 1024, 1)


def time_runs(fn: Callable[[], Any], warmup: int = 3, repeat: int = 20, max_seconds: float = 15.0,
              min_runs: int = 5) -> list[float]:
    """Call ``fn`` ``warmup`` times (at least once when ``warmup`` > 0, and no longer than a third of
    ``max_seconds``), then time up to ``repeat`` calls (seconds each); stop early once
    ``min_runs`` are timed and ``max_seconds`` have passed."""
    start = time.perf_counter()
    for i in range(max(0, warmup)):
        fn()
        if time.perf_counter() - start > max_seconds / 3:
            break
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max(1, repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_runs and time.perf_counter() - start > max_seconds:
            break
    return times


def timing_stats(times_s: Sequence[float]) -> dict:
    """Latency figures in milliseconds from raw per-run seconds."""
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "mean_ms": float(t.mean()),
            "min_ms": float(t.min()), "runs": int(t.size)}


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _onnx_feeds(session, recipe_name: str | None, batch: int, dims: Mapping[str, int] | None) -> dict[str, np.ndarray]:
    """Inputs for one run: the recipe's sample inputs (seed 0) cast to the session's input types;
    without a recipe, uniform [0, 1) at the session's shapes with named axes bound to ``dims``."""
    named = bench_dims(recipe_name, batch, dims)
    if recipe_name:
        from ffkit.recipes import get_recipe

        recipe = get_recipe(recipe_name)
        feeds = recipe.sample_inputs(seed=0, **named)
        names = [i.name for i in session.get_inputs()]
        if set(names) != set(feeds) and len(names) == len(feeds):  # an adopted file's own input names
            feeds = dict(zip(names, (feeds[n] for n in recipe.input_names)))
    else:
        rng = np.random.default_rng(0)
        feeds = {}
        for i, inp in enumerate(session.get_inputs()):
            shape = []
            for axis, d in enumerate(inp.shape):
                if isinstance(d, int) and d > 0:
                    shape.append(d)
                elif axis == 0:
                    shape.append(batch)
                elif isinstance(d, str) and d in named:
                    shape.append(named[d])
                else:
                    raise FfkitError(f"input {inp.name!r} axis {axis} is dynamic ({d}); pass --recipe or --dims {d}=SIZE")
            feeds[inp.name] = rng.uniform(0, 1, shape).astype(np.float32)
    out = {}
    for inp in session.get_inputs():
        if inp.name not in feeds:
            raise FfkitError(f"the artifact wants an input {inp.name!r} the recipe {recipe_name} does not describe")
        out[inp.name] = feeds[inp.name].astype(_ORT_DTYPES.get(inp.type, np.float32), copy=False)
    return out


def _ort_session(path, cfg: SessionConfig, profile_prefix: str | None = None):
    """The session of the artifact at ``path`` from the project's one session factory (the same
    checks of the file as the runtime's); a file onnxruntime cannot load is a one-line
    ArtifactError naming it. With ``cfg.provider_defaults`` off the providers get exactly
    ``cfg.provider_options`` (the runtime's old settings), else the factory merges its defaults
    under them."""
    import dataclasses

    from ffkit.runtime.sessions import create_session

    settings = dataclasses.replace(cfg.settings(profile_prefix), provider_defaults=cfg.provider_defaults)
    return create_session(str(path), settings)


def session_applied(session) -> dict:
    """What the session really runs with, read back from onnxruntime: ``{"providers",
    "provider_options", "intra_op_threads", "inter_op_threads", "level", "execution_mode",
    "cpu_arena", "allow_spinning"}``; ``allow_spinning`` is the ``session.intra_op.allow_spinning``
    entry ("1" / "0"), or None when it was not set (onnxruntime's default: spinning)."""
    opts = session.get_session_options()
    try:
        spinning = opts.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: onnxruntime's default
        spinning = None
    return {"providers": list(session.get_providers()),
            "provider_options": {k: dict(v) for k, v in (session.get_provider_options() or {}).items()},
            "intra_op_threads": opts.intra_op_num_threads, "inter_op_threads": opts.inter_op_num_threads,
            "level": str(opts.graph_optimization_level).split(".")[-1],
            "execution_mode": str(opts.execution_mode).split(".")[-1], "cpu_arena": bool(opts.enable_cpu_mem_arena),
            "allow_spinning": spinning}


def measure(spec: Mapping[str, Any]) -> dict:
    """Time one variant in this process. ``spec`` (JSON-able) keys:

    ``kind`` (onnx | torch | gemm-fp32 | gemm-int8), ``path`` / ``recipe`` / ``checkpoint``,
    ``batches`` (list of int), ``dims`` (named dims), ``session`` (:class:`SessionConfig` dict),
    ``warmup``, ``repeat``, ``max_seconds``, ``min_runs``, ``fixed_batch``, ``profile_dir``
    (enables an extra profiled session after timing), ``profile_runs``, ``local_peak`` (also
    measure the FP32 and INT8 GEMM peak just before and just after, in this process: on a shared
    machine the peak a variant is compared with is the one it could have had at that moment).

    Returns ``{"batches": [{"batch", "times_s"} | {"batch", "skipped"}], "peak_mb", "memory_method",
    "load_s", "session_applied" (ONNX: :func:`session_applied`), "profile_file"?, "local_peak"?: {"fp32", "int8"}}``; the peak GEMM kinds return
    ``{"gflops", "shape", "times_s"}``.
    """
    cfg = SessionConfig.from_dict(spec.get("session"))
    kind = spec["kind"]
    if kind.startswith("gemm-"):
        return _gemm_peak(kind, cfg, spec)
    if not spec.get("local_peak"):
        return _measure_variant(spec, cfg)
    before = _local_peaks(cfg)
    _trim_heap()
    result = _measure_variant(spec, cfg)
    after = _local_peaks(cfg)
    result["local_peak"] = {p: max(before[p], after[p]) for p in before}
    result["local_peak_samples"] = {p: [before[p], after[p]] for p in before}
    return result


#: The GEMM shape of the local peak probes: a 3x3, 512 -> 1024 channel convolution at 32x32
#: as im2col sees it (M = out channels, K = 9 * in channels, N = pixels); within 2 % of the
#: best shape found on the reference machine and short (~50 ms FP32 on 2 cores).
LOCAL_PEAK_SHAPE = (1024, 4608, 1024)


def _local_peaks(cfg: SessionConfig) -> dict[str, float]:
    """FP32 and INT8 GEMM GFLOP/s measured here and now (same process, threads, options)."""
    spec = {"shapes": [LOCAL_PEAK_SHAPE], "warmup": 2, "repeat": 7, "max_seconds": 2.0}
    return {p: _gemm_peak(f"gemm-{p}", cfg, spec)["gflops"] for p in ("fp32", "int8")}


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) so the memory baseline is clean."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _measure_variant(spec: Mapping[str, Any], cfg: SessionConfig) -> dict:
    kind = spec["kind"]
    timing = {k: spec[k] for k in ("warmup", "repeat", "max_seconds", "min_runs") if k in spec}
    batches, dims = list(spec["batches"]), spec.get("dims") or {}
    mem = MemoryProbe()
    if kind == "torch":
        import torch

        from ffkit.recipes import get_recipe
        from ffkit.recipes.checkpoint import load_checkpoint

        torch.set_num_threads(cfg.threads or physical_cores())
        recipe = get_recipe(spec["recipe"])
        mem.start()
        t0 = time.perf_counter()
        model = load_checkpoint(recipe, spec["checkpoint"])
        load_s = time.perf_counter() - t0
        rows = []
        with torch.inference_mode():
            for b in batches:
                feeds = recipe.sample_inputs(seed=0, **bench_dims(recipe.name, b, dims))
                args = [torch.from_numpy(v) for v in feeds.values()]
                rows.append({"batch": b, "times_s": time_runs(lambda: model(*args), **timing)})
        return {"batches": rows, "peak_mb": mem.peak_mb(), "memory_method": mem.method, "load_s": round(load_s, 3)}

    # Imported (onnxruntime with it) before the baseline so their pages are not counted.
    from ffkit.runtime.sessions import check_run

    mem.start()
    t0 = time.perf_counter()
    session = _ort_session(spec["path"], cfg)
    load_s = time.perf_counter() - t0
    applied = session_applied(session)
    names = [o.name for o in session.get_outputs()]
    rows, first_feeds = [], None
    for b in batches:
        fixed = spec.get("fixed_batch")
        if fixed is not None and fixed != b:
            rows.append({"batch": b, "skipped": f"artifact has a fixed batch of {fixed}"})
            continue
        feeds = _onnx_feeds(session, spec.get("recipe"), b, dims)
        check_run(session, feeds)   # the run cap, as every command applies it (outside the timing)
        first_feeds = first_feeds or feeds
        rows.append({"batch": b, "times_s": time_runs(lambda: session.run(names, feeds), **timing)})
    result = {"batches": rows, "peak_mb": mem.peak_mb(), "memory_method": mem.method, "load_s": round(load_s, 3),
              "session_applied": applied}
    if spec.get("profile_dir") and first_feeds is not None:
        del session
        prefix = str(Path(spec["profile_dir"]) / spec.get("profile_name", "ort_profile"))
        psession = _ort_session(spec["path"], cfg, profile_prefix=prefix)
        for _ in range(2):
            psession.run(names, first_feeds)  # warm-up, its profile is dropped
        Path(psession.end_profiling()).unlink(missing_ok=True)
        psession = _ort_session(spec["path"], cfg, profile_prefix=prefix)
        for _ in range(max(1, int(spec.get("profile_runs", 5)))):
            psession.run(names, first_feeds)
        result["profile_file"] = psession.end_profiling()
        result["profile_batch"] = next(len(v) for v in first_feeds.values())
    return result


def _gemm_model(kind: str, m: int, k: int, n: int):
    """A one-node ``MatMul`` (fp32) or ``QLinearMatMul`` (u8 activations x s8 weights) model."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "gemm-fp32":
        w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
        nodes = [helper.make_node("MatMul", ["a", "w"], ["y"])]
        inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])]
        inits = [w]
    else:
        w = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")
        scalars = [numpy_helper.from_array(np.array(0.02, np.float32), "sa"), numpy_helper.from_array(np.array(128, np.uint8), "za"),
                   numpy_helper.from_array(np.array(0.01, np.float32), "sw"), numpy_helper.from_array(np.array(0, np.int8), "zw"),
                   numpy_helper.from_array(np.array(4.0, np.float32), "sy"), numpy_helper.from_array(np.array(128, np.uint8), "zy")]
        nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "w", "sw", "zw", "sy", "zy"], ["y"])]
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.UINT8, [m, n])]
        inits = [w, *scalars]
    graph = helper.make_graph(nodes, kind, inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _gemm_peak(kind: str, cfg: SessionConfig, spec: Mapping[str, Any]) -> dict:
    from ffkit.runtime.sessions import create_session

    best = None
    for m, k, n in spec.get("shapes") or [(1024, 1024, 1024), (2048, 2048, 2048)]:
        model = _gemm_model(kind, m, k, n)
        sess = create_session(model, cfg.settings(), name=f"{kind} probe {m}x{k}x{n}")
        rng = np.random.default_rng(1)
        a = (rng.standard_normal((m, k)).astype(np.float32) if kind == "gemm-fp32"
             else rng.integers(0, 256, (m, k), dtype=np.uint8))
        times = time_runs(lambda: sess.run(["y"], {"a": a}), warmup=spec.get("warmup", 3),
                          repeat=spec.get("repeat", 15), max_seconds=spec.get("max_seconds", 4.0), min_runs=5)
        med = float(np.median(times))
        gflops = 2.0 * m * k * n / med / 1e9
        if best is None or gflops > best["gflops"]:
            best = {"gflops": round(gflops, 2), "shape": [m, k, n], "median_ms": round(med * 1e3, 3), "times_s": times,
                    "op": "MatMul" if kind == "gemm-fp32" else "QLinearMatMul (u8 x s8)"}
    return best


def _worker_main() -> None:  # pragma: no cover - exercised through measure_isolated
    spec = json.loads(sys.stdin.read())
    try:
        result = measure(spec)
    except FfkitError as e:
        result = {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - report, the parent decides
        result = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"}
    sys.stdout.write("\n" + _RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def measure_isolated(spec: Mapping[str, Any], timeout: float | None = None) -> dict:
    """:func:`measure` in a fresh Python process (so memory and allocator state are the variant's own)."""
    env = dict(os.environ)
    threads = str((spec.get("session") or {}).get("threads") or physical_cores())
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    if (spec.get("session") or {}).get("spinning") is False:
        # --no-spin for PyTorch too: OpenMP threads sleep instead of spin-waiting at barriers
        # (on an oversubscribed machine spinning costs torch eager up to 6x; docs/benchmarks.md).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        proc = subprocess.run([sys.executable, "-m", "ffkit.toolkit.bench"], input=json.dumps(spec), text=True,
                              capture_output=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    marker = proc.stdout.rfind(_RESULT_MARKER)
    if marker < 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": f"worker exited {proc.returncode}: {tail[-1][:300] if tail else 'no output'}"}
    return json.loads(proc.stdout[marker + len(_RESULT_MARKER):].strip().splitlines()[0])


def peak_probe(cfg: SessionConfig, isolate: bool = True, shapes: Sequence[Sequence[int]] | None = None,
               precisions: Sequence[str] = ("fp32", "int8")) -> dict:
    """The practical peak: ``{"fp32": {"gflops", "shape", "op", ...}, "int8": {...}}`` (int8 in GOP/s)."""
    out = {}
    for p in precisions:
        spec = {"kind": f"gemm-{p}", "session": cfg.as_dict()}
        if shapes:
            spec["shapes"] = [list(s) for s in shapes]
        res = measure_isolated(spec) if isolate else measure(spec)
        if "error" not in res:
            res.pop("times_s", None)
        out[p] = res
    return out
