"""``ffkit bench --pipeline``: the per-stage instrumentation on stand-in stages, and its one-line errors."""

from __future__ import annotations

import time
from collections import defaultdict
from types import SimpleNamespace

from typer.testing import CliRunner

from ffkit.toolkit.bench.pipeline import STAGES, instrument, pipeline_table
from ffkit.toolkit.cli import app


class _Session:
    def run(self, names, feeds):
        time.sleep(0.01)
        return [None]

    def get_inputs(self):
        return ["x"]


def test_instrument_splits_model_time_from_paste():
    swapper = SimpleNamespace(session=_Session())

    def swap_into(frame, lm, latent):  # model run + 20 ms of warping / pasting
        swapper.session.run(["y"], {})
        time.sleep(0.02)
        return (0, 0, 1, 1)

    swapper.swap_into = swap_into
    pipe = SimpleNamespace(detector=SimpleNamespace(detect=lambda f, p=None: time.sleep(0.005)),
                           embedder=SimpleNamespace(embed=lambda f, lm: None), swapper=swapper, enhancer=None)
    clock = defaultdict(float)
    instrument(pipe, clock)
    pipe.detector.detect(None)
    pipe.swapper.swap_into(None, None, None)
    assert pipe.swapper.session.get_inputs() == ["x"]  # the proxy delegates
    assert 0.01 <= clock["swap"] < clock["_swap_into"] and clock["_swap_into"] - clock["swap"] >= 0.02
    assert clock["detect"] >= 0.005 and clock["embed"] == 0.0


def test_pipeline_table_marks_bottleneck():
    stages = {k: {"seconds": 0.1, "ms_per_frame": 10.0, "share": 0.05} for k in STAGES}
    stages["swap"] = {"seconds": 1.5, "ms_per_frame": 150.0, "share": 0.75}
    report = {"video": {"width": 64, "height": 48}, "frames": 10, "faces_swapped": 10, "frames_per_s": 5.0,
              "threads": 2, "stages": stages, "bottleneck": "swap"}
    assert pipeline_table(report).row_count == len(STAGES)


def test_pipeline_needs_models_and_video(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "--pipeline"])
    assert result.exit_code == 2 and "--models" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["bench", "--pipeline", "--models", str(tmp_path), "--target", str(tmp_path / "a.png")])
    assert result.exit_code == 2 and "video" in result.output
