"""Stage 1: rebuild a recipe's architecture, load a published checkpoint, export ONNX, prove parity.

Exporter: the TorchScript-based one (``dynamo=False``), opset 17 by default, as optimum and
Olive choose: its dynamic axes are named ``dim_param`` s that survive onnxsim and ORT, it is the
exporter the reference tolerances were measured with, and the dynamo exporter gave 10x the
error on GFPGAN (3.3e-4 vs 3.7e-5). Parity is checked in onnxruntime against PyTorch at the
recipe's sample shape and at a second shape (batch and, for detectors, H/W), so a dynamic axis
that was frozen by tracing fails the export.
"""

from __future__ import annotations

import importlib
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx

from ffkit.recipes import artifact, onnx_file
from ffkit.recipes.atomic import check_writable
from ffkit.recipes.paths import refuse_overwrite
from ffkit.recipes.version import __version__
from ffkit.runtime.sessions import create_session, run_session
from ffkit.validation.parity import ShapeParity, fp32_parity, shape_sets

DEFAULT_OPSET = 17


@dataclass
class ExportResult:
    path: Path
    recipe: str
    variant: str
    seconds: float
    size_bytes: int
    checks: list[ShapeParity] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max(max(c.max_abs.values()) for c in self.checks)


def _torch_outputs(model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*[torch.from_numpy(v) for v in feeds.values()])
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().numpy() for o in out]


def parity_check(model, session, recipe, dims: Mapping[str, int], out_path: str | Path, seed: int = 0) -> ShapeParity:
    """ONNX Runtime against PyTorch on the recipe's sample inputs drawn at ``dims``, judged by
    :func:`~ffkit.validation.parity.fp32_parity`; a miss is a ParityError naming ``out_path``."""
    feeds = recipe.sample_inputs(seed=seed, **dims)
    expected = dict(zip(recipe.output_names, _torch_outputs(model, feeds)))
    got = run_session(session, feeds)
    return fp32_parity(recipe, [(dims, got, expected)], out_path, what="PyTorch")[0]


def check_finalize_kwargs(recipe, finalize_kwargs: Mapping | None) -> None:
    """Let the recipe's finalize hook ``module:f`` refuse its arguments before any slow work: the
    hook's module may define ``check_f(**finalize_kwargs)`` (inswapper: an emap is required)."""
    if not recipe.finalize:
        return
    module_name, func_name = recipe.finalize.split(":")
    check = getattr(importlib.import_module(module_name), f"check_{func_name}", None)
    if check is not None:
        check(**(finalize_kwargs or {}))


def export_recipe(recipe_name: str, checkpoint: str | Path, output: str | Path, *, opset: int | None = None,
                  options: tuple[str, ...] = (), finalize_kwargs: Mapping | None = None,
                  say: Callable[[str], None] = lambda msg: None) -> ExportResult:
    """Export ``checkpoint`` (a published file for ``recipe_name``) to ONNX at ``output``.

    The artifact is kept only if ONNX Runtime matches PyTorch within the recipe's tolerance at
    the sample shape and at a second shape along every dynamic axis; it is written atomically
    with its recipe, checkpoint sha256, opset, exporter and parity in ``metadata_props``.
    ``options`` names recipe export options (e.g. ``unfused_modulation``); ``finalize_kwargs``
    go to the recipe's artifact hook (e.g. inswapper's ``emap``, or ``no_emap=True``), which may
    refuse them first (:func:`check_finalize_kwargs`: nothing is loaded or written then).
    """
    import torch

    from ffkit.recipes import get_recipe
    from ffkit.recipes.checkpoint import load_checkpoint, sha256_of

    recipe = get_recipe(recipe_name)
    check_finalize_kwargs(recipe, finalize_kwargs)
    output = Path(output)
    check_writable(output)
    refuse_overwrite(output, checkpoint, finalize_kwargs.get("emap") if finalize_kwargs else None)
    opset = opset or recipe.opset
    chosen = [recipe.option(o) for o in options]
    build_kwargs = {k: v for o in chosen for k, v in o.build_kwargs.items()}
    dynamic_batch = recipe.dynamic_batch
    for o in chosen:
        if o.dynamic_batch is not None:
            dynamic_batch = o.dynamic_batch
    variant = "-".join(["fp32", *[o.variant for o in chosen if o.variant]])

    start = time.perf_counter()
    say(f"loading {checkpoint}")
    model = load_checkpoint(recipe, checkpoint, **build_kwargs)
    feeds = recipe.sample_inputs(seed=0)
    say(f"exporting {recipe.name} (TorchScript exporter, opset {opset})")
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(torch.from_numpy(v) for v in feeds.values()), buffer,
                          input_names=recipe.input_names, output_names=recipe.output_names,
                          dynamic_axes=recipe.dynamic_axes(dynamic_batch), opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    del buffer
    if recipe.finalize:
        proto = recipe.finalize_artifact(proto, **(finalize_kwargs or {}))

    say("checking ONNX Runtime against PyTorch")
    session = create_session(proto, name=f"{output} (exported)")
    dynamic = {name for axes in recipe.dynamic_axes(dynamic_batch).values() for name in axes.values()}
    checks = [parity_check(model, session, recipe, dims, output) for dims in shape_sets(recipe, dynamic)]
    del session
    seconds = time.perf_counter() - start
    figures = {"parity": [c.as_dict() for c in checks], "seconds": round(seconds, 2)}
    artifact.set_metadata(
        proto, recipe=recipe.name, variant=variant, version=__version__,
        checkpoint_sha256=sha256_of(checkpoint), opset=str(opset),
        exporter=f"torch.onnx TorchScript (dynamo=False), torch {torch.__version__}",
        parity=figures["parity"], dynamic_batch=str(dynamic_batch).lower())
    artifact.append_history(proto, "export", {"opset": opset, "options": list(options), "dynamic_batch": dynamic_batch,
                                              "checkpoint": Path(checkpoint).name},
                            figures, tools={"torch": torch.__version__})
    onnx_file.save_onnx(proto, output)
    return ExportResult(output, recipe.name, variant, seconds, output.stat().st_size, checks)
