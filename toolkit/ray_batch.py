"""A batch of ``ffkit swap`` on Ray Data: one input file per row, an actor pool that swaps them.

The driver (this process) plans the batch, skips inputs whose output exists and writes the
manifest, exactly as the in-process batch (:mod:`ffkit.toolkit.batch`); only the swapping moves:

* one row per pending input (``index``, ``input``, ``output``), one block per row, so each
  input is one actor task;
* ``map_batches(SwapActor, batch_size=1, compute=ActorPoolStrategy(size=N,
  max_tasks_in_flight_per_actor=1))``: each actor loads its sessions once in ``__init__``
  (the files the driver's ``pick_models`` chose in the models folder, a ``SessionPool``,
  ``Pipeline.from_models`` with the driver's
  :class:`~ffkit.runtime.frame_pipeline.SwapOptions`) and gets the identity the driver
  computed (a :class:`~ffkit.runtime.frame_pipeline.SourceFace`, so every actor pastes the very
  same face); a task calls ``runtime.swap_files.swap_file`` on local paths, which streams the
  video's frames through the actor's worker threads and writes the output atomically;
* a crashed worker (the process died: out of memory, a killed node) is restarted
  (``max_restarts``) and its task run again (``max_task_retries``; ``max_retries`` is the same
  knob for Ray tasks, as opposed to actor tasks). A retried task is idempotent: its output is
  written under a temporary name and renamed, so each input ends with exactly one output;
  a swap that *fails* (an unreadable file) is not retried but returned as a ``failed`` row;
* the driver writes the manifest from the rows as they stream back, and afterwards removes the
  temporary files that crashed attempts left.

What a real multi-node cluster needs: every node must see the same paths. The inputs, the
output folder and the models folder are plain paths, so they must be on a shared filesystem
(NFS, a cluster filesystem, a FUSE mount of an object store) mounted at the same place on every
node, and ffkit installed in every worker's environment (the cluster image or a runtime_env).
The atomic rename needs the temporary file and the output in one filesystem, which a shared
filesystem gives; with an object store instead, an actor would download its input to local
disk, swap locally and upload the finished file under its final key (an object store's put is
atomic too). GPUs are given per actor with ``num_gpus`` (one per actor: the sessions of a swap
fit one GPU, and several actors on one GPU would contend for it); see :func:`plan_actors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.frame_pipeline import Pipeline, SourceFace, SwapOptions
from ffkit.runtime.models import ModelSelection, identify
from ffkit.runtime.swap_options import SwapSettings
from ffkit.runtime.swap_files import swap_file

from .batch import (
    BatchEntry,
    BatchItem,
    BatchManifest,
    BatchPlan,
    ConsoleProgress,
    attempt,
    output_frames,
    remove_partials,
    split_pending,
)

__all__ = ["SwapSetup", "ActorShape", "SwapActor", "import_ray", "connect", "plan_actors", "run_ray_batch"]

INSTALL_HINT = "pip install 'ffkit[ray]'"
#: Bounded fault tolerance: a worker that keeps dying fails its input instead of looping forever.
MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3
#: Memory an actor needs besides its models (decoded frames in flight, encoder, interpreter).
ACTOR_OVERHEAD_BYTES = 512 << 20


def import_ray():
    """The ``ray`` module with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise FfkitError(f"--ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(ray, where: str, cores: Optional[int] = None) -> bool:
    """Connect this process to Ray; True if this call did (the caller then shuts it down).

    ``where``: ``local`` starts a one-machine cluster (``num_cpus`` = ``cores`` or the cores this
    process may use, no dashboard); ``auto`` joins the cluster this machine is part of (``ray start``);
    anything else is an address, ``ray://host:10001`` (Ray Client) or ``host:6379``. An already
    connected process (a test, a notebook) is used as it is.

    Raises:
        FfkitError: the cluster cannot be reached (one line naming ``where``).
    """
    if ray.is_initialized():
        return False
    if where == "local":
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        kwargs = {"num_cpus": cores or usable or 1, "include_dashboard": False}
    else:
        kwargs = {"address": where}
    try:
        ray.init(logging_level=logging.WARNING, **kwargs)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, by Ray version
        raise FfkitError(f"--ray {where}: cannot start or reach a Ray cluster ({' '.join(str(e).split())})") from None
    return True


@dataclass(frozen=True)
class SwapSetup:
    """What an actor needs to swap exactly as the driver would (picklable, sent to every actor).

    Attributes:
        models: the models folder (an absolute path; every node must see it there).
        files: the driver's choice, ``{role: (absolute path, recipe name)}`` (``pick_models``
            with every option of the command); each actor re-reads exactly these files.
        settings: every option of the command (:class:`~ffkit.runtime.swap_options.SwapSettings`:
            the swap options, tracking, providers and their options, spin, workers), so an actor
            swaps with exactly what the command was given.
        source: the identity to paste, computed once by the driver.
        reference: normalised ``(512,)`` embedding for ``select="reference"``, or None.
        model_bytes: total size of the chosen files (for the actors' memory reservation).
    """

    models: str
    files: Mapping[str, tuple[str, str]]
    settings: SwapSettings
    source: SourceFace
    reference: Optional[np.ndarray] = None
    model_bytes: int = 0

    @property
    def providers(self) -> str:
        """``--providers`` (resolved on the actor's node, which may have a GPU)."""
        return self.settings.values["providers"]

    @property
    def options(self) -> SwapOptions:
        """The driver's swap options."""
        return self.settings.options

    @classmethod
    def of(cls, models: Path, selection: ModelSelection, **kwargs) -> "SwapSetup":
        """A setup for the driver's ``selection`` of ``models`` (the other fields as keywords)."""
        used = selection.used()
        return cls(models=str(Path(models).resolve()),
                   files={role: (str(ref.path.resolve()), ref.recipe.name) for role, ref in used},
                   model_bytes=sum(ref.path.stat().st_size for _, ref in used), **kwargs)

    def build(self, intra_op_threads: int, workers: int = 1) -> Pipeline:
        """Open the sessions of the driver's files and wire the pipeline, as ``ffkit swap`` does
        (``workers`` frames at once: the spinning default).

        Raises:
            FfkitError: a file is missing on this node (the models folder is not shared).
        """
        refs = {}
        for role, (path, recipe_name) in self.files.items():
            if not Path(path).is_file():
                raise FfkitError(f"{path}: no such file on this node; the models folder {self.models} must be "
                                 "at the same path on every node")
            refs[role] = identify(path, role=role, recipe_name=recipe_name)
        pool = self.settings.session_pool(workers, intra_op_threads)
        return Pipeline.from_models(ModelSelection(**refs), pool, self.options)


@dataclass(frozen=True)
class ActorShape:
    """How the batch is spread: ``actors`` actors, each reserving ``num_cpus`` CPUs, ``num_gpus``
    GPUs and ``memory`` bytes, swapping one video at a time with ``workers`` frame threads over
    sessions of ``intra_op_threads`` threads."""

    actors: int
    num_cpus: int
    num_gpus: int
    workers: int
    intra_op_threads: int
    memory: int = 0


def plan_actors(resources: Mapping[str, float], pending: int, providers: str = "auto",
                model_bytes: int = 0) -> ActorShape:
    """Size the actor pool for ``pending`` inputs on a cluster with ``resources``
    (``ray.cluster_resources()``: ``CPU``, ``GPU``, ``memory`` in bytes).

    * GPUs present and ``providers`` allowing CUDA/TensorRT (``auto`` does): one actor per GPU
      (``num_gpus=1``), each with up to 4 of the CPUs (decoding, encoding, pre/post-processing)
      and as many frame threads, to keep its GPU fed.
    * CPUs only: one actor per CPU, up to one per input: files in parallel scale better than
      frames in parallel (no ordering, each actor's decoder and encoder run alongside), and an
      actor gets the CPUs left over (at most 4 frame threads, the rest as intra-op threads).
    * either way at most as many actors as the cluster's memory holds, each reserving its
      sessions (about twice the model files) plus :data:`ACTOR_OVERHEAD_BYTES`.
    """
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and any(p in providers.lower() for p in ("auto", "cuda", "tensorrt"))
    per_actor = 2 * int(model_bytes) + ACTOR_OVERHEAD_BYTES if model_bytes else 0
    by_memory = max(1, int(resources.get("memory", 0)) // per_actor) if per_actor and resources.get("memory") else None
    actors = min(pending, gpus if use_gpu else cpus, *(() if by_memory is None else (by_memory,)))
    actors = max(1, actors)
    num_cpus = max(1, min(4, cpus // actors)) if use_gpu else max(1, cpus // actors)
    workers = min(4, num_cpus)
    return ActorShape(actors, num_cpus, 1 if use_gpu else 0, workers, max(1, num_cpus // workers), per_actor)


class SwapActor:
    """A Ray Data actor: sessions loaded once, then one input swapped per row.

    ``__call__`` takes a batch ``{"index", "input", "output"}`` (numpy arrays, one row per input)
    and returns ``{"index", "status", "frames" (-1: unknown), "seconds", "error" ('' if none)}``.
    ``swap`` replaces :func:`~ffkit.runtime.swap_files.swap_file` (same signature; tests).
    """

    def __init__(self, setup: SwapSetup, shape: ActorShape, swap: Optional[Callable] = None):
        self.setup = setup
        self.workers = setup.settings.values["workers"] or shape.workers
        self.swap = swap or swap_file
        self.pipeline = setup.build(shape.intra_op_threads, self.workers)

    def _swap(self, item: BatchItem):
        return self.swap(self.pipeline, self.setup.source, item.input, item.output, self.setup.reference,
                         workers=self.workers, tracking=self.setup.settings.tracking)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict:
        rows = {"index": [], "status": [], "frames": [], "seconds": [], "error": []}
        for index, source, target in zip(batch["index"], batch["input"], batch["output"]):
            entry = attempt(BatchItem(int(index), Path(str(source)), Path(str(target))), self._swap)
            rows["index"].append(int(index))
            rows["status"].append(entry.status)
            rows["frames"].append(-1 if entry.frames is None else entry.frames)
            rows["seconds"].append(float(entry.seconds))
            rows["error"].append(entry.error or "")
        return {"index": np.array(rows["index"], np.int64), "status": np.array(rows["status"], object),
                "frames": np.array(rows["frames"], np.int64), "seconds": np.array(rows["seconds"], np.float64),
                "error": np.array(rows["error"], object)}


def _entry(item: BatchItem, row: Mapping) -> BatchEntry:
    frames = int(row["frames"])
    return BatchEntry(str(item.input), str(item.output), str(row["status"]), frames=None if frames < 0 else frames,
                      seconds=float(row["seconds"]), error=str(row["error"]) or None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ray_reason(error: Exception) -> str:
    """One line for an error Ray raised: its type and the last line of the remote traceback
    (where the actor's own exception is), an ffkit error without its class name."""
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    last = re.sub(r"^ffkit\.[\w.]*Error: ", "", lines[-1]) if lines else ""
    return f"Ray gave up ({type(error).__name__}): {last}"[:500]


def _dataset(ray, pending: list[BatchItem]):
    rows = [{"index": item.index, "input": str(item.input), "output": str(item.output)} for item in pending]
    try:
        return ray.data.from_items(rows, override_num_blocks=len(rows))
    except TypeError:  # Ray before 2.10 spells it parallelism
        return ray.data.from_items(rows, parallelism=len(rows))


@contextlib.contextmanager
def _quiet_ray_data(ray):
    """Ray Data's progress bars and INFO lines off while the batch prints its own lines (warnings stay)."""
    context = ray.data.DataContext.get_current()
    loggers = {name: logging.getLogger(name) for name in ("ray.data", "ray.data._internal.progress")}
    saved = context.enable_progress_bars, {name: log.level for name, log in loggers.items()}
    context.enable_progress_bars = False
    loggers["ray.data"].setLevel(logging.WARNING)
    loggers["ray.data._internal.progress"].setLevel(logging.ERROR)  # "Progress bars disabled" is what we asked
    try:
        yield
    finally:
        context.enable_progress_bars = saved[0]
        for name, level in saved[1].items():
            loggers[name].setLevel(level)


def run_ray_batch(plan: BatchPlan, setup: SwapSetup, where: str = "local", *, console=None,
                  shape: Optional[ActorShape] = None, swap: Optional[Callable] = None) -> BatchManifest:
    """Swap the pending inputs of ``plan`` on Ray Data (see the module docstring).

    Args:
        where: ``local``, ``auto`` or an address (:func:`connect`); a process already connected
            to Ray uses that cluster and leaves it running.
        console: a rich console for one line per finished input (None: silent).
        shape: the actor pool (default :func:`plan_actors` from the cluster's resources).
        swap: replaces ``swap_file`` in the actors (tests).

    Returns the manifest, written after each input as its row comes back. If Ray itself gives up
    (a worker that kept crashing), the inputs not reported are recorded ``done`` when their
    output exists under its final name, else ``failed`` with Ray's error.
    """
    ray = import_ray()
    manifest = BatchManifest(plan)
    progress = ConsoleProgress(console, len(plan.items)) if console is not None else None

    def record(item: BatchItem, entry: BatchEntry) -> None:
        manifest.record(item, entry)
        if progress is not None:
            progress.line(item, entry)

    pending = split_pending(plan, manifest, record)
    if not pending:
        return manifest
    started = connect(ray, where)
    try:
        shape = shape or plan_actors(ray.cluster_resources(), len(pending), setup.providers, setup.model_bytes)
        if console is not None:
            console.print(f"Ray: {len(pending)} inputs on {shape.actors} actor{'s' if shape.actors > 1 else ''} x "
                          f"{shape.num_cpus} CPU{f' + {shape.num_gpus} GPU' if shape.num_gpus else ''}",
                          highlight=False)
        by_index = {item.index: item for item in pending}
        remote = {"num_cpus": shape.num_cpus, "max_restarts": MAX_RESTARTS, "max_task_retries": MAX_TASK_RETRIES,
                  **({"num_gpus": shape.num_gpus} if shape.num_gpus else {}),
                  **({"memory": shape.memory} if shape.memory else {})}
        with warnings.catch_warnings():  # Ray 2.5x deprecates **ray_remote_args, the only way to pass max_restarts
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            results = _dataset(ray, pending).map_batches(
                SwapActor, fn_constructor_kwargs={"setup": setup, "shape": shape, "swap": swap}, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=shape.actors, max_tasks_in_flight_per_actor=1), **remote)
        try:
            with _quiet_ray_data(ray):
                for row in results.iter_rows():
                    item = by_index.pop(int(row["index"]))
                    record(item, _entry(item, row))
        except Exception as e:  # noqa: BLE001 - Ray gave up (RayTaskError, ActorDiedError, ...)
            reason = _ray_reason(e)
            for item in sorted(by_index.values(), key=lambda it: it.index):
                done = item.output.is_file()
                record(item, BatchEntry(str(item.input), str(item.output), "done" if done else "failed",
                                        frames=output_frames(item.output) if done else None,
                                        error=None if done else reason))
            return manifest
        for item in pending:  # temporary files of attempts that crashed and were retried
            with contextlib.suppress(OSError):
                remove_partials(item.output)
    finally:
        if started:
            ray.shutdown()
    return manifest
