"""``ffkit swap --target DIR -o OUTDIR --ray ...``: the batch of ``test_batch.py`` on a local Ray cluster.

The cluster is started by the test (2 CPUs, no dashboard) and shut down by a finaliser; the
outputs must decode to exactly the frames of the single-file ``ffkit swap`` of each clip.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import ffkit as invoke
from runtime_helpers import models_dir
from test_batch import (
    FRAMES,
    assert_equal_to_singles,
    hidden,
    make_clips,
    make_source,
    manifest,
    single_swaps,
    statuses,
    swap_args,
)

from ffkit.runtime import Pipeline, SessionPool, pick_models, read_image, resolve_providers
from ffkit.runtime.swap_options import swap_settings
from ffkit.runtime.swap_files import swap_file
from ffkit.toolkit.batch import MANIFEST_NAME, plan_batch
from ffkit.toolkit.ray_batch import ACTOR_OVERHEAD_BYTES, ActorShape, SwapSetup, plan_actors, run_ray_batch

try:
    import ray
    import ray.data
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray[data] is not installed (pip install 'ffkit[ray]')")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings


@contextmanager
def deadline(seconds: int, what: str):
    """Fail (not hang) if the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    return models_dir(artifacts, tmp_path_factory.mktemp("ray") / "models")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def singles(clips, source, folder, tmp_path_factory):
    return single_swaps(clips, source, folder, tmp_path_factory.mktemp("singles"))


@pytest.fixture(scope="module")
def cluster(request):
    request.addfinalizer(ray.shutdown)  # also after a start that timed out half-way
    with deadline(120, "starting a local Ray cluster"):
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    return ray


# ---------------------------------------------------------------- no Ray needed

def test_plan_actors_from_cluster_resources():
    gib = 1 << 30
    # CPUs only: one actor per CPU up to one per input, the leftover CPUs as threads
    assert plan_actors({"CPU": 2.0}, pending=4, providers="auto") == ActorShape(2, 1, 0, 1, 1)
    assert plan_actors({"CPU": 16.0}, pending=4, providers="cpu") == ActorShape(4, 4, 0, 4, 1)
    assert plan_actors({"CPU": 16.0}, pending=2) == ActorShape(2, 8, 0, 4, 2)
    # GPUs: one actor per GPU with up to 4 CPUs each; --providers cpu leaves them alone
    assert plan_actors({"CPU": 32.0, "GPU": 4.0}, pending=10, providers="auto") == ActorShape(4, 4, 1, 4, 1)
    assert plan_actors({"CPU": 32.0, "GPU": 4.0}, pending=10, providers="cpu").num_gpus == 0
    # memory: 16 GiB hold 5 actors of a 1 GiB model set (2 GiB sessions + overhead each)
    shape = plan_actors({"CPU": 16.0, "memory": 16.0 * gib}, pending=16, model_bytes=gib)
    assert shape.actors == 16 * gib // (2 * gib + ACTOR_OVERHEAD_BYTES) == 6
    assert shape.memory == 2 * gib + ACTOR_OVERHEAD_BYTES


def test_ray_missing_says_how_to_install(clips, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    monkeypatch.delitem(sys.modules, "ray.data", raising=False)
    result = invoke("swap", "--target", clips, "-o", tmp_path / "out", "--source", tmp_path / "face.png",
                    "--models", tmp_path / "models", "--ray", "local")
    assert_one_line_error(result, "--ray needs Ray Data", "pip install 'ffkit[ray]'")
    assert not (tmp_path / "out").exists()


def test_ray_needs_a_batch(tmp_path):
    result = invoke("swap", "--target", tmp_path / "one.mp4", "-o", tmp_path / "o.mp4", "--source",
                    tmp_path / "face.png", "--models", tmp_path, "--ray", "local")
    assert_one_line_error(result, "--ray runs a batch", "one.mp4")


# ---------------------------------------------------------------- on a local cluster

@needs_ray
def test_ray_batch_equals_single_swaps_and_rerun_skips(cluster, clips, singles, source, folder, tmp_path):
    outdir = tmp_path / "out"
    with deadline(240, "the Ray batch"):
        result = invoke("swap", "--target", clips, "-o", outdir, "--ray", "local", *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert "Ray: 4 inputs on 2 actors x 1 CPU" in result.output
    assert sorted(p.name for p in outdir.iterdir()) == sorted([*FRAMES, MANIFEST_NAME])
    assert_equal_to_singles(outdir, singles)
    assert [(Path(e["input"]).name, e["status"], e["frames"]) for e in manifest(outdir)["entries"]] == [
        (n, "done", FRAMES[n]) for n in sorted(FRAMES)]
    assert ray.is_initialized()  # a cluster the command did not start is left running

    stamps = {n: (outdir / n).stat().st_mtime_ns for n in FRAMES}
    result = invoke("swap", "--target", clips, "-o", outdir, "--ray", "local", *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert statuses(outdir) == dict.fromkeys(FRAMES, "skipped")
    assert {n: (outdir / n).stat().st_mtime_ns for n in FRAMES} == stamps


def crash_once_mid_video(marker: Path, victim: str):
    """A ``swap_file`` whose worker process dies (``os._exit``) after writing 2 frames of
    ``victim``, the first time only (``marker`` records that it happened)."""
    def swap(pipeline, source, target, output, reference=None, *, workers=2, progress=None, tracking=None):
        def tick(done, total):
            if Path(target).name == victim and done == 2 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)

        return swap_file(pipeline, source, target, output, reference, workers=workers, progress=tick,
                         tracking=tracking)

    return swap


@pytest.fixture(scope="module")
def setup(folder, source) -> SwapSetup:
    """What the CLI would send the actors for ``swap_args``: the models, the options, the source face."""
    settings = swap_settings({"providers": "cpu", "max_side": 640, "score_threshold": 0.8, "nms_threshold": 0.4,
                              "max_faces": 2})
    chosen = pick_models(folder)
    pipeline = Pipeline.from_models(chosen, SessionPool(resolve_providers("cpu")), settings.options)
    return SwapSetup.of(folder, chosen, settings=settings,
                        source=pipeline.prepare_source(read_image(source), str(source)))


@needs_ray
@pytest.mark.slow
def test_crashed_worker_is_retried_and_leaves_one_output(cluster, setup, clips, singles, tmp_path):
    outdir = tmp_path / "out"
    marker = tmp_path / "crashed"
    with deadline(300, "the Ray batch with a crash"):
        report = run_ray_batch(plan_batch(clips, outdir), setup, "local",
                               swap=crash_once_mid_video(marker, "clip3.mp4"))
    assert marker.exists()  # a worker really died mid-video
    assert report.counts() == {"done": 4, "skipped": 0, "failed": 0}
    assert statuses(outdir) == dict.fromkeys(FRAMES, "done")
    assert sorted(p.name for p in outdir.iterdir()) == sorted([*FRAMES, MANIFEST_NAME])  # one output per input
    assert hidden(outdir) == []  # the crashed attempt's temporary file was removed
    assert_equal_to_singles(outdir, singles)


@needs_ray
def test_actors_that_cannot_start_fail_every_input_in_one_line(cluster, setup, clips, tmp_path):
    missing = str(tmp_path / "elsewhere.onnx")  # a models folder not shared with the workers
    wrong = dataclasses.replace(setup, files={**setup.files, "detector": (missing, "retinaface_mobilenet0.25")})
    outdir = tmp_path / "out"
    with deadline(300, "the Ray batch whose actors fail"):
        report = run_ray_batch(plan_batch(clips, outdir), wrong, "local")
    entries = manifest(outdir)["entries"]
    assert report.counts()["failed"] == 4 and [e["status"] for e in entries] == ["failed"] * 4
    for entry in entries:
        assert entry["error"].startswith("Ray gave up (") and "must be at the same path on every node" in \
            entry["error"] and "\n" not in entry["error"] and "elsewhere.onnx" in entry["error"]
    assert sorted(p.name for p in outdir.iterdir()) == [MANIFEST_NAME]
