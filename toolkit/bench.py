"""``ffkit bench``: latency, throughput, memory and roofline of every variant of a model, side by side.

The pieces, each usable alone:

* :func:`discover` turns artifact paths / folders (and an optional checkpoint) into
  :class:`Variant` s, labelled from the artifact's own metadata (``ffkit.variant`` and the
  stage names of ``ffkit.history``), never from the file name.
* :func:`measure` times one variant in the current process: build the session (or the PyTorch
  model), warm up, then repeated runs at each batch; returns the raw times and the peak memory.
  :func:`measure_isolated` runs the same thing in a fresh Python process (the default), so one
  variant's allocations cannot hide or inflate another's.
* :func:`peak_probe` measures the machine's practical peak with a large FP32 GEMM (``MatMul``)
  and an INT8 one (``QLinearMatMul``, u8 x s8, the MLAS kernel INT8 convolutions use) through
  onnxruntime with the same threads and session options as the variants.
* :func:`finish` derives the figures from the raw times: median / p90 latency, throughput,
  speed-up against PyTorch eager and against the plain ONNX FP32 export (both computed from the
  medians), achieved GFLOP/s (FLOPs from :mod:`ffkit.validation.flops`) and the fraction of the
  peak of the variant's precision.
* :func:`summarize_profile` reduces an onnxruntime profile (``--profile``) to the top operator
  types and nodes by time.

Memory method: the process's resident set is read just before the session / model is created
(``VmRSS``), the high-water mark is reset (``/proc/self/clear_refs`` = 5), and after the last run
``VmHWM - baseline`` is the variant's peak: weights, arena, activations and workspace of the
largest batch. Where the reset is not available the fresh process's ``ru_maxrss`` is used.

Session options used for measuring (:func:`session_options`): ``intra_op_num_threads`` = the
benchmark's threads (default: physical cores), ``inter_op_num_threads`` = 1, sequential
execution, graph optimisation level ``all`` (includes the NCHWc layout transformer), CPU memory
arena on. See ``docs/benchmarks.md`` for the measurements behind these choices.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ffkit.recipes.errors import ArtifactError, FfkitError

#: Display order of the variant labels; anything else sorts after.
LABELS = ("torch-eager", "onnx-fp32", "simplified", "optimized", "fp16", "int8")
EAGER, BASELINE = "torch-eager", "onnx-fp32"

#: Stage names (``ffkit.history``) that mark a variant, most specific first.
_STAGE_LABELS = (("int8", "int8"), ("quantize", "int8"), ("fp16", "fp16"), ("optimize", "optimized"),
                 ("simplify", "simplified"))


# ---------------------------------------------------------------------------------------------
# Machine and session settings
# ---------------------------------------------------------------------------------------------

def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        try:
            text = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
            cores.add(text)
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def machine_info() -> dict:
    """CPU model, core counts, flags that matter for kernels, library versions, load average."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                            "physical_cores": physical_cores()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
        flags = set((re.search(r"flags\s*:\s*(.+)", cpuinfo) or [None, ""])[1].split())
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "f16c")
                       if f in flags]
    except OSError:  # pragma: no cover
        info["cpu"] = platform.processor()
    import onnxruntime as ort

    info["onnxruntime"] = ort.__version__
    info["numpy"] = np.__version__
    try:
        import torch  # noqa: F401 - optional

        info["torch"] = torch.__version__
    except ModuleNotFoundError:
        info["torch"] = None
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


@dataclass(frozen=True)
class SessionConfig:
    """How benchmark sessions are made. ``level``: disable | basic | extended | all;
    ``spinning``: onnxruntime's ``session.intra_op.allow_spinning`` (None keeps its default, on)."""

    threads: int = 0
    level: str = "all"
    spinning: bool | None = None
    arena: bool = True
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def as_dict(self) -> dict:
        return asdict(self)


def session_options(cfg: SessionConfig, profile_prefix: str | None = None):
    """``onnxruntime.SessionOptions`` for ``cfg`` (threads 0 = physical cores)."""
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if cfg.level not in levels:
        raise FfkitError(f"unknown graph optimisation level {cfg.level!r} (one of {', '.join(levels)})")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[cfg.level]
    opts.intra_op_num_threads = cfg.threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = cfg.arena
    opts.log_severity_level = 3
    if cfg.spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.spinning else "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One thing to time: an ONNX artifact, or the recipe's PyTorch model (``kind == "torch"``).

    ``flops`` maps batch size to FLOPs per inference at the benchmark dims (filled by
    :func:`count_variant_flops`); ``fixed_batch`` is the artifact's static batch, if any.
    """

    label: str
    kind: str  # "onnx" | "torch"
    recipe: str | None
    path: Path | None = None
    checkpoint: Path | None = None
    precision: str = "fp32"
    variant: str = ""
    stages: list[str] = field(default_factory=list)
    fixed_batch: int | None = None
    flops: dict[int, int] = field(default_factory=dict)
    accuracy: dict | None = None  # the reduced-precision stage's budget check, from ffkit.history

    @property
    def group(self) -> str:
        """What the variant is compared within: its recipe, or the file stem when it records none."""
        return self.recipe or (self.path.stem if self.path else "?")

    @property
    def key(self) -> str:
        return f"{self.group}/{self.label}"

    def as_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind, "recipe": self.recipe, "path": str(self.path) if self.path else None,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "precision": self.precision,
                "variant": self.variant, "stages": self.stages, "fixed_batch": self.fixed_batch,
                "flops": {str(k): v for k, v in self.flops.items()}, "accuracy": self.accuracy}


def variant_label(variant: str, stages: Sequence[str]) -> tuple[str, str]:
    """``(label, precision)`` from ``ffkit.variant`` (``fp32``, ``fp32-unfused``, ``int8`` ...) and
    the history's stage names. Precision comes from the variant string or a precision stage; the
    label is the most specific stage (int8 > fp16 > optimized > simplified > onnx-fp32). Extra
    variant words (``unfused``) and stages of other names (``prelu_rewrite``) are appended as
    ``+word``."""
    parts = [p for p in (variant or "fp32").split("-") if p]
    label = BASELINE
    for stage, name in _STAGE_LABELS:
        if stage in stages or stage in parts:
            label = name
            break
    precision = next((p for p in ("int8", "fp16") if p in parts or label == p), "fp32")
    extra = [p for p in parts if p not in ("fp32", "fp16", "int8")]
    known = {"export", *(stage for stage, _ in _STAGE_LABELS)}
    extra += [st for st in stages if st and st not in known and st not in extra]
    return (label + "".join(f"+{w}" for w in extra), precision)


def _sort_key(v: Variant) -> tuple:
    from ffkit.recipes import REGISTRY

    order = list(REGISTRY)
    r = order.index(v.recipe) if v.recipe in order else len(order)
    base = v.label.split("+")[0]
    lab = LABELS.index(base) if base in LABELS else len(LABELS)
    return (r, v.group, lab, v.label)


def _onnx_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.onnx") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ArtifactError(f"{path}: no ONNX artifacts in this folder")
        return files
    if not path.exists():
        raise ArtifactError(f"{path}: no such file or folder")
    return [path]


def _find_checkpoint(folder: Path, recipe: str) -> Path | None:
    for ext in (".pth", ".pt", ".ckpt", ".bin", ".safetensors"):
        exact = folder / f"{recipe}{ext}"
        if exact.is_file():
            return exact
    hits = sorted(p for p in folder.glob(f"{recipe}*") if p.suffix in (".pth", ".pt", ".ckpt") and p.is_file())
    return hits[0] if hits else None


def discover(paths: Iterable[str | os.PathLike], recipe: str | None = None,
             checkpoint: str | os.PathLike | None = None, eager: bool = True) -> list[Variant]:
    """The variants to benchmark, sorted by recipe then :data:`LABELS`.

    ``paths``: ONNX files and/or folders (searched recursively for ``*.onnx``); a missing path,
    a non-ONNX file or a folder without artifacts is a one-line error. ``recipe`` is used for
    artifacts that record none and names the checkpoint's recipe. ``checkpoint``: a published
    checkpoint file (its recipe: ``recipe``, or the single recipe among the artifacts) or a
    folder holding ``<recipe>.pth`` files; with ``eager`` and torch importable, each such recipe
    gets a ``torch-eager`` variant.
    """
    from ffkit.recipes import get_recipe

    from ffkit.recipes import artifact, onnx_file

    if recipe is not None:
        get_recipe(recipe)  # one-line error for a typo
    found: list[Variant] = []
    for raw in paths:
        for file in _onnx_files(Path(raw)):
            proto = onnx_file.load_onnx(file, load_weights=False)
            meta = artifact.metadata(proto)
            name = meta.get("ffkit.recipe") or recipe
            if name is not None:
                get_recipe(name)
            hist = json.loads(meta.get("ffkit.history", "[]"))
            stages = [h.get("stage", "") for h in hist]
            label, precision = variant_label(meta.get("ffkit.variant", "fp32"), stages)
            found.append(Variant(label, "onnx", name, path=file, precision=precision,
                                 variant=meta.get("ffkit.variant", ""), stages=stages,
                                 fixed_batch=_fixed_batch(proto), accuracy=_accuracy(hist, name)))
            del proto
    recipes_seen = list(dict.fromkeys(v.recipe for v in found if v.recipe))
    if checkpoint is not None and eager:
        ck = Path(checkpoint)
        if ck.is_dir():
            targets = [recipe] if recipe else recipes_seen
            for r in targets:
                file = _find_checkpoint(ck, r)
                if file is not None:
                    found.append(Variant(EAGER, "torch", r, checkpoint=file))
        elif ck.is_file():
            owner = recipe or (recipes_seen[0] if len(recipes_seen) == 1 else None)
            if owner is None:
                raise FfkitError(f"{ck}: which recipe is this checkpoint for? pass --recipe "
                                 f"(artifacts hold {', '.join(recipes_seen) or 'none'})")
            found.append(Variant(EAGER, "torch", owner, checkpoint=ck))
        else:
            raise FfkitError(f"{ck}: no such checkpoint file or folder")
    if not found:
        raise ArtifactError("nothing to benchmark: give ONNX artifacts or a folder of them (and --checkpoint for PyTorch)")
    # Disambiguate equal labels (two files of one recipe with the same history).
    seen: dict[str, int] = {}
    for v in sorted(found, key=_sort_key):
        seen[v.key] = seen.get(v.key, 0) + 1
        if seen[v.key] > 1:
            v.label = f"{v.label}#{seen[v.key]}"
    return sorted(found, key=_sort_key)


def _accuracy(history: list[dict], recipe_name: str | None = None) -> dict | None:
    """``{"stage", "budget_met", "outputs": {name: {"criterion", "value", "passed"}}}`` of the last
    stage that checked an accuracy budget (fp16 / int8), or None. ``budget_met`` is re-judged
    against the recipe's *current* budget for that precision when the recorded metric is the
    budget's (budgets may have been tightened since the artifact was built); the recorded
    verdict is kept as ``budget_met_when_built``."""
    for record in reversed(history):
        figures = record.get("figures") or {}
        if "budget_met" not in figures:
            continue
        budget = None
        if recipe_name:
            from ffkit.recipes import get_recipe

            budget = get_recipe(recipe_name).budgets.get(record.get("stage", ""))
        outputs, verdicts = {}, []
        for name, fig in (figures.get("accuracy") or {}).items():
            crit = str(fig.get("criterion", ""))
            metric = crit.split()[0] if crit else None
            value = fig.get(metric) if metric else None
            passed = fig.get("passed")
            if budget is not None and value is not None and metric == budget.metric:
                passed = budget.passes(float(value))
                crit = f"{budget.metric} {'>=' if budget.higher_is_better else '<='} {budget.threshold:g} (current budget)"
            outputs[name] = {"criterion": crit, "value": value, "passed": passed}
            verdicts.append(bool(passed))
        met = all(verdicts) if verdicts else bool(figures["budget_met"])
        return {"stage": record.get("stage"), "budget_met": met, "budget_met_when_built": bool(figures["budget_met"]),
                "outputs": outputs}
    return None


def _fixed_batch(proto) -> int | None:
    """The static first axis of the first graph input, or None when it is dynamic."""
    inits = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
        return None
    return None


def bench_dims(recipe_name: str | None, batch: int, dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """Named dims for one batch: the recipe's sample dims, overridden by ``dims``, with ``N = batch``."""
    base: dict[str, int] = {}
    if recipe_name:
        from ffkit.recipes import get_recipe

        base.update(get_recipe(recipe_name).sample_dims)
    base.update(dims or {})
    base["N"] = batch
    return base


def count_variant_flops(v: Variant, batches: Sequence[int], dims: Mapping[str, int] | None = None) -> None:
    """Fill ``v.flops`` for each batch (ONNX variants only; a torch variant borrows its recipe's)."""
    from ffkit.validation.flops import count_flops

    from ffkit.recipes.onnx_file import load_onnx

    if v.kind != "onnx":
        return
    proto = load_onnx(v.path)
    for b in batches:
        if v.fixed_batch is not None and v.fixed_batch != b:
            continue
        try:
            v.flops[b] = count_flops(proto, bench_dims(v.recipe, b, dims)).total
        except FfkitError:
            pass
    del proto


# ---------------------------------------------------------------------------------------------
# Timing and memory (run inside the measuring process)
# ---------------------------------------------------------------------------------------------

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

        feeds = get_recipe(recipe_name).sample_inputs(seed=0, **named)
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
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(cfg, profile_prefix), providers=list(cfg.providers))
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{path}: onnxruntime cannot load it ({first})") from None


def measure(spec: Mapping[str, Any]) -> dict:
    """Time one variant in this process. ``spec`` (JSON-able) keys:

    ``kind`` (onnx | torch | gemm-fp32 | gemm-int8), ``path`` / ``recipe`` / ``checkpoint``,
    ``batches`` (list of int), ``dims`` (named dims), ``session`` (:class:`SessionConfig` dict),
    ``warmup``, ``repeat``, ``max_seconds``, ``min_runs``, ``fixed_batch``, ``profile_dir``
    (enables an extra profiled session after timing), ``profile_runs``, ``local_peak`` (also
    measure the FP32 and INT8 GEMM peak just before and just after, in this process: on a shared
    machine the peak a variant is compared with is the one it could have had at that moment).

    Returns ``{"batches": [{"batch", "times_s"} | {"batch", "skipped"}], "peak_mb", "memory_method",
    "load_s", "profile_file"?, "local_peak"?: {"fp32", "int8"}}``; the peak GEMM kinds return
    ``{"gflops", "shape", "times_s"}``.
    """
    cfg = SessionConfig(**{**spec.get("session", {}), "providers": tuple(spec.get("session", {}).get("providers", ("CPUExecutionProvider",)))})
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

    import onnxruntime  # noqa: F401 - imported before the baseline so its pages are not counted

    mem.start()
    t0 = time.perf_counter()
    session = _ort_session(spec["path"], cfg)
    load_s = time.perf_counter() - t0
    names = [o.name for o in session.get_outputs()]
    rows, first_feeds = [], None
    for b in batches:
        fixed = spec.get("fixed_batch")
        if fixed is not None and fixed != b:
            rows.append({"batch": b, "skipped": f"artifact has a fixed batch of {fixed}"})
            continue
        feeds = _onnx_feeds(session, spec.get("recipe"), b, dims)
        first_feeds = first_feeds or feeds
        rows.append({"batch": b, "times_s": time_runs(lambda: session.run(names, feeds), **timing)})
    result = {"batches": rows, "peak_mb": mem.peak_mb(), "memory_method": mem.method, "load_s": round(load_s, 3)}
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
    import onnxruntime as ort

    best = None
    for m, k, n in spec.get("shapes") or [(1024, 1024, 1024), (2048, 2048, 2048)]:
        model = _gemm_model(kind, m, k, n)
        sess = ort.InferenceSession(model.SerializeToString(), session_options(cfg), providers=list(cfg.providers))
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
    sys.stdout.write("\n@@FFKIT-BENCH@@" + json.dumps(result) + "\n")
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
    marker = proc.stdout.rfind("@@FFKIT-BENCH@@")
    if marker < 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": f"worker exited {proc.returncode}: {tail[-1][:300] if tail else 'no output'}"}
    return json.loads(proc.stdout[marker + len("@@FFKIT-BENCH@@"):].strip().splitlines()[0])


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

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
            rec["batches"].append(out)
        if "profile" in res:
            rec["profile"] = res["profile"]
        records.append(rec)
    return records


def _flops_candidates(variants: Sequence[Variant], count_all: bool = False) -> list[Variant]:
    """The ONNX variants whose FLOPs get counted: every one with ``count_all``, else one per group,
    the cheapest to count that does the reference arithmetic (simplified graphs need no
    onnxruntime pass for their shapes; then the plain export; then any FP32; then any)."""
    onnx_vs = [v for v in variants if v.kind == "onnx"]
    if count_all:
        return onnx_vs
    picked = []
    for group in dict.fromkeys(v.group for v in onnx_vs):
        members = [v for v in onnx_vs if v.group == group]
        for pick in (lambda o: o.label == "simplified", lambda o: o.label == BASELINE,
                     lambda o: o.precision == "fp32", lambda o: True):
            hit = next((o for o in members if pick(o)), None)
            if hit is not None:
                picked.append(hit)
                break
    return picked


def _flops_reference(same: Iterable[Variant]) -> Variant | None:
    """The variant whose graph defines a group's FLOPs (every variant does the same arithmetic;
    fused, NCHWc-blocked or quantized graphs just count it less cleanly): the simplified or plain
    FP32 export if counted, else the first counted FP32 ONNX variant, else any counted one."""
    onnx_vs = [o for o in same if o.kind == "onnx" and o.flops]
    for pick in (lambda o: o.label in ("simplified", BASELINE), lambda o: o.precision == "fp32", lambda o: True):
        hit = next((o for o in onnx_vs if pick(o)), None)
        if hit is not None:
            return hit
    return None


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


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------

@dataclass
class BenchSettings:
    """Everything a run depends on (recorded in the JSON)."""

    batches: tuple[int, ...] = (1, 4)
    dims: dict[str, int] = field(default_factory=dict)
    session: SessionConfig = field(default_factory=SessionConfig)
    warmup: int = 3
    repeat: int = 20
    max_seconds: float = 15.0
    min_runs: int = 5
    rounds: int = 1
    isolate: bool = True
    peak: bool = True
    local_peak: bool = True
    count_all_flops: bool = False
    profile_dir: str | None = None
    profile_runs: int = 5
    profile_top: int = 10

    def as_dict(self) -> dict:
        d = asdict(self)
        d["session"] = self.session.as_dict()
        return d


def run_bench(variants: Sequence[Variant], settings: BenchSettings,
              on_step: Callable[[str], None] = lambda msg: None,
              on_partial: Callable[[dict], None] | None = None) -> dict:
    """Measure ``variants`` (and the peak) and return the full JSON-able report.

    ``on_step(message)`` is called before each measurement (for a progress display);
    ``on_partial(report)``, when given, after each one with the report so far. With
    ``settings.rounds > 1`` the variants are measured round-robin that many times and each
    variant's runs are pooled, so a burst of load on a shared machine is spread over all rows.
    """
    if settings.session.threads == 0:
        settings.session = SessionConfig(**{**settings.session.as_dict(), "threads": physical_cores()})
    report: dict[str, Any] = {"machine": machine_info(), "settings": settings.as_dict(),
                              "flops_convention": "multiply-add = 2 FLOPs; Conv, ConvTranspose, Gemm, MatMul (and quantized forms) counted"}
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
            res = measure_isolated(spec) if settings.isolate else _measure_caught(spec)
            _merge(raw, v.key, res)
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


def _budget_text(acc: dict | None) -> str:
    if not acc:
        return ""
    values = [f"{o['criterion'].split()[0]} {o['value']:.4g}" for o in acc["outputs"].values() if o.get("value") is not None]
    return ("met" if acc["budget_met"] else "MISSED") + (f" ({values[0]})" if values else "")


def markdown_table(report: Mapping) -> str:
    """The results as a GitHub-flavoured markdown table (what ``docs/benchmarks.md`` shows)."""
    def fmt(x, spec="{:.1f}", none="-"):
        return none if x is None else spec.format(x)

    lines = ["| recipe | variant | N | median ms | p90 ms | items/s | peak MB | vs eager | vs onnx-fp32 "
             "| GFLOP | GFLOP/s | % of peak | accuracy budget |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for rec in report["results"]:
        if rec.get("error"):
            lines.append(f"| {rec['group']} | {rec['label']} | | error: {rec['error'][:60]} | | | | | | | | | |")
            continue
        for i, b in enumerate(rec["batches"]):
            head = [rec["group"] if i == 0 else "", rec["label"] if i == 0 else "", str(b["batch"])]
            if "skipped" in b:
                lines.append("| " + " | ".join(head + [b["skipped"]] + [""] * 9) + " |")
                continue
            frac = b.get("fraction_of_peak")
            row = head + [fmt(b["median_ms"]), fmt(b["p90_ms"]), fmt(b["throughput_per_s"], "{:.2f}"),
                          fmt(rec.get("peak_mb"), "{:.0f}") if i == 0 else "",
                          fmt(b.get("speedup_vs_eager"), "{:.2f}x"), fmt(b.get("speedup_vs_onnx_fp32"), "{:.2f}x"),
                          fmt(b.get("gflops"), "{:.2f}"), fmt(b.get("gflops_per_s")),
                          f"{frac * 100:.0f}% {b['peak_precision']}" if frac is not None else "-",
                          _budget_text(rec.get("accuracy")) if i == 0 else ""]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_json(report: Mapping, path: str | os.PathLike) -> Path:
    """Write the report as indented JSON (atomically)."""
    from ffkit.recipes.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    _worker_main()
