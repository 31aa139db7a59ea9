"""Writes that a careless or hostile run cannot spoil: modes, links, inputs, SIGTERM.

(The rest of the reliability list is open work; these are the cases fixed so far.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, ffkit


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_outputs_get_the_umask_mode_not_0600(artifacts, tmp_path, umask_027):
    out = tmp_path / "m.onnx"
    result = ffkit("simplify", artifacts.export("retinaface_mobilenet0.25").path, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask_027 == 0o640


def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(artifacts, tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "model.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    result = ffkit("simplify", artifacts.export("retinaface_mobilenet0.25").path, "-o", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.stat().st_size > 100_000                      # the artifact, written where the link points
    assert sorted(p.name for p in real_dir.iterdir()) == ["model.onnx"]   # no temp file left beside it


def test_export_onto_its_own_checkpoint_is_refused(artifacts, tmp_path):
    ckpt = tmp_path / "mobilenet0.25_Final.pth"
    ckpt.write_bytes(artifacts.checkpoint("retinaface_mobilenet0.25").read_bytes())
    before = ckpt.read_bytes()
    alias = tmp_path / "alias.onnx"
    alias.symlink_to(ckpt)
    for out in (ckpt, alias):
        result = ffkit("export", "retinaface_mobilenet0.25", ckpt, "-o", out)
        assert_one_line_error(result, "would overwrite the input", str(ckpt))
    assert ckpt.read_bytes() == before


def test_sigterm_during_an_atomic_write_removes_the_temp_file(tmp_path):
    """The CLI's SIGTERM handler turns the signal into an exception in the main thread, so an
    atomic write interrupted half-way removes its temp file and leaves the old file untouched."""
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    script = f"""
import os, signal
from ffkit.toolkit.signals import Terminated, _on_sigterm
from ffkit.recipes.atomic import atomic_path
signal.signal(signal.SIGTERM, _on_sigterm)
try:
    with atomic_path({str(target)!r}) as tmp:
        tmp.write_bytes(b"half of a new mo")
        os.kill(os.getpid(), signal.SIGTERM)
        tmp.write_bytes(b"never reached")
except Terminated:
    raise SystemExit(143)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_sigterm_mid_export_exits_143_and_writes_nothing(artifacts, tmp_path):
    """``ffkit export`` terminated while it runs: exit 143, nothing under the final name, no
    temp file beside it."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ckpt = artifacts.checkpoint("arcface_iresnet18")
    proc = subprocess.Popen([sys.executable, "-m", "ffkit.toolkit", "export", "arcface_iresnet18", str(ckpt),
                             "-o", str(out_dir / "m.onnx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        maps = Path(f"/proc/{proc.pid}/maps")
        while proc.poll() is None and time.monotonic() < deadline and "libtorch" not in maps.read_text():
            time.sleep(0.2)               # until the export has started (torch is loaded only for it)
        time.sleep(0.5)
        assert proc.poll() is None, "export ended before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 143, proc.stderr.read().decode()
    assert list(out_dir.iterdir()) == []


def test_an_in_memory_emap_is_not_taken_for_a_file(tmp_path):
    """``export_recipe(..., finalize_kwargs={"emap": array})`` (the demo's call): the overwrite
    check looks at paths only."""
    import numpy as np

    from ffkit.recipes.paths import refuse_overwrite

    refuse_overwrite(tmp_path / "out.onnx", tmp_path / "in.pth", np.eye(512, dtype=np.float32), None)
