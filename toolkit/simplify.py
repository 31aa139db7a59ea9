"""Stage: onnxsim, with the recipe's dynamic axes kept.

onnxsim (>= 0.4.36) simplifies a model with symbolic input dims natively, so no input shape is
overwritten (that would freeze the dynamic axes). onnxsim's own random-input check is off by
default (``onnxsim_check=0``); this stage always checks the result against its input itself,
in onnxruntime, at the recipe's sample shape and at a second shape along every dynamic axis,
and that every named dynamic axis is still named.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from ffkit.recipes.errors import ArtifactError

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


@dataclass
class SimplifyStage(Stage):
    """onnxsim constant folding and graph simplification of an FP32 artifact.

    Parameters:
      skip_fuse_bn: keep BatchNorm nodes separate (onnxsim folds them into the convs by default).
      skipped_optimizers: onnxoptimizer pass names onnxsim must not run.
      onnxsim_check: number of onnxsim's own random-input checks (0: off; ffkit checks anyway).
    """

    name = "simplify"
    skip_fuse_bn: bool = False
    skipped_optimizers: tuple[str, ...] = ()
    onnxsim_check: int = 0

    def run(self, in_path: str | os.PathLike, out_path: str | os.PathLike,
            reference: SampleRuns | None = None, recipe: str | None = None) -> StageResult:
        """Read the FP32 artifact ``in_path``, write the simplified one to ``out_path``."""
        import onnxsim

        start = started()
        out_path = prepare_output(out_path, in_path)
        src, recipe = open_input(in_path, self.name, recipe_name=recipe)
        test_shapes = {t.name: list(t.concrete_shape(recipe.sample_dims)) for t in recipe.inputs}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                dst, ok = onnxsim.simplify(
                    src, check_n=self.onnxsim_check, skip_fuse_bn=self.skip_fuse_bn,
                    skipped_optimizers=list(self.skipped_optimizers) or None,
                    test_input_shapes=test_shapes if self.onnxsim_check else None, certify=False)
            except Exception as err:  # noqa: BLE001 - onnxsim raises assorted types
                first = (str(err).splitlines() or [""])[0][:200]
                raise ArtifactError(f"{in_path}: onnxsim failed ({type(err).__name__}: {first})") from None
        if not ok:
            raise ArtifactError(f"{out_path}: not written, onnxsim's own check failed on {in_path}")
        check_dynamic_axes(src, dst, recipe, out_path)
        parity, runs = check_fp32(src, dst, recipe, out_path, reference=reference, in_path=in_path)
        figures = {"nodes": [len(src.graph.node), len(dst.graph.node)], "parity": parity}
        return finish(src, dst, out_path, self, start, figures, tool_versions("onnxsim", "onnxruntime"), runs=runs)
