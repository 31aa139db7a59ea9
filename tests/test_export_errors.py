"""Bad input to ``ffkit export``: one-line error naming the file and the problem, no file left."""

from __future__ import annotations

import os

import pytest
import torch
from cli_helpers import assert_one_line_error, ffkit


class RunsCode:
    """A pickle payload that would execute a shell command when unpickled."""

    def __reduce__(self):
        return (os.system, ("echo owned",))


def export(*args):
    return ffkit("export", *args)


def test_unknown_recipe_suggests_closest(tmp_path, artifacts):
    out = tmp_path / "m.onnx"
    result = export("retinaface_mobilenet", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(result, "unknown recipe 'retinaface_mobilenet'", "did you mean 'retinaface_mobilenet0.25'")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_another_recipe_names_keys(tmp_path, artifacts):
    out = tmp_path / "m.onnx"
    ckpt = artifacts.checkpoint("arcface_iresnet18")
    result = export("retinaface_mobilenet0.25", ckpt, "-o", out)
    # 300 tensors of the recipe are absent, 47 of them BatchNorm counters (not required: training state)
    assert_one_line_error(result, str(ckpt.name), "not a retinaface_mobilenet0.25 checkpoint",
                          "253 missing keys (first: body.stage1.0.0.weight", "187 unexpected keys (first: conv1.weight")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_is_named(tmp_path, artifacts):
    sd = torch.load(artifacts.checkpoint("arcface_iresnet18"), weights_only=True)
    sd["fc.weight"] = sd["fc.weight"][:256]
    ckpt = tmp_path / "narrow.pth"
    torch.save(sd, ckpt)
    result = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "narrow.pth", "1 shape mismatches (first: fc.weight (256, 25088) vs (512, 25088)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.pth"]


def test_truncated_checkpoint(tmp_path, artifacts):
    ckpt = tmp_path / "cut.pth"
    ckpt.write_bytes(artifacts.checkpoint("retinaface_mobilenet0.25").read_bytes()[:5000])
    result = export("retinaface_mobilenet0.25", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "cut.pth", "truncated or not a PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pth"]


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b"", b"PK\x03\x04garbage"])
def test_non_checkpoint_file(tmp_path, content):
    ckpt = tmp_path / "notes.pth"
    ckpt.write_bytes(content)
    result = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "notes.pth", "truncated or not a PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pth"]


def test_missing_checkpoint(tmp_path):
    result = export("arcface_iresnet18", tmp_path / "nowhere.pth", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "nowhere.pth: no such file")


def test_pickle_that_runs_code_is_refused(tmp_path, capfd):
    ckpt = tmp_path / "evil.pth"
    torch.save({"conv1.weight": RunsCode()}, ckpt)
    result = export("arcface_iresnet18", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "evil.pth", "refused", "weights_only=True", "posix.system")
    assert "owned" not in capfd.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]


def test_output_folder_missing(tmp_path, artifacts):
    out = tmp_path / "no" / "such" / "dir" / "m.onnx"
    result = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(result, "cannot write output", "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_output_folder_read_only(tmp_path, artifacts):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", folder / "m.onnx")
        assert_one_line_error(result, "cannot write output", "not writable")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_output_is_a_folder(tmp_path, artifacts):
    result = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", tmp_path)
    assert_one_line_error(result, "cannot write output, it is a folder")


def test_failed_parity_leaves_existing_output_untouched(tmp_path, artifacts, monkeypatch):
    """A parity failure must not replace a good artifact with a bad one."""
    from ffkit.recipes import spec

    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous artifact")
    monkeypatch.setattr(spec.Tolerance, "excess", lambda self, a, b: 1.0)
    result = export("retinaface_mobilenet0.25", artifacts.checkpoint("retinaface_mobilenet0.25"), "-o", out)
    assert_one_line_error(result, "not written", "differs from PyTorch", exit_code=3)
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_error_text_with_brackets_is_printed_verbatim():
    """Rich markup must not eat '[...]' in messages (shapes, extras such as ffkit[export])."""
    import typer

    from ffkit.recipes.errors import FfkitError
    from ffkit.toolkit.cli import friendly

    tiny = typer.Typer()

    @tiny.command()
    @friendly
    def fail():
        raise FfkitError("x.onnx: input shape [1, 3, 112, 112]; pip install 'ffkit[export]'")

    assert_one_line_error(ffkit(command=tiny), "[1, 3, 112, 112]", "ffkit[export]")


def test_non_finite_weights_are_named_at_load_and_nothing_is_written(tmp_path, artifacts):
    """A NaN weight is refused when the checkpoint is read, naming the tensor (before, NaN in and
    NaN out on both sides passed parity: max(-inf, nan)); parity's own non-finite rule is
    tests/test_parity.py's."""
    sd = torch.load(artifacts.checkpoint("retinaface_mobilenet0.25"), weights_only=True)
    key = next(k for k in sd if k.endswith("conv1x1.weight"))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    ckpt = tmp_path / "nan.pth"
    torch.save(sd, ckpt)
    result = export("retinaface_mobilenet0.25", ckpt, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "nan.pth: 1 tensors hold NaN or Inf values", f"first: {key.removeprefix('module.')}, 1 values")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pth"]


def test_inswapper_without_emap_is_refused_by_name(tmp_path):
    """Refused before the checkpoint is even read: one line, nothing written (export and build)."""
    ckpt = tmp_path / "reswapper.pth"
    ckpt.write_bytes(b"not read")
    result = export("inswapper_128", ckpt, "-o", tmp_path / "m.onnx")
    line = assert_one_line_error(result, "inswapper_128 needs its emap: --emap EMAP.npy|inswapper_128.onnx",
                                 "--no-emap")
    assert "reswapper.pth" not in line
    result = ffkit("build", "inswapper_128", ckpt, "-o", tmp_path / "models")
    assert_one_line_error(result, "inswapper_128 needs its emap: --emap EMAP.npy|inswapper_128.onnx")
    result = export("inswapper_128", ckpt, "-o", tmp_path / "m.onnx", "--emap", ckpt, "--no-emap")
    assert_one_line_error(result, "--emap and --no-emap exclude each other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reswapper.pth"]


@pytest.mark.slow
def test_inswapper_no_emap_is_labelled_and_the_runtime_names_the_fix(tmp_path, artifacts):
    import onnx

    from ffkit.recipes.errors import ArtifactError
    from ffkit.runtime import identify, read_emap

    out = tmp_path / "bare.onnx"
    result = export("inswapper_128", artifacts.checkpoint("inswapper_128"), "-o", out, "--no-emap")
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["ffkit.emap"] == "none" and "WITHOUT its emap" in model.doc_string
    assert tuple(model.graph.initializer[-1].dims) != (512, 512)   # what insightface would take as the emap
    with pytest.raises(ArtifactError, match=r"exported without an emap \(export it with --emap "
                                            r"EMAP\.npy\|inswapper_128\.onnx\)"):
        read_emap(identify(out))
