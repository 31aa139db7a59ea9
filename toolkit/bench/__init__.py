"""``ffkit bench``: latency, throughput, memory and roofline of every variant of a model, side by side.

The pieces, each usable alone:

* :mod:`.machine`: :func:`physical_cores` and :func:`machine_info` (CPU model, ISA flags,
  library versions, load).
* :mod:`.config`: :class:`SessionConfig` (how bench's sessions are made; mapped onto the
  project's one session factory, :func:`ffkit.runtime.sessions.create_session`, by
  :meth:`SessionConfig.settings`) and :class:`BenchSettings` (everything a run depends on).
* :mod:`.discovery`: :func:`discover` turns artifact paths / folders (and an optional
  checkpoint) into :class:`Variant` s labelled from the artifact's own metadata
  (:func:`variant_label`); :func:`count_variant_flops` at the benchmark dims (:func:`bench_dims`).
* :mod:`.harness`: :func:`measure` times one variant in this process (memory probe, warm-up,
  repeated runs per batch), :func:`measure_isolated` in a fresh one (the worker is this
  package's ``__main__``), :func:`peak_probe` measures the FP32 and INT8 GEMM peak.
* :mod:`.report`: :func:`finish` derives the figures from the raw times,
  :func:`summarize_profile` reduces an onnxruntime profile, :func:`markdown_table` and
  :func:`write_json` write the results.
* :mod:`.runner`: :func:`run_bench`, the whole run.
* :mod:`.pipeline`: ``ffkit bench --pipeline``, frames/s of the ``ffkit swap`` chain per stage
  (imported on its own: ``from ffkit.toolkit.bench.pipeline import pipeline_bench``).

Nothing here imports onnxruntime or torch at import time; the worker process imports them
before its memory baseline.
"""

from .config import BenchSettings, SessionConfig
from .discovery import BASELINE, EAGER, LABELS, Variant, bench_dims, count_variant_flops, discover, variant_label
from .harness import LOCAL_PEAK_SHAPE, MemoryProbe, measure, measure_isolated, peak_probe, time_runs, timing_stats
from .machine import machine_info, physical_cores
from .report import finish, markdown_table, summarize_profile, write_json
from .runner import run_bench

__all__ = ["BenchSettings", "SessionConfig", "BASELINE", "EAGER", "LABELS", "Variant", "bench_dims",
           "count_variant_flops", "discover", "variant_label", "LOCAL_PEAK_SHAPE", "MemoryProbe", "measure",
           "measure_isolated", "peak_probe", "time_runs", "timing_stats", "machine_info", "physical_cores",
           "finish", "markdown_table", "summarize_profile", "write_json", "run_bench"]
