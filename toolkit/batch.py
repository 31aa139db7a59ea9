"""Batches of files for ``ffkit swap --target DIR|LIST.txt -o OUTDIR``: plan, skip or redo, run, record.

Its one job is the bookkeeping around swapping many files, whoever does the swapping (this
process, :func:`run_batch`, or Ray actors, :mod:`ffkit.toolkit.ray_batch`):

* :func:`plan_batch` turns a folder (its images and videos, by name) or a list file (one path a
  line, blank lines and ``#`` comments ignored, relative paths relative to the list's folder)
  into one :class:`BatchItem` per input, whose output is ``OUTDIR/<the input's file name>``.
  Two inputs with the same file name, an output that would be its own input, or a list entry
  that is no image or video are refused in one line before any work.
* :func:`split_pending` skips an input whose output exists under its final name: every output
  is written under a hidden temporary name and renamed on success (``runtime/media``: images by
  ``write_image``, videos by ``VideoWriter.close`` after the last frame), so a file under the
  final name is complete. A deleted output is redone; leftover temporary files of a killed run
  (see :func:`remove_partials`) are removed before the input is redone.
* :class:`BatchManifest` is ``OUTDIR/ffkit-batch.json``, rewritten atomically after each input:
  ``{"format", "target", "outputs", "inputs", "counts", "entries": [{"input", "output",
  "status": done|skipped|failed, "frames", "seconds", "error"}]}``, entries in plan order, only
  inputs finished so far (so a killed run's manifest is true of what is on disk).
* :func:`attempt` runs one input and turns any ``Exception`` into a ``failed`` entry, so one bad
  input does not stop the others; :func:`finish` raises :class:`BatchFailed` (exit code 1, one
  line) when any failed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from ffkit.recipes.atomic import atomic_path, temp_name_pattern
from ffkit.recipes.errors import FfkitError
from ffkit.runtime.media import is_image_path, is_video_path, probe_video

__all__ = ["BatchItem", "BatchEntry", "BatchPlan", "BatchManifest", "BatchFailed", "MANIFEST_NAME",
           "is_batch_target", "read_target_list", "plan_batch", "split_pending", "remove_partials",
           "attempt", "run_batch", "finish"]

MANIFEST_NAME = "ffkit-batch.json"
LIST_SUFFIX = ".txt"
Status = Literal["done", "skipped", "failed"]
#: A frame-progress callback: ``tick(frames_done, frame_count)`` (the count is 0 when unknown).
Tick = Callable[[int, int], None]


class BatchFailed(FfkitError):
    """Some inputs of a batch failed (the others were swapped); the manifest says which and why."""

    exit_code = 1


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch: its place in the plan, the input file, the output file."""

    index: int
    input: Path
    output: Path


@dataclass(frozen=True)
class BatchEntry:
    """What happened to one input: a manifest entry. ``frames`` is the frames written (1 for an
    image; for a skipped input, what its existing output holds; None when unknown or failed);
    ``seconds`` the time spent on it in this run; ``error`` the one-line reason of a failure."""

    input: str
    output: str
    status: Status
    frames: Optional[int] = None
    seconds: float = 0.0
    error: Optional[str] = None

    def as_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "status": self.status, "frames": self.frames,
                "seconds": round(float(self.seconds), 3), "error": self.error}


@dataclass(frozen=True)
class BatchPlan:
    """The inputs of a batch, in order, and where their outputs and the manifest go."""

    target: Path
    outdir: Path
    items: tuple[BatchItem, ...]

    @property
    def manifest_path(self) -> Path:
        return self.outdir / MANIFEST_NAME

    @property
    def has_video(self) -> bool:
        return any(is_video_path(item.input) for item in self.items)


def is_batch_target(target: Path) -> bool:
    """True if ``target`` names a batch: an existing folder, or a ``.txt`` list of paths."""
    return Path(target).is_dir() or Path(target).suffix.lower() == LIST_SUFFIX


def _is_media(path: Path) -> bool:
    return is_image_path(path) or is_video_path(path)


def read_target_list(path: Path) -> list[Path]:
    """The paths listed in the text file ``path``: one a line, surrounding blanks stripped,
    blank lines and lines starting with ``#`` ignored, relative paths taken relative to the
    list's folder. A listed path need not exist (it fails alone when run).

    Raises:
        FfkitError: the list is missing or unreadable, lists nothing, or a line is no image or
            video path (message names the list, the line number and the entry).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FfkitError(f"{path}: no such list of targets") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FfkitError(f"{path}: cannot read the list of targets ({e})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        if not _is_media(entry):
            raise FfkitError(f"{path}, line {number}: {line} is not an image or video path (images: .png .jpg "
                             ".jpeg .webp .bmp; videos: .mp4 .mov .mkv .avi .webm .m4v)")
        entries.append(entry if entry.is_absolute() else path.parent / entry)
    if not entries:
        raise FfkitError(f"{path}: the list names no target (one path a line; # starts a comment)")
    return entries


def _folder_inputs(folder: Path) -> list[Path]:
    inputs = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file() and _is_media(p))
    if not inputs:
        raise FfkitError(f"{folder}: no images or videos in the folder (images: .png .jpg .jpeg .webp .bmp; "
                         "videos: .mp4 .mov .mkv .avi .webm .m4v)")
    return inputs


def plan_batch(target: Path, outdir: Path) -> BatchPlan:
    """Plan the batch of ``target`` (a folder or a ``.txt`` list, see :func:`read_target_list`)
    into ``outdir``: one item per input, output ``outdir / input.name``. Nothing is written.

    Raises:
        FfkitError: ``outdir`` is a file; two inputs share a file name (compared ignoring case,
            as a case-insensitive disk would); an output would overwrite its input.
    """
    target, outdir = Path(target), Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise FfkitError(f"{outdir}: -o for a batch needs a folder, and this is a file")
    inputs = _folder_inputs(target) if target.is_dir() else read_target_list(target)
    seen: dict[str, Path] = {}
    for path in inputs:
        other = seen.setdefault(path.name.casefold(), path)
        if other is not path:
            what = "is listed twice" if other.resolve() == path.resolve() else f"and {path} share a file name"
            raise FfkitError(f"{target}: {other} {what}; their outputs in {outdir} would collide "
                             "(one output per input, named as the input)")
    items = tuple(BatchItem(i, path, outdir / path.name) for i, path in enumerate(inputs))
    for item in items:
        if item.output.resolve() == item.input.resolve():
            raise FfkitError(f"{outdir}: the output of {item.input} would overwrite it; choose another -o folder")
    return BatchPlan(target, outdir, items)


def _partial_names(output: Path) -> re.Pattern:
    """Temporary names of ``output`` while it is written: :func:`ffkit.recipes.atomic.temp_name_pattern`
    (every ffkit output), and ``.<stem>.partial-<8 hex><suffix>``, the video writer's own before
    it wrote through ``atomic_path`` (files an older ffkit left behind)."""
    stem, suffix = map(re.escape, (output.stem, output.suffix))
    return re.compile(rf"\.{stem}\.partial-[0-9a-f]{{8}}{suffix}|{temp_name_pattern(output).pattern}")


def remove_partials(output: Path) -> list[Path]:
    """Delete the temporary files an interrupted write of ``output`` left beside it (a killed
    process cannot clean up); returns them."""
    folder, names = Path(output).parent, _partial_names(Path(output))
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if names.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def output_frames(path: Path) -> Optional[int]:
    """Frames in an existing output: 1 for an image, the container's count for a video
    (None if it cannot be read)."""
    if is_image_path(path):
        return 1
    try:
        return probe_video(path).frame_count
    except FfkitError:
        return None


class BatchManifest:
    """``OUTDIR/ffkit-batch.json`` for one run of a plan: :meth:`record` an entry per finished
    input; each call rewrites the file atomically (temporary file + rename), entries in plan order."""

    def __init__(self, plan: BatchPlan):
        self.plan = plan
        self.entries: dict[int, BatchEntry] = {}

    def record(self, item: BatchItem, entry: BatchEntry) -> None:
        """Add (or replace) the entry of ``item`` and write the manifest."""
        self.entries[item.index] = entry
        self.write()

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "skipped": 0, "failed": 0}
        for entry in self.entries.values():
            counts[entry.status] += 1
        return counts

    def as_dict(self) -> dict:
        return {"format": "ffkit-batch/1", "target": str(self.plan.target), "outputs": str(self.plan.outdir),
                "inputs": len(self.plan.items), "counts": self.counts(),
                "entries": [self.entries[i].as_dict() for i in sorted(self.entries)]}

    def write(self) -> None:
        self.plan.outdir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        with atomic_path(self.plan.manifest_path) as tmp:
            tmp.write_text(text)

    def failed(self) -> list[BatchEntry]:
        return [self.entries[i] for i in sorted(self.entries) if self.entries[i].status == "failed"]


def split_pending(plan: BatchPlan, manifest: BatchManifest,
                  on_entry: Optional[Callable[[BatchItem, BatchEntry], None]] = None) -> list[BatchItem]:
    """Record a ``skipped`` entry for every input whose output exists under its final name and
    return the others (in plan order), after removing their leftover temporary files."""
    pending = []
    plan.outdir.mkdir(parents=True, exist_ok=True)
    remove_partials(plan.manifest_path)
    for item in plan.items:
        if item.output.is_file():
            entry = BatchEntry(str(item.input), str(item.output), "skipped", frames=output_frames(item.output))
            manifest.record(item, entry)
            if on_entry is not None:
                on_entry(item, entry)
        else:
            remove_partials(item.output)
            pending.append(item)
    return pending


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, FfkitError) else f"{type(error).__name__}: {text}"


def attempt(item: BatchItem, swap: Callable[[BatchItem], object]) -> BatchEntry:
    """Run ``swap(item)`` (returning something with a ``frames`` count, e.g. a
    :class:`~ffkit.runtime.swap_files.SwapSummary`) and describe it: ``done`` with its frames and
    time, or ``failed`` with the error's one-line message (any ``Exception``; an interrupt,
    ``KeyboardInterrupt`` or SIGTERM's ``Terminated``, propagates)."""
    start = time.perf_counter()
    try:
        summary = swap(item)
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
        return BatchEntry(str(item.input), str(item.output), "failed", seconds=time.perf_counter() - start,
                          error=_one_line(e))
    return BatchEntry(str(item.input), str(item.output), "done", frames=int(getattr(summary, "frames", 1)),
                      seconds=time.perf_counter() - start)


class ConsoleProgress:
    """Per-input progress on a rich console: a frames bar while an input runs (on a terminal),
    then one line per input: ``[k/N] name: done, F frames in S s`` / ``skipped`` / ``failed: why``."""

    def __init__(self, console, total: int):
        self.console = console
        self.total = total
        self.finished = 0

    def line(self, item: BatchItem, entry: BatchEntry) -> None:
        from rich.markup import escape

        self.finished += 1
        if entry.status == "done":
            what = f"done, {entry.frames} frame{'s' if entry.frames != 1 else ''} in {entry.seconds:.1f} s"
        elif entry.status == "skipped":
            what = "skipped, its output exists"
        else:
            what = f"[red]failed[/]: {escape(entry.error or '')}"
        self.console.print(f"[{self.finished}/{self.total}] {escape(item.input.name)}: {what}", highlight=False,
                           soft_wrap=True)

    def run(self, item: BatchItem, swap: Callable[[BatchItem, Tick], object]) -> BatchEntry:
        """``attempt`` of ``swap(item, tick)`` with a frames bar fed by ``tick`` (on a terminal)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if not self.console.is_terminal:  # a log gets the one line per input only
            return attempt(item, lambda it: swap(it, _no_tick))
        with Progress(TextColumn(f"[{self.finished + 1}/{self.total}] swapping {{task.description}}"), BarColumn(),
                      MofNCompleteColumn(), console=self.console, transient=True) as progress:
            task = progress.add_task(item.input.name, total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total or None)

            return attempt(item, lambda it: swap(it, tick))


def run_batch(plan: BatchPlan, swap: Callable[[BatchItem, Tick], object], console=None) -> BatchManifest:
    """Swap every input of ``plan`` in this process, one after the other.

    Args:
        swap: ``swap(item, tick)`` writes ``item.output`` from ``item.input`` atomically and
            returns its summary (``frames``); ``tick(done, total)`` reports frames.
        console: a rich console for per-input progress (None: silent).

    Returns the manifest (written after each input). Inputs whose output exists are skipped.
    """
    manifest = BatchManifest(plan)
    progress = ConsoleProgress(console, len(plan.items)) if console is not None else None
    on_entry = progress.line if progress is not None else None
    for item in split_pending(plan, manifest, on_entry):
        entry = progress.run(item, swap) if progress is not None else attempt(item, lambda it: swap(it, _no_tick))
        manifest.record(item, entry)
        if on_entry is not None:
            on_entry(item, entry)
    return manifest


def _no_tick(done: int, total: int) -> None:
    pass


def finish(manifest: BatchManifest, console=None) -> None:
    """Print the one-line summary; raise :class:`BatchFailed` (exit 1) if any input failed."""
    counts = manifest.counts()
    summary = (f"{len(manifest.plan.items)} inputs: {counts['done']} done, {counts['skipped']} skipped, "
               f"{counts['failed']} failed; outputs in {manifest.plan.outdir}, manifest {manifest.plan.manifest_path}")
    failed: Sequence[BatchEntry] = manifest.failed()
    if failed:
        first = failed[0]
        raise BatchFailed(f"{summary}; first failure: {Path(first.input).name}: {first.error}")
    if console is not None:
        console.print(summary, highlight=False, soft_wrap=True)
