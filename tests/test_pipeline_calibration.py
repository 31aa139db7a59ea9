"""INT8 calibration recorded where each model runs (``validation/pipeline_calibration.py``): the
swapper's recorded inputs are checked against an independent computation of what the swap
chain feeds it (insightface's alignment by Umeyama's similarity estimate and its latent
rule, ``normalize(normalize(embedding) @ emap)``, with the embedding computed by plain
onnxruntime on the embedder's recorded crop)."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
from runtime_helpers import ASTRONAUT, foreign_emap, link
from test_tune import make_fragile_swapper

from ffkit.runtime.frame_pipeline import Pipeline
from ffkit.runtime.media import read_image
from ffkit.runtime.sessions import SessionPool, resolve_providers
from ffkit.runtime.swap_options import swap_settings
from ffkit.validation.pipeline_calibration import RecordingSession, record_role_inputs

#: insightface's ``arcface_dst`` (112 x 112 crop pixels).
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]], np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform ``src -> dst`` (Umeyama 1991, as skimage's
    ``SimilarityTransform.estimate``): the ``2 x 3`` matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_recorded_swapper_inputs_are_the_aligned_face_and_a_real_latent(artifacts, tmp_path):
    models = tmp_path / "models"
    for name in ("retinaface_mobilenet0.25", "arcface_iresnet18"):
        link(artifacts.export(name).path, models / f"{name}.fp32.onnx")
    make_fragile_swapper(models / "inswapper_128.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    photo = read_image(ASTRONAUT)
    cv2.imwrite(str(calib / "a.png"), photo)
    cv2.imwrite(str(calib / "b.png"), np.ascontiguousarray(photo[:, ::-1]))
    (calib / "notes.txt").write_text("not an image")
    settings = swap_settings({"score_threshold": 0.8, "max_faces": 1, "variant": "fp32"})
    selection = settings.pick(models)

    found = record_role_inputs(selection, settings.options, photo, calib)

    assert set(found) == {"detector", "embedder", "swapper"}
    # sources: the given face, then each calibration image's; the detector also ran once per frame
    assert len(found["embedder"]) == 3 and len(found["detector"]) == 5 and len(found["swapper"]) == 2
    # frame 0 (a.png) is swapped with the given source (embedder sample 0), frame 1 (b.png) with
    # a.png's face (embedder sample 1), never with its own
    embedder = ort.InferenceSession(str(selection.embedder.path), providers=["CPUExecutionProvider"])
    for k in (0, 1):
        crop = found["embedder"].samples[k]
        embedding = embedder.run(None, {embedder.get_inputs()[0].name: next(iter(crop.values()))})[0]
        latent = _unit(_unit(embedding.astype(np.float64)) @ foreign_emap().astype(np.float64))
        np.testing.assert_allclose(found["swapper"].samples[k]["source"], latent, atol=2e-6)
    first = found["swapper"].samples[0]
    # the target input: a.png's face aligned to insightface's 128 template (arcface_dst + 8 px on x), RGB / 255
    pipe = Pipeline.from_models(selection, SessionPool(resolve_providers("cpu")), settings.options)
    landmarks = pipe.detector.detect(photo, settings.options.detect).landmarks[0].astype(np.float64)
    matrix = umeyama(landmarks, ARCFACE_DST + [8.0, 0.0])
    crop = cv2.warpAffine(photo, matrix, (128, 128), borderValue=0.0)
    expected = crop[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    assert first["target"].shape == (1, 3, 128, 128)
    assert np.abs(first["target"] - expected).max() <= 1.0 / 255 + 1e-6   # one grey level of warp rounding
    assert np.mean(np.abs(first["target"] - expected)) < 1e-3


def test_recording_session_splits_batches_and_stops_at_its_limit():
    class Echo:
        def get_inputs(self):
            return []

        def run(self, names, feeds):
            return [feeds["x"] * 2]

    rec = RecordingSession(Echo(), limit=3)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = rec.run(None, {"x": x})
    np.testing.assert_array_equal(out[0], x * 2)
    rec.run(None, {"x": x + 10})
    assert [s["x"].tolist() for s in rec.samples] == [[[0, 1, 2, 3]], [[4, 5, 6, 7]], [[10, 11, 12, 13]]]
    x[0, 0] = 99   # the samples are copies
    assert rec.samples[0]["x"][0, 0] == 0 and rec.get_inputs() == []
