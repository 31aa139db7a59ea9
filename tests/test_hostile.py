"""Hostile and careless inputs, by class: each ends in one clear line, its exit code, inputs
untouched, nothing left in the output folder or the current directory.

Classes (issue "Reliability"): 1 library errors and write failures through the one boundary,
2 checks before work (sizes declared by images, checkpoint archives and ONNX files; outputs
that are inputs), 3 non-finite weights (tests/test_export_errors.py), 4 writes (here: full
disk, unwritable folders; modes, links and signals in tests/test_reliability.py), 5 video
truncated mid-stream, 6 external data outside the model's folder, 7 alpha and 16-bit images.
Every fixture is made by the test, small.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from cli_helpers import assert_one_line_error, ffkit
from onnx import TensorProto, helper, numpy_helper
from runtime_helpers import ASTRONAUT, FAST_ARGS, models_dir

FFKIT = [sys.executable, "-m", "ffkit.toolkit"]


def digest(*paths: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty current directory; the test asserts it stays empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert sorted(os.listdir(cwd)) == [], "files written in the current directory"


@pytest.fixture(scope="module")
def models(artifacts, tmp_path_factory):
    return models_dir(artifacts, tmp_path_factory.mktemp("hostile") / "models")


@pytest.fixture(scope="module")
def detector(artifacts):
    return artifacts.export("retinaface_mobilenet0.25").path


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG whose header declares ``width x height`` pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def retinaface_shaped(path: Path, graph_nodes, inits=()) -> Path:
    """An ONNX with RetinaFace's interface (``input`` -> ``loc``, ``conf``, ``landms``) that says
    it is an ffkit retinaface_mobilenet0.25 artifact (a mislabelled or damaged file)."""
    graph = helper.make_graph(
        graph_nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "A", k]) for n, k in
         (("loc", 4), ("conf", 2), ("landms", 10))], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"ffkit.recipe": "retinaface_mobilenet0.25", "ffkit.variant": "fp32"})
    onnx.save(model, path)
    return path


def reshaping_detector(path: Path) -> Path:
    """Valid ONNX that onnxruntime cannot run on most image sizes (3*H*W must divide by 40)."""
    shapes = [numpy_helper.from_array(np.array([1, -1, k], np.int64), f"s{k}") for k in (4, 2, 10)]
    nodes = [helper.make_node("Reshape", ["input", f"s{k}"], [n]) for n, k in (("loc", 4), ("conf", 2), ("landms", 10))]
    return retinaface_shaped(path, nodes, shapes)


def bomb_detector(path: Path) -> Path:
    """A 300-byte ONNX whose ConstantOfShape asks for 1e12 floats (4 TB) when run."""
    big = numpy_helper.from_array(np.array([1, 1_000_000, 1_000_000], np.int64), "big")
    nodes = [helper.make_node("ConstantOfShape", ["big"], ["c"]),
             helper.make_node("ReduceSum", ["c"], ["total"], keepdims=1),
             *[helper.make_node("Reshape", ["total", f"s{k}"], [n]) for n, k in (("loc", 4), ("conf", 2), ("landms", 10))]]
    shapes = [numpy_helper.from_array(np.array([1, -1, k], np.int64), f"s{k}") for k in (4, 2, 10)]
    return retinaface_shaped(path, nodes, [big, *shapes])


def external_data_model(folder: Path, location: str) -> Path:
    """An ONNX whose one weight lives in external data at ``location``."""
    weight = numpy_helper.from_array(np.zeros(12, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "48")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12])], [weight])
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def short_clip(path: Path, frames: int = 10) -> Path:
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


# ------------------------------------------------------------------ 1. the one boundary


def test_onnxruntime_failing_at_run_time_is_one_line_naming_the_model(workdir, tmp_path):
    model = reshaping_detector(tmp_path / "det.onnx")
    image = tmp_path / "odd.png"
    cv2.imwrite(str(image), np.zeros((33, 33, 3), np.uint8))
    before = digest(model, image)
    result = ffkit("detect", image, "--detector", model, "--max-side", "0")
    assert_one_line_error(result, "det.onnx: onnxruntime failed to run it on input 1x3x", exit_code=2)
    assert digest(model, image) == before


@pytest.mark.parametrize("argv", [
    ["simplify", "{det}", "-o", "{out}/s.onnx"],
    ["detect", str(ASTRONAUT), "--detector", "{det}", "--draw", "{out}/d.png"],
    ["quantize", "{det}", "--fp16", "-o", "{out}/q.onnx"],
], ids=["simplify", "detect-draw", "fp16"])
def test_a_full_disk_is_one_line_naming_the_output_exit_4(detector, tmp_path, argv):
    """A write that the filesystem refuses part-way (here: the process's file-size limit, EFBIG,
    the same path in ffkit as ENOSPC) names the output, exits 4 and leaves nothing behind."""
    out = tmp_path / "out"
    out.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    args = [a.format(det=detector, out=out) for a in argv]
    run = subprocess.run([*FFKIT, *args], cwd=cwd, preexec_fn=limit, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    assert run.returncode == 4, lines
    assert lines[-1].startswith("error: ") and str(out) in lines[-1] and "file too large" in lines[-1], lines
    assert "Traceback" not in run.stderr
    assert os.listdir(out) == [] and os.listdir(cwd) == []


def test_an_output_folder_that_cannot_take_files_is_one_line(detector, workdir):
    for option in ("--json", "--draw"):
        result = ffkit("detect", ASTRONAUT, "--detector", detector, option, "/proc/ffkit-out.png")
        line = assert_one_line_error(result, "/proc/ffkit-out.png", exit_code=result.exit_code)
        assert result.exit_code in (2, 4) and ".part" not in line
    result = ffkit("detect", ASTRONAUT, "--detector", detector, "--crops", "/proc/self/ffkit-crops")
    assert_one_line_error(result, "/proc/self/ffkit-crops", exit_code=result.exit_code)


# ------------------------------------------------------------------ 2. checks before work


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(detector, models, workdir, tmp_path):
    huge = png_declaring(tmp_path / "huge.png", 60000, 60000)
    assert_one_line_error(ffkit("detect", huge, "--detector", detector),
                          "huge.png: declares 60000x60000 pixels, over the 100 megapixel cap")
    assert_one_line_error(ffkit("swap", "--source", ASTRONAUT, "--target", huge, "-o", tmp_path / "o.png",
                                "--models", models), "huge.png: declares 60000x60000")
    assert not (tmp_path / "o.png").exists()


def test_a_zip_bomb_checkpoint_is_refused_before_unpacking(workdir, tmp_path):
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/data/0", b"\0" * (200 << 20))   # 200 MiB of zeros: 200 KB on disk
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = ffkit("export", "retinaface_mobilenet0.25", bomb, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "bomb.pth: its archive members declare 200 MiB unpacked from 0.2 MiB",
                          "zip bomb")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100_000   # KiB: nothing unpacked
    assert sorted(os.listdir(tmp_path)) == ["bomb.pth", "cwd"]


@pytest.mark.parametrize("command", ["detect", "simplify", "verify"])
def test_an_onnx_declaring_a_huge_constant_is_refused_before_running(command, detector, workdir, tmp_path):
    bomb = bomb_detector(tmp_path / "bomb.onnx")
    argv = {"detect": ["detect", ASTRONAUT, "--detector", bomb],
            "simplify": ["simplify", bomb, "-o", tmp_path / "s.onnx"],
            "verify": ["verify", bomb, "--reference", detector]}[command]
    assert_one_line_error(ffkit(*argv), "bomb.onnx: a ConstantOfShape node declares a tensor of up to 7.45e+03 GiB",
                          "2 GiB per-tensor cap")
    assert sorted(os.listdir(tmp_path)) == ["bomb.onnx", "cwd"]


def test_a_forged_initializer_shorter_than_its_dims_is_refused(workdir, tmp_path):
    weight = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    weight.dims[:] = [1000, 1000]
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000, 1000])], [weight])
    path = tmp_path / "forged.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert_one_line_error(ffkit("simplify", path, "-o", tmp_path / "s.onnx"),
                          "forged.onnx: initializer 'w' holds 16 bytes where its dims [1000, 1000] need 4000000")


def test_outputs_that_are_inputs_are_refused_and_inputs_kept(detector, models, workdir, tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(ASTRONAUT.read_bytes())
    before = digest(image)
    assert_one_line_error(ffkit("detect", image, "--detector", detector, "--draw", image),
                          "--draw would overwrite the input")
    assert_one_line_error(ffkit("detect", image, "--detector", detector, "--json", image),
                          "--json would overwrite the input")
    assert_one_line_error(ffkit("swap", "--source", image, "--target", image, "-o", tmp_path / "o.jpg",
                                "--models", models, "--json", image), "--json would overwrite the input")
    assert_one_line_error(ffkit("swap", "--source", image, "--target", ASTRONAUT, "-o", image,
                                "--models", models), "would overwrite the input")
    assert digest(image) == before


# ------------------------------------------------------------------ 5. video


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_a_truncated_video_is_an_error_not_a_short_output(models, workdir, tmp_path, fraction):
    whole = short_clip(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * fraction)])
    out = tmp_path / "out"
    out.mkdir()
    result = ffkit("swap", "--source", ASTRONAUT, "--target", cut, "-o", out / "o.mp4", "--models", models, *FAST_ARGS)
    lines = [ln for ln in result.output.splitlines() if ln.strip() and ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "cut.mp4" in lines[0] and ("truncated or damaged" in lines[0] or "decode error" in lines[0]), lines
    assert "Traceback" not in result.output and os.listdir(out) == []


# ------------------------------------------------------------------ 6. external data


@pytest.mark.parametrize("where", ["parent", "absolute", "link", "missing"])
def test_external_data_outside_the_models_folder_is_refused_by_every_reader(where, detector, workdir, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    if where == "link":
        (folder / "w.bin").symlink_to(secret)
    location = {"parent": "../secret.bin", "absolute": str(secret), "link": "w.bin", "missing": "gone.bin"}[where]
    model = external_data_model(folder, location)
    expected = {"parent": "outside the model's folder", "absolute": "an absolute path",
                "link": "links outside the model's folder", "missing": "which does not exist"}[where]
    for argv in (["simplify", model, "-o", tmp_path / "s.onnx"], ["verify", model, "--reference", detector],
                 ["detect", ASTRONAUT, "--detector", model], ["bench", folder]):
        assert_one_line_error(ffkit(*argv), "model.onnx: initializer 'w' has its data in", expected)
    assert not (tmp_path / "s.onnx").exists()


# ------------------------------------------------------------------ 7. images


def test_an_rgba_target_keeps_its_alpha_and_a_16_bit_one_its_depth(models, workdir, tmp_path):
    photo = cv2.imread(str(ASTRONAUT))
    h, w = photo.shape[:2]
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), np.dstack([photo, alpha]))
    deep = tmp_path / "deep.png"
    deep16 = photo.astype(np.uint16) * 257 + 3       # low bits an 8-bit path would lose
    cv2.imwrite(str(deep), deep16)
    for target in (rgba, deep):
        out = tmp_path / f"out-{target.name}"
        result = ffkit("swap", "--source", ASTRONAUT, "--target", target, "-o", out, "--models", models,
                       *FAST_ARGS, "--json", tmp_path / f"{target.stem}.json")
        assert result.exit_code == 0, result.output
        written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert written.shape[:2] == (h, w)
        import json

        regions = [r for f in json.loads((tmp_path / f"{target.stem}.json").read_text())["faces"]
                   for r in f["regions"]]
        assert regions, "the seed-0 models swap no face: nothing to check"
        inside = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in regions:
            inside[y0:y1, x0:x1] = True
        if target is rgba:
            assert written.shape[2] == 4 and np.array_equal(written[..., 3], alpha)   # alpha carried through
            assert np.array_equal(written[..., :3][~inside], photo[~inside])
            assert np.abs(written[..., :3][inside].astype(int) - photo[inside]).mean() > 1.0   # colour swapped
        else:
            assert written.dtype == np.uint16 and written.shape[2] == 3
            assert np.array_equal(written[~inside], deep16[~inside])                 # untouched: bit-exact 16-bit
            changed = np.any(written != deep16, axis=2)
            assert changed.any() and np.all(written[changed] % 257 == 0)             # swapped: 8-bit values x 257


def test_too_little_free_space_is_refused_before_writing(detector, workdir, tmp_path, monkeypatch):
    """Where the output's size is known (an ONNX proto), the filesystem's free space is checked
    first: here statvfs reports 1 MiB free for a 1.7 MB model."""
    real = os.statvfs

    class Tiny:
        def __init__(self, st):
            self.f_frsize, self.f_bavail = st.f_frsize, (1 << 20) // st.f_frsize

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny(real(p)))
    result = ffkit("simplify", detector, "-o", tmp_path / "s.onnx")
    assert_one_line_error(result, "s.onnx: needs 1.", "MiB free; free some or write elsewhere", exit_code=4)
    assert sorted(os.listdir(tmp_path)) == ["cwd"]


def test_every_command_answers_a_garbage_file_in_one_line(workdir, tmp_path):
    """The sweep: each command given a file that is not what it needs (bytes of text) ends in
    one line naming it, exit 2; a command added later must join this list."""
    from ffkit.toolkit.cli import app

    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "junk.onnx").write_text("not a model\n")
    out = tmp_path / "out"
    out.mkdir()
    sweep = {
        "export": ["export", "retinaface_mobilenet0.25", junk, "-o", out / "m.onnx"],
        "simplify": ["simplify", junk, "-o", out / "m.onnx"],
        "optimize": ["optimize", junk, "-o", out / "m.onnx"],
        "quantize": ["quantize", junk, "--fp16", "-o", out / "m.onnx"],
        "verify": ["verify", junk, "--reference", junk],
        "build": ["build", "retinaface_mobilenet0.25", junk, "-o", out / "b"],
        "detect": ["detect", ASTRONAUT, "--detector", junk],
        "swap": ["swap", "--source", ASTRONAUT, "--target", ASTRONAUT, "-o", out / "o.png", "--models", folder],
        "bench": ["bench", folder],
        "serve": ["serve", "--models", folder, "--port", "0"],
        "validate": ["validate", "--source", ASTRONAUT, "--target", ASTRONAUT, "--models", folder, "-o", out / "r"],
        "package": ["package", "--for", "facefusion", folder, "-o", out / "ff"],
        "tune": ["tune", "--models", folder, "--calib", folder, "--validate", ASTRONAUT, "--source", ASTRONAUT],
        "recipes": None, "demo": None,   # take no input file
    }
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert registered <= set(sweep), f"commands missing from the sweep: {registered - set(sweep)}"
    for name, argv in sweep.items():
        if argv is None or name not in registered:
            continue
        result = ffkit(*argv)
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        # build announces each stage as it starts (progress), so its error is the last line
        line = lines[-1] if name == "build" else assert_one_line_error(result, exit_code=2)
        assert result.exit_code == 2 and line.startswith("error:") and "Traceback" not in result.output, (name, lines)
        assert "junk.onnx" in line or str(folder) in line, (name, line)
    assert os.listdir(out) == []


# ------------------------------------------------------------------ 8. files that lie about themselves


def _int64(values, name):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def mislabelled_detector(path: Path) -> Path:
    """An embedder's interface (``x`` Nx3x112x112 -> ``emb`` Nx512) in a file whose ffkit
    metadata says it is a retinaface_mobilenet0.25 artifact."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Reshape", ["m", "s"], ["m2"]), helper.make_node("Expand", ["m2", "e"], ["emb"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 512])],
        [_int64([-1, 1], "s"), _int64([1, 512], "e")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"ffkit.recipe": "retinaface_mobilenet0.25", "ffkit.variant": "fp32"})
    onnx.save(model, path)
    return path


def custom_op_detector(path: Path) -> Path:
    """RetinaFace's interface computed by an op of a domain onnxruntime does not have."""
    nodes = [helper.make_node("Mystery", ["input"], [n], domain="com.example.custom") for n in ("loc", "conf", "landms")]
    retinaface_shaped(path, nodes)
    model = onnx.load(path)
    model.opset_import.append(helper.make_opsetid("com.example.custom", 1))
    onnx.save(model, path)
    return path


def runaway_detector(path: Path) -> Path:
    """RetinaFace's interface; at run time a ConstantOfShape of ``[1, H * W * 1e7, 4]`` floats
    (terabytes on any image), a size no constant of the file declares."""
    nodes = [helper.make_node("Shape", ["input"], ["s"]),
             helper.make_node("Gather", ["s", "i2"], ["h"], axis=0), helper.make_node("Gather", ["s", "i3"], ["w"], axis=0),
             helper.make_node("Mul", ["h", "w"], ["hw"]), helper.make_node("Mul", ["hw", "k"], ["n"]),
             helper.make_node("Concat", ["one", "n", "four"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["c"],
                              value=numpy_helper.from_array(np.array([0], np.float32))),
             helper.make_node("ReduceSum", ["c"], ["t"], keepdims=1),
             *[helper.make_node("Expand", ["t", f"s{k}"], [n]) for n, k in (("loc", 4), ("conf", 2), ("landms", 10))]]
    inits = [_int64([1], "one"), _int64([4], "four"), _int64([10 ** 7], "k"), _int64([2], "i2"), _int64([3], "i3"),
             *[_int64([1, 1, k], f"s{k}") for k in (4, 2, 10)]]
    return retinaface_shaped(path, nodes, inits)


HOSTILE = {
    "mislabelled": (mislabelled_detector, ["records recipe retinaface_mobilenet0.25 but its I/O",
                                           "mislabelled or damaged file"]),
    "custom-op": (custom_op_detector, ["onnxruntime", "com.example.custom"]),
    "runaway": (runaway_detector, ["would make tensor 'c' of", "cap", "refused before running it"]),
}
COMMANDS = {
    "simplify": ["simplify", "{model}", "-o", "{out}/m.onnx"],
    "optimize": ["optimize", "{model}", "-o", "{out}/m.onnx"],
    "fp16": ["quantize", "{model}", "--fp16", "-o", "{out}/m.onnx"],
    "int8": ["quantize", "{model}", "--int8", "--calib", "{calib}", "-o", "{out}/m.onnx"],
    "verify": ["verify", "{model}", "--reference", "{model}", "--json", "{out}/v.json"],
    "detect": ["detect", str(ASTRONAUT), "--detector", "{model}", "--json", "{out}/faces.json"],
    "swap": ["swap", "--source", str(ASTRONAUT), "--target", str(ASTRONAUT), "-o", "{out}/o.png",
             "--models", "{models}"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_file_that_lies_about_itself_is_one_line_naming_it(kind, command, artifacts, workdir, tmp_path):
    """A mislabelled file, a custom-op file and a file whose run would allocate terabytes, given
    to every stage, to detect and to swap: one line naming the file, exit 2, nothing written,
    inputs untouched."""
    make, fragments = HOSTILE[kind]
    models = models_dir(artifacts, tmp_path / "models")
    model = models / "retinaface_mobilenet0.25.fp32.onnx"
    model.unlink()
    make(model)
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "face.png"), cv2.resize(cv2.imread(str(ASTRONAUT)), (128, 128)))
    out = tmp_path / "out"
    out.mkdir()
    before = digest(model, calib / "face.png")
    argv = [a.format(model=model, out=out, calib=calib, models=models) for a in COMMANDS[command]]
    line = assert_one_line_error(ffkit(*argv), *([] if command == "swap" else fragments))
    assert "retinaface_mobilenet0.25.fp32.onnx" in line, line
    assert "in-memory model" not in line and "Required inputs" not in line, line
    assert os.listdir(out) == [] and digest(model, calib / "face.png") == before
    assert sorted(os.listdir(models)) == sorted(["retinaface_mobilenet0.25.fp32.onnx", "arcface_iresnet18.fp32.onnx",
                                                 "inswapper_128.onnx"])
