"""``ffkit detect`` / ``ffkit swap`` / ``ffkit demo`` from the command line, including torch-free runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import ffkit as invoke
from runtime_helpers import ASTRONAUT, FAST_ARGS, leftovers, models_dir

from ffkit.runtime import SessionPool, detect_faces, probe_video, read_image, resolve_providers
from ffkit.runtime.detector import Detector
from ffkit.validation.synthetic_media import make_test_video, pan_frames


def ffkit(*args):
    """``(exit code, stdout, stderr)`` of the CLI run with ``args``."""
    result = invoke(*args)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    return models_dir(artifacts, tmp_path_factory.mktemp("cli") / "models")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "face.png"
    import cv2

    cv2.imwrite(str(path), read_image(ASTRONAUT)[:, ::-1])
    return path


# ---------------------------------------------------------------- detect

def test_detect_json_equals_detect_py_with_crops_and_drawing(folder, tmp_path):
    detector = folder / "retinaface_mobilenet0.25.fp32.onnx"
    out = tmp_path / "faces.json"
    code, stdout, stderr = ffkit("detect", ASTRONAUT, "--detector", detector, "--max-side", 0,
                                 "--score-threshold", 0.7, "--nms-threshold", 0.4, "--json", out,
                                 "--crops", tmp_path / "crops", "--crop-size", 128, "--draw", tmp_path / "d.png")
    assert code == 0, stderr
    report = json.loads(out.read_text())
    (entry,) = report["images"]
    assert entry["path"] == str(ASTRONAUT) and (entry["width"], entry["height"]) == (512, 512)
    image = read_image(ASTRONAUT)
    det = Detector(SessionPool(resolve_providers("cpu")).get(detector))
    raw = det.raw(image)
    ref = detect_faces(raw["loc"], raw["conf"], raw["landms"], 512, 512, score_threshold=0.7, nms_threshold=0.4,
                       top_k=5000, keep_top_k=750)
    faces = entry["faces"]
    assert len(faces) == len(ref) > 0
    np.testing.assert_array_equal(np.array([f["box"] for f in faces], np.float32), ref.boxes)
    np.testing.assert_array_equal(np.array([f["score"] for f in faces], np.float32), ref.scores)
    np.testing.assert_array_equal(np.array([f["landmarks"] for f in faces], np.float32), ref.landmarks)
    assert [f["score"] for f in faces] == sorted((f["score"] for f in faces), reverse=True)
    crops = sorted((tmp_path / "crops").iterdir())
    assert len(crops) == len(faces) and read_image(crops[0]).shape == (128, 128, 3)
    assert read_image(tmp_path / "d.png").shape == image.shape


def test_detect_several_images_draws_into_a_folder(folder, source, tmp_path):
    code, _, stderr = ffkit("detect", ASTRONAUT, source, "--detector", folder / "retinaface_mobilenet0.25.fp32.onnx",
                            "--score-threshold", 0.8, "--json", tmp_path / "f.json", "--draw", tmp_path / "drawn")
    assert code == 0, stderr
    assert len(json.loads((tmp_path / "f.json").read_text())["images"]) == 2
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["astronaut.png", "face.png"]


def test_detect_with_wrong_recipe_names_the_file(folder, tmp_path):
    arc = folder / "arcface_iresnet18.fp32.onnx"
    result = invoke("detect", ASTRONAUT, "--detector", arc, "--json", tmp_path / "f.json")
    assert_one_line_error(result, str(arc), "embedder artifact (arcface_iresnet18)", "--detector needs a detector")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- swap

def test_swap_image(folder, source, tmp_path):
    out = tmp_path / "out.png"
    summary = tmp_path / "summary.json"
    code, stdout, stderr = ffkit("swap", "--source", source, "--target", ASTRONAUT, "-o", out, "--models", folder,
                                 "--json", summary, *FAST_ARGS)
    assert code == 0, stderr
    for name in ("retinaface_mobilenet0.25.fp32.onnx", "arcface_iresnet18.fp32.onnx", "inswapper_128.onnx"):
        assert name in stdout  # says which files it used
    report = json.loads(summary.read_text())
    assert report["faces_swapped"] == 2 and report["models"]["swapper"].endswith("inswapper_128.onnx")
    before, after = read_image(ASTRONAUT), read_image(out)
    assert after.shape == before.shape
    mask = np.zeros(before.shape[:2], bool)
    for face in report["faces"]:
        for x0, y0, x1, y1 in face["regions"]:
            mask[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(after[~mask], before[~mask])
    assert (after[mask] != before[mask]).any()


def test_swap_with_reference_and_largest(folder, source, tmp_path):
    out = tmp_path / "out.png"
    code, _, stderr = ffkit("swap", "--source", source, "--target", ASTRONAUT, "-o", out, "--models", folder,
                            "--reference", ASTRONAUT, "--similarity", 0.999, "--json", tmp_path / "r.json", *FAST_ARGS)
    assert code == 0, stderr
    faces = json.loads((tmp_path / "r.json").read_text())["faces"]
    assert sum(f["swapped"] for f in faces) >= 1 and all(f["similarity"] >= 0.999 for f in faces if f["swapped"])
    code, _, stderr = ffkit("swap", "--source", source, "--target", ASTRONAUT, "-o", out, "--models", folder,
                            "--select", "largest", "--score-threshold", 0.8, "--json", tmp_path / "l.json")
    assert code == 0, stderr
    assert json.loads((tmp_path / "l.json").read_text())["faces_swapped"] == 1


@pytest.fixture
def bad_inputs(tmp_path, artifacts, folder):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg" * 10)
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 200)
    return {"garbage": garbage, "bad_video": bad_video,
            "noswap": models_dir(artifacts, tmp_path / "noswap", swapper="none")}


@pytest.mark.parametrize("case", ["missing source", "unreadable source", "missing target", "unreadable target video",
                                  "source with no face", "models folder missing an artifact",
                                  "swapper of the wrong recipe", "no models folder", "output of the wrong kind"])
def test_bad_input_is_one_line_error_and_no_output(case, folder, source, bad_inputs, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("out.mp4" if "video" in case else "out.png")
    args = {"--source": source, "--target": ASTRONAUT, "--models": folder}
    extra: list = list(FAST_ARGS)
    if case == "missing source":
        args["--source"] = tmp_path / "nobody.jpg"
        expect = ["nobody.jpg", "not found"]
    elif case == "unreadable source":
        args["--source"] = bad_inputs["garbage"]
        expect = ["garbage.jpg", "not a decodable image"]
    elif case == "missing target":
        args["--target"] = tmp_path / "nothing.png"
        expect = ["nothing.png", "not found"]
    elif case == "unreadable target video":
        args["--target"] = bad_inputs["bad_video"]
        expect = ["broken.mp4"]
    elif case == "source with no face":
        extra = ["--score-threshold", "0.9999"]
        expect = [str(source), "no face found in the source image"]
    elif case == "models folder missing an artifact":
        args["--models"] = bad_inputs["noswap"]
        expect = ["noswap", "no swapper artifact"]
    elif case == "swapper of the wrong recipe":
        extra += ["--swapper", str(folder / "arcface_iresnet18.fp32.onnx")]
        expect = ["arcface_iresnet18.fp32.onnx", "embedder artifact", "--swapper needs a swapper"]
    elif case == "no models folder":
        args["--models"] = tmp_path / "no-such-models"
        expect = ["no-such-models", "models folder not found"]
    else:
        out = out_dir / "out.mp4"
        expect = ["out.mp4", "the target is an image"]
    flat = [x for kv in args.items() for x in kv]
    assert_one_line_error(invoke("swap", *flat, "-o", out, *extra), *expect)
    assert list(out_dir.iterdir()) == [], leftovers(out_dir)


# ---------------------------------------------------------------- torch-free

BLOCK_TORCH = textwrap.dedent("""
    import atexit, importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    atexit.register(lambda: print("TORCH_LOADED=" + str("torch" in sys.modules), file=sys.stderr))
    from ffkit.toolkit.cli import main
    sys.argv = ["ffkit"] + sys.argv[1:]
    main()
""")


def run_without_torch(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert "TORCH_LOADED=False" in proc.stderr, proc.stderr
    return proc


def test_swap_video_runs_with_torch_unimportable(folder, source, tmp_path):
    video = make_test_video(tmp_path / "in.mp4", frames=8, size=(160, 128), fps=Fraction(25),
                            frame_fn=pan_frames(read_image(ASTRONAUT), 8))
    out = tmp_path / "out.mp4"
    proc = run_without_torch("swap", "--source", source, "--target", video, "-o", out, "--models", folder,
                             "--workers", 2, "--json", tmp_path / "s.json", *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr
    a, b = probe_video(video), probe_video(out)
    assert (b.width, b.height, b.fps, b.frame_count, b.has_audio) == (a.width, a.height, a.fps, a.frame_count, True)
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["frames"] == 8 and report["frames_with_faces"] + report["frames_without_faces"] == 8
    assert "frames/s" in proc.stderr + proc.stdout


def test_demo_without_torch_says_so(tmp_path):
    proc = run_without_torch("demo", "-o", tmp_path / "demo")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("TORCH_LOADED")]
    assert len(lines) == 1 and lines[0].startswith("error: ffkit demo builds its models with torch"), proc.stderr


@pytest.mark.slow
def test_demo_builds_then_reuses_models_without_torch(tmp_path):
    demo = tmp_path / "demo"
    # --no-validate: the FP16/INT8 builds and validation of the SimSwap set would add 10+ minutes on
    # 2 cores; validate itself is tested in test_validate.py
    code, stdout, stderr = ffkit("demo", "-o", demo, "--swapper", "simswap_224", "--frames", 3, "--no-validate")
    assert code == 0, stderr
    for name in ("swapped.png", "side_by_side.png", "input.mp4", "swapped.mp4", "demo.json", "source.jpg",
                 "swapped_full_pipeline.png", "full_pipeline_sheet.png"):
        assert (demo / name).is_file(), name
    assert read_image(demo / "swapped.png").shape == (512, 512, 3)
    assert read_image(demo / "swapped_full_pipeline.png").shape == (512, 512, 3)   # 256 px upscaled x2
    a, b = probe_video(demo / "input.mp4"), probe_video(demo / "swapped.mp4")
    assert (b.frame_count, b.fps, b.width, b.height, b.has_audio) == (3, a.fps, a.width, a.height, True)
    assert "SYNTHETIC" in stdout
    proc = run_without_torch("demo", "-o", demo, "--swapper", "simswap_224", "--frames", 3, "--no-validate")
    assert proc.returncode == 0, proc.stderr
    # detector, embedder, swapper, and the every-stage photo's landmarker, parser and upscaler
    assert proc.stdout.count("cached") == 6
