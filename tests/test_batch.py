"""``ffkit swap --target DIR|LIST.txt -o OUTDIR``: a batch of files in this process.

Four short clips generated here (a pan over the astronaut photo, 3 to 6 frames, 160x128) are
swapped one by one with ``ffkit swap`` (the ground truth of a batch: the single-file command),
then as a batch; every batch output must decode to exactly the frames of the single swap.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import ffkit as invoke
from runtime_helpers import ASTRONAUT, FAST_ARGS, models_dir

from ffkit.runtime import iter_frames, read_image
from ffkit.toolkit.batch import MANIFEST_NAME, plan_batch, read_target_list, remove_partials
from ffkit.validation.synthetic_media import make_test_video, pan_frames

FRAMES = {"clip0.mp4": 3, "clip1.mp4": 5, "clip2.mp4": 4, "clip3.mp4": 6}


def make_source(root: Path) -> Path:
    """The source face: the astronaut photo mirrored."""
    import cv2

    path = root / "face.png"
    cv2.imwrite(str(path), read_image(ASTRONAUT)[:, ::-1])
    return path


def make_clips(root: Path) -> Path:
    """A folder of the four clips (and a text file that is not an input)."""
    photo = read_image(ASTRONAUT)
    for name, n in FRAMES.items():
        make_test_video(root / name, frames=n, size=(160, 128), fps=Fraction(25), frame_fn=pan_frames(photo, n))
    (root / "notes.md").write_text("not a video\n")
    return root


def swap_args(source, folder):
    return ["--source", source, "--models", folder, "--workers", 2, *FAST_ARGS]


def frames_of(path) -> list[np.ndarray]:
    return list(iter_frames(path))


def single_swaps(clips: Path, source: Path, folder: Path, out: Path) -> dict[str, list[np.ndarray]]:
    """Decoded frames of ``ffkit swap --target clipK.mp4 -o out.mp4``, one run per clip."""
    frames = {}
    for name, count in FRAMES.items():
        result = invoke("swap", "--target", clips / name, "-o", out / name, *swap_args(source, folder))
        assert result.exit_code == 0, result.output
        frames[name] = frames_of(out / name)
        assert len(frames[name]) == count
    # the swap changed something: otherwise "equal to the single swap" would only say "equal to the input"
    changed = [not all(np.array_equal(a, b) for a, b in zip(frames[n], frames_of(clips / n))) for n in FRAMES]
    assert any(changed)
    return frames


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    return models_dir(artifacts, tmp_path_factory.mktemp("batch") / "models")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def singles(clips, source, folder, tmp_path_factory) -> dict[str, list[np.ndarray]]:
    return single_swaps(clips, source, folder, tmp_path_factory.mktemp("singles"))


def manifest(outdir: Path) -> dict:
    return json.loads((outdir / MANIFEST_NAME).read_text())


def statuses(outdir: Path) -> dict[str, str]:
    return {Path(e["input"]).name: e["status"] for e in manifest(outdir)["entries"]}


def assert_equal_to_singles(outdir: Path, singles, names=tuple(FRAMES)):
    for name in names:
        got = frames_of(outdir / name)
        assert len(got) == FRAMES[name], name
        for k, (a, b) in enumerate(zip(got, singles[name])):
            assert np.array_equal(a, b), (name, k, int(np.abs(a.astype(int) - b).max()))


def hidden(outdir: Path) -> list[str]:
    return sorted(p.name for p in outdir.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- planning

def test_list_file_rules(tmp_path):
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "sub" / "targets.txt"
    absolute = tmp_path / "elsewhere" / "b.png"
    listing.write_text(f"# the clips\n\n  a.mp4  \nclips/c.MOV\n{absolute}\n   # indented comment\n")
    assert read_target_list(listing) == [tmp_path / "sub" / "a.mp4", tmp_path / "sub" / "clips" / "c.MOV", absolute]
    plan = plan_batch(listing, tmp_path / "out")
    assert [(i.index, i.output) for i in plan.items] == [(0, tmp_path / "out" / "a.mp4"),
                                                        (1, tmp_path / "out" / "c.MOV"),
                                                        (2, tmp_path / "out" / "b.png")]
    assert plan.has_video and not (tmp_path / "out").exists()  # planning writes nothing


def test_remove_partials_removes_only_the_temporaries_of_that_output(tmp_path):
    mine = [".clip.partial-0a1b2c3d.mp4", ".clip.mp4.k2j_h4g5.part", ".clip.mp4.k2j_h4g5.part.mp4"]
    others = ["clip.mp4", ".clip2.partial-0a1b2c3d.mp4", ".clip.partial-0a1b2c3d.mkv", "clip.partial-0a1b2c3d.mp4",
              ".clip.mp4.k2j_h4g5.part.mkv", ".clip.partial-0A1B2C3D.mp4"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in remove_partials(tmp_path / "clip.mp4")) == sorted(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_duplicate_names_refused_before_any_work(tmp_path, source, folder):
    for sub in ("day1", "day2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.mp4").write_bytes(b"never read")
    listing = tmp_path / "list.txt"
    listing.write_text("day1/a.mp4\nday2/a.mp4\n")
    result = invoke("swap", "--target", listing, "-o", tmp_path / "out", *swap_args(source, folder))
    assert_one_line_error(result, "day1/a.mp4 and", "day2/a.mp4 share a file name", "would collide")
    listing.write_text("day1/a.mp4\n./day1/a.mp4\n")
    result = invoke("swap", "--target", listing, "-o", tmp_path / "out", *swap_args(source, folder))
    assert_one_line_error(result, "is listed twice")
    assert not (tmp_path / "out").exists()


def test_output_folder_equal_to_input_folder_refused(clips, source, folder):
    result = invoke("swap", "--target", clips, "-o", clips, *swap_args(source, folder))
    assert_one_line_error(result, "would overwrite it; choose another -o folder")


def test_list_entry_that_is_no_media_refused(tmp_path, source, folder):
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4\nreadme.md\n")
    result = invoke("swap", "--target", listing, "-o", tmp_path / "out", *swap_args(source, folder))
    assert_one_line_error(result, "list.txt, line 2: readme.md is not an image or video path")


# ---------------------------------------------------------------- running

def test_batch_equals_single_swaps_rerun_skips_deleted_redone(clips, singles, source, folder, tmp_path):
    outdir = tmp_path / "out"
    result = invoke("swap", "--target", clips, "-o", outdir, *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in outdir.iterdir()) == sorted([*FRAMES, MANIFEST_NAME])  # notes.md is no input
    assert_equal_to_singles(outdir, singles)
    report = manifest(outdir)
    assert report["inputs"] == 4 and report["counts"] == {"done": 4, "skipped": 0, "failed": 0}
    assert [(Path(e["input"]), Path(e["output"]), e["frames"], e["error"]) for e in report["entries"]] == [
        (clips / n, outdir / n, FRAMES[n], None) for n in sorted(FRAMES)]
    assert all(e["seconds"] > 0 for e in report["entries"])
    for k, name in enumerate(sorted(FRAMES), start=1):  # progress, one line per input
        assert f"[{k}/4] {name}: done, {FRAMES[name]} frames" in result.output
    assert "4 inputs: 4 done, 0 skipped, 0 failed" in result.output

    stamps = {n: (outdir / n).stat().st_mtime_ns for n in FRAMES}
    result = invoke("swap", "--target", clips, "-o", outdir, *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert statuses(outdir) == dict.fromkeys(FRAMES, "skipped")
    assert [e["frames"] for e in manifest(outdir)["entries"]] == [FRAMES[n] for n in sorted(FRAMES)]
    assert {n: (outdir / n).stat().st_mtime_ns for n in FRAMES} == stamps  # nothing rewritten

    (outdir / "clip2.mp4").unlink()
    result = invoke("swap", "--target", clips, "-o", outdir, *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert statuses(outdir) == {"clip0.mp4": "skipped", "clip1.mp4": "skipped", "clip2.mp4": "done",
                                "clip3.mp4": "skipped"}
    assert {n: (outdir / n).stat().st_mtime_ns for n in FRAMES if n != "clip2.mp4"} == {
        n: s for n, s in stamps.items() if n != "clip2.mp4"}
    assert_equal_to_singles(outdir, singles, ["clip2.mp4"])


def test_failing_inputs_recorded_others_done(clips, singles, source, folder, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 200)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two good clips, one unreadable, one missing\n{clips / 'clip0.mp4'}\nbroken.mp4\n"
                       f"missing.mp4\n{clips / 'clip1.mp4'}\n")
    outdir = tmp_path / "out"
    result = invoke("swap", "--target", listing, "-o", outdir, *swap_args(source, folder))
    assert result.exit_code == 1, result.output
    assert statuses(outdir) == {"clip0.mp4": "done", "broken.mp4": "failed", "missing.mp4": "failed",
                                "clip1.mp4": "done"}
    entries = {Path(e["input"]).name: e for e in manifest(outdir)["entries"]}
    assert "broken.mp4" in entries["broken.mp4"]["error"] and entries["broken.mp4"]["frames"] is None
    assert "missing.mp4" in entries["missing.mp4"]["error"]
    assert_equal_to_singles(outdir, singles, ["clip0.mp4", "clip1.mp4"])
    assert sorted(p.name for p in outdir.iterdir()) == ["clip0.mp4", "clip1.mp4", MANIFEST_NAME]  # no partials
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert last.startswith("error: 4 inputs: 2 done, 0 skipped, 2 failed") and "broken.mp4" in last


# ---------------------------------------------------------------- a killed run

def _run_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ffkit.toolkit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_only_complete_outputs_and_next_run_completes(sig, clips, singles, source, folder,
                                                                         tmp_path):
    outdir = tmp_path / "out"
    proc = _run_cli("swap", "--target", clips, "-o", outdir, *swap_args(source, folder))
    first = outdir / min(FRAMES)
    deadline = time.monotonic() + 120
    try:
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert first.exists(), proc.communicate()[0] if proc.poll() is not None else "no output in 120 s"
        proc.send_signal(sig)
        log = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 143), log
    present = [n for n in FRAMES if (outdir / n).exists()]
    assert 1 <= len(present) < 4, (present, log)  # killed mid-way
    assert_equal_to_singles(outdir, singles, present)  # what is under a final name is complete
    if sig == signal.SIGTERM:  # a clean stop removes its outputs' temporary files; a stop landing between
        # recipes.atomic's mkstemp and its clean-up guard can leave the manifest's (rare), which the next run removes
        assert [n for n in hidden(outdir) if not n.startswith(f".{MANIFEST_NAME}.")] == [], log
    if (outdir / MANIFEST_NAME).exists():  # written after each input: true of what is on disk
        recorded = statuses(outdir)
        assert set(recorded.values()) == {"done"} and set(recorded) <= set(present)

    result = invoke("swap", "--target", clips, "-o", outdir, *swap_args(source, folder))
    assert result.exit_code == 0, result.output
    assert statuses(outdir) == {n: "skipped" if n in present else "done" for n in FRAMES}
    assert_equal_to_singles(outdir, singles)
    assert hidden(outdir) == []  # a killed run's temporary files are removed before its input is redone
