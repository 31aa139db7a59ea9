"""Bad input to ``ffkit export``: one-line error naming the file and the problem, no file left."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from ffkit.toolkit.cli import app

runner = CliRunner()


class RunsCode:
    """A pickle payload that would execute a shell command when unpickled."""

    def __reduce__(self):
        return (os.system, ("echo owned",))


def export(*args):
    result = runner.invoke(app, ["export", *map(str, args)])
    return result.exit_code, result.output.strip()


def assert_one_line_error(code, output, *fragments):
    assert code != 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:") and "Traceback" not in output
    joined = " ".join(output.split())
    for fragment in fragments:
        assert fragment in joined, joined


def test_unknown_recipe_suggests_closest(tmp_path, artifacts):
    out = tmp_path / "m.onnx"
    code, output = export("retinaface_mobilenet", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(code, output, "unknown recipe 'retinaface_mobilenet'", "did you mean 'retinaface_mobilenet0.25'")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_another_recipe_names_keys(tmp_path, artifacts):
    out = tmp_path / "m.onnx"
    ckpt = artifacts.checkpoint("arcface_iresnet18")
    code, output = export("retinaface_mobilenet0.25", ckpt, "-o", out)
    assert_one_line_error(code, output, str(ckpt.name), "not a retinaface_mobilenet0.25 checkpoint",
                          "300 missing keys (first: body.stage1.0.0.weight", "187 unexpected keys (first: conv1.weight")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_is_named(tmp_path, artifacts):
    sd = torch.load(artifacts.checkpoint("arcface_iresnet18"), weights_only=True)
    sd["fc.weight"] = sd["fc.weight"][:256]
    ckpt = tmp_path / "narrow.pth"
    torch.save(sd, ckpt)
    code, output = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(code, output, "narrow.pth", "1 shape mismatches (first: fc.weight (256, 25088) vs (512, 25088)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.pth"]


def test_truncated_checkpoint(tmp_path, artifacts):
    ckpt = tmp_path / "cut.pth"
    ckpt.write_bytes(artifacts.checkpoint("retinaface_mobilenet0.25").read_bytes()[:5000])
    code, output = export("retinaface_mobilenet0.25", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(code, output, "cut.pth", "truncated or not a PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pth"]


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b"", b"PK\x03\x04garbage"])
def test_non_checkpoint_file(tmp_path, content):
    ckpt = tmp_path / "notes.pth"
    ckpt.write_bytes(content)
    code, output = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(code, output, "notes.pth", "truncated or not a PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pth"]


def test_missing_checkpoint(tmp_path):
    code, output = export("arcface_iresnet18", tmp_path / "nowhere.pth", "-o", tmp_path / "m.onnx")
    assert_one_line_error(code, output, "nowhere.pth: no such file")


def test_pickle_that_runs_code_is_refused(tmp_path, capfd):
    ckpt = tmp_path / "evil.pth"
    torch.save({"conv1.weight": RunsCode()}, ckpt)
    code, output = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(code, output, "evil.pth", "refused", "weights_only=True", "posix.system")
    assert "owned" not in capfd.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]


def test_output_folder_missing(tmp_path, artifacts):
    out = tmp_path / "no" / "such" / "dir" / "m.onnx"
    code, output = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(code, output, "cannot write output", "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_output_folder_read_only(tmp_path, artifacts):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, output = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", folder / "m.onnx")
        assert_one_line_error(code, output, "cannot write output", "not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_output_is_a_folder(tmp_path, artifacts):
    code, output = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", tmp_path)
    assert_one_line_error(code, output, "cannot write output, it is a folder")


def test_failed_parity_leaves_existing_output_untouched(tmp_path, artifacts, monkeypatch):
    """A parity failure must not replace a good artifact with a bad one."""
    from ffkit.recipes import spec

    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous artifact")
    monkeypatch.setattr(spec.Tolerance, "excess", lambda self, a, b: 1.0)
    code, output = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(code, output, "not written", "differs from PyTorch")
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_error_text_with_brackets_is_printed_verbatim():
    """Rich markup must not eat '[...]' in messages (shapes, extras such as ffkit[export])."""
    import typer

    from ffkit.toolkit.cli import friendly
    from ffkit.recipes.errors import FfkitError

    tiny = typer.Typer()

    @tiny.command()
    @friendly
    def fail():
        raise FfkitError("x.onnx: input shape [1, 3, 112, 112]; pip install 'ffkit[export]'")

    result = runner.invoke(tiny, [])
    assert_one_line_error(result.exit_code, result.output, "[1, 3, 112, 112]", "ffkit[export]")
