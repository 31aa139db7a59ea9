"""The demo's last step: ``ffkit tune`` on its detector, embedder and swapper.

The same run as ``ffkit tune --models OUTPUT/models --calib OUTPUT/calibration --validate
OUTPUT/input.mp4 --source OUTPUT/source.jpg --frames 2 --candidates fp32,int8,fallback
--time-limit 5 --budget OUTPUT/tune/demo-budget.json`` with the demo's detection settings:
candidates calibrated on the demo's four calibration images, judged on two frames of its video,
timed on this machine. It writes
``OUTPUT/models/set.json`` (which ``ffkit swap --models OUTPUT/models`` then uses) and the report
in ``OUTPUT/tune/``. FP16 is left out to keep the step short (on CPUs without native FP16
arithmetic it is slower than FP32 anyway: ``ffkit tune`` without ``--candidates`` tries it).

The demo's swapper has SYNTHETIC (seed-0) weights, and INT8 of them misses validate's default
swapped-crop budget (30 dB, SSIM 0.95) by a little however many nodes stay in float: measured
on an AVX-512 VNNI Xeon, 28.1 dB (minmax) and 28.9 dB (percentile) alone, 29.9 dB with 16
nodes in float (docs/tune.md). With the default budgets the tuned set would always be FP32 and
the step would show nothing but its reasons, so the demo judges the swapper with
:data:`DEMO_BUDGET` (written to ``OUTPUT/tune/demo-budget.json``, named in the output) and
also prints the tuned set's verdict under the default budgets (from the same figures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ffkit.recipes.atomic import atomic_path

__all__ = ["DEMO_TUNE_MINUTES", "DEMO_TUNE_FRAMES", "DEMO_TUNE_CANDIDATES", "DEMO_BUDGET", "run_demo_tune",
           "default_budget_verdict"]

#: The demo's time limit (minutes: no candidate is started after it), frames judged and candidates.
DEMO_TUNE_MINUTES = 5.0
DEMO_TUNE_FRAMES = 2
DEMO_TUNE_CANDIDATES = ("fp32", "int8", "fallback")
#: The swapped crop's budget the demo judges with (see the module docstring); every other
#: budget is validate's default.
DEMO_BUDGET = {"swapper.psnr": 28.0, "swapper.ssim": 0.9}


def run_demo_tune(models_dir: Path, calib: Path, video: Path, source: Path, *, score_threshold: float,
                  max_faces: int, providers: str, say: Callable[[str], None] = lambda m: None):
    """Tune the demo's models folder (see the module docstring). Returns ``(result, set.json
    path, report folder, machine)``: ``result`` is :func:`~ffkit.toolkit.tune.run.run_tune`'s."""
    from ffkit.runtime.swap_options import swap_settings

    from .bench.machine import machine_info
    from .tune.output import write_outputs
    from .tune.run import TuneRequest, run_tune

    folder = models_dir.parent / "tune"
    folder.mkdir(exist_ok=True)
    budget = folder / "demo-budget.json"
    with atomic_path(budget) as tmp:
        tmp.write_text(json.dumps(DEMO_BUDGET, indent=2) + "\n")
    settings = swap_settings({"score_threshold": score_threshold, "max_faces": max_faces, "providers": providers})
    request = TuneRequest(models_dir, calib, [video], source, settings, budget=budget,
                          time_limit_min=DEMO_TUNE_MINUTES, kinds=DEMO_TUNE_CANDIDATES, frames=DEMO_TUNE_FRAMES)
    result = run_tune(request, on_step=say)
    machine = machine_info()
    set_path, folder = write_outputs(result, settings, models_dir, folder, machine)
    return result, set_path, folder, machine


def default_budget_verdict(result) -> str:
    """validate's verdict of the tuned set under the DEFAULT budgets, from the figures the tune
    run judged it on (nothing is run again)."""
    from ffkit.validation.validate.budgets import load_budgets
    from ffkit.validation.validate.summary import summarise, verdicts

    cells = summarise(result.final.rows, load_budgets(None))
    return verdicts(cells, ["fp32", "candidate"])["candidate"]["text"]
