"""Stage: onnxoptimizer fusion/elimination passes, then onnxruntime's offline graph optimisation.

Levels (onnxruntime ``GraphOptimizationLevel``):

- ``basic``: constant folding and redundant-node removal; plain ONNX, runs anywhere.
- ``extended`` (default): adds fusions into onnxruntime contrib ops (``com.microsoft``
  FusedConv, FusedGemm...), which every onnxruntime build has; portable across CPUs.
- ``all``: adds layout transforms (NCHWc ``ReorderInput``/``ReorderOutput``) chosen for the CPU
  it ran on; the artifact is bound to that execution provider and CPU, recorded in
  ``ffkit.bound_to`` and in the history.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffkit.recipes import onnx_file
from ffkit.recipes.errors import ArtifactError
from ffkit.runtime.sessions import SessionSettings, create_session

from .graph_passes import rewrite_prelu
from .hardware import cpu_description
from .stage import (
    SampleRuns,
    Stage,
    StageResult,
    check_dynamic_axes,
    check_fp32,
    finish,
    open_input,
    prepare_output,
    started,
    tool_versions,
)

LEVELS = ("basic", "extended", "all")

#: onnxoptimizer passes left out of its fuse/elimination set: ``fuse_qkv`` targets transformer
#: attention blocks these models do not have. (Passes that drop the detached emap are harmless:
#: every stage carries it back.)
_SKIP_PASSES = ("fuse_qkv",)


@dataclass
class OptimizeStage(Stage):
    """Graph optimisation of an FP32 artifact.

    Parameters:
      level: ``basic`` | ``extended`` | ``all`` (see the module docstring); default ``extended``.
      onnxoptimizer_passes: onnxoptimizer passes to run first; ``None`` = its fuse/elimination set.
      provider: the execution provider whose optimisers run (the artifact is bound to it at ``all``).
    """

    name = "optimize"
    level: Literal["basic", "extended", "all"] = "extended"
    onnxoptimizer_passes: tuple[str, ...] | None = None
    provider: str = "CPUExecutionProvider"

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike,
            reference: SampleRuns | None = None, recipe: str | None = None) -> StageResult:
        """Read the FP32 artifact ``in_path``, write the optimised one to ``out_path``."""
        import onnxoptimizer
        import onnxruntime as ort

        if self.level not in LEVELS:
            raise ArtifactError(f"unknown optimisation level {self.level!r} (choose {', '.join(LEVELS)})")
        start = started()
        out_path = prepare_output(out_path, in_path)
        src, recipe = open_input(in_path, self.name, recipe_name=recipe)
        passes = list(self.onnxoptimizer_passes) if self.onnxoptimizer_passes is not None else [
            p for p in onnxoptimizer.get_fuse_and_elimination_passes() if p not in _SKIP_PASSES]
        try:
            mid = onnxoptimizer.optimize(src, passes)
        except Exception as err:  # noqa: BLE001
            raise ArtifactError(f"{in_path}: onnxoptimizer failed ({type(err).__name__}: {str(err)[:200]})") from None
        # onnxruntime's CPU PRelu is slow (IResNet): the bit-exact Max/Min rewrite (graph_passes)
        prelus = rewrite_prelu(mid) if self.provider == "CPUExecutionProvider" else 0

        with tempfile.TemporaryDirectory(dir=out_path.resolve().parent, prefix=".ffkit-optimize-") as tmp:
            target = Path(tmp) / "optimized.onnx"
            settings = SessionSettings(providers=(self.provider,), level=self.level, optimized_model_path=str(target))
            create_session(mid, settings, name=str(in_path))  # writes the optimised graph to target
            del mid
            dst = onnx_file.load_onnx(target)
            check_dynamic_axes(src, dst, recipe, out_path)
            parity, runs = check_fp32(src, target, recipe, out_path, reference=reference, in_path=in_path)
        figures = {"nodes": [len(src.graph.node), len(dst.graph.node)], "parity": parity,
                   "onnxoptimizer_passes": passes, "prelu_rewritten": prelus}
        bound = None
        if self.level == "all":
            bound = {"provider": self.provider, "cpu": cpu_description(), "onnxruntime": ort.__version__}
            figures["bound_to"] = bound
        extra = {"bound_to": bound} if bound else {}
        result = finish(src, dst, out_path, self, start, figures,
                        tool_versions("onnxoptimizer", "onnxruntime"), runs=runs, **extra)
        return result
