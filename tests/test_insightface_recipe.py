"""``ffkit swap`` with an inswapper equals insightface's own recipe, written out here.

insightface 2.1 ``model_zoo/inswapper.py`` ``INSwapper.get(paste_back=True)`` and
``model_zoo/arcface_onnx.py`` ``ArcFaceONNX.get``, with ``utils/face_align.py``
``estimate_norm``/``norm_crop2`` (Umeyama similarity to the ArcFace template), re-implemented
in this file with OpenCV and numpy only, independently of ffkit's geometry and paste code. The
swapper is a tiny file with inswapper_128.onnx's interface whose 1x1 convolution mixes the colour
channels unevenly, so feeding BGR where RGB is expected (or the other way) changes the result:
the comparison pins the colour order too.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from runtime_helpers import ASTRONAUT, foreign_emap, models_dir

from ffkit.runtime import DetectParams, Pipeline, SessionPool, SwapOptions, pick_models, read_image, resolve_providers
from ffkit.runtime.sessions import create_session

ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """skimage ``SimilarityTransform.estimate``: least-squares rotation, scale and shift (2 x 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    scale = (sv * d).sum() / s_c.var(0).sum()
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def estimate_norm(kps: np.ndarray, size: int) -> np.ndarray:
    """insightface ``estimate_norm``: the ArcFace template for 112 (or 128: scaled, x + 8 * ratio)."""
    if size % 112 == 0:
        dst = ARCFACE_DST * (size / 112.0)
    else:
        ratio = size / 128.0
        dst = ARCFACE_DST * ratio
        dst[:, 0] += 8.0 * ratio
    return umeyama(kps, dst)


def insightface_embedding(session, img: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """``ArcFaceONNX.get``: norm_crop to 112, blobFromImage((x - 127.5) / 127.5, swapRB), normed."""
    aimg = cv2.warpAffine(img, estimate_norm(kps, 112), (112, 112), borderValue=0.0)
    blob = cv2.dnn.blobFromImage(aimg, 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=True)
    emb = session.run(None, {session.get_inputs()[0].name: blob})[0].ravel()
    return emb / np.linalg.norm(emb)


def insightface_swap(session, emap: np.ndarray, img: np.ndarray, kps: np.ndarray, normed: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``INSwapper.get(img, target_face, source_face, paste_back=True)``: ``(image, paste mask)``."""
    m = estimate_norm(kps, 128)
    aimg = cv2.warpAffine(img, m, (128, 128), borderValue=0.0)
    blob = cv2.dnn.blobFromImage(aimg, 1.0 / 255.0, (128, 128), (0.0, 0.0, 0.0), swapRB=True)
    latent = normed.reshape((1, -1)) @ emap
    latent /= np.linalg.norm(latent)
    pred = session.run(None, {"target": blob, "source": latent.astype(np.float32)})[0]
    bgr_fake = np.clip(255 * pred.transpose((0, 2, 3, 1))[0], 0, 255).astype(np.uint8)[:, :, ::-1]
    h, w = img.shape[:2]
    im = cv2.invertAffineTransform(m)
    white = np.full((128, 128), 255, dtype=np.float32)
    bgr_fake = cv2.warpAffine(bgr_fake, im, (w, h), borderValue=0.0)
    white = cv2.warpAffine(white, im, (w, h), borderValue=0.0)
    white[white > 20] = 255
    mask = white
    rows, cols = np.where(mask == 255)
    mask_size = int(np.sqrt((rows.max() - rows.min()) * (cols.max() - cols.min())))
    k = max(mask_size // 10, 10)
    mask = cv2.erode(mask, np.ones((k, k), np.uint8), iterations=1)
    k = max(mask_size // 20, 5)
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0) / 255.0
    mask = mask.reshape(h, w, 1)
    merged = mask * bgr_fake + (1 - mask) * img.astype(np.float32)
    return merged.astype(np.uint8), mask[..., 0]


@pytest.fixture(scope="module")
def setup(artifacts, tmp_path_factory):
    folder = models_dir(artifacts, tmp_path_factory.mktemp("insightface") / "m")
    selection = pick_models(folder)
    pipe = Pipeline.from_models(selection, SessionPool(resolve_providers("cpu")),
                                SwapOptions(detect=DetectParams(score_threshold=0.8), max_faces=1))
    return selection, pipe


def test_swap_equals_insightface_inswapper(setup):
    selection, pipe = setup
    photo = read_image(ASTRONAUT)
    source_image = np.ascontiguousarray(photo[:, ::-1])
    source = pipe.prepare_source(source_image)
    result = pipe.process_frame(photo, source)
    assert result.swapped == 1
    swapped = next(f for f in result.faces if f.swapped)
    dets = pipe.detector.detect(photo, pipe.options.detect)          # the same detections, unrounded
    i = int(np.argmin([np.abs(np.asarray(b) - np.asarray(swapped.box)).max() for b in dets.boxes]))
    target_kps = np.asarray(dets.landmarks[i], np.float64)
    emb_session = create_session(selection.embedder.path)
    normed = insightface_embedding(emb_session, source_image, source.landmarks)
    np.testing.assert_allclose(normed, source.embedding / np.linalg.norm(source.embedding), atol=1e-5)
    want, mask = insightface_swap(create_session(selection.swapper.path), foreign_emap(), photo, target_kps, normed)
    diff = np.abs(result.image.astype(int) - want.astype(int)).max(axis=2)
    inside = mask > 0
    print(f"insightface recipe vs ffkit: max |diff| {diff.max()}, pixels differing {np.count_nonzero(diff)} of "
          f"{np.count_nonzero(inside)} under insightface's paste mask; outside it {np.count_nonzero(diff[~inside])}")
    assert inside.sum() > 1000 and diff.max() <= 1   # one rounding step (insightface truncates, ffkit rounds)
    assert np.count_nonzero(diff[~inside]) == 0      # exactly the frame where insightface leaves it


def test_colour_order_matters_for_this_swapper(setup):
    """The test above would catch a BGR/RGB mix-up: the swapper's output moves by much more than
    a rounding step when its input channels are swapped."""
    selection, _ = setup
    session = create_session(selection.swapper.path)
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    latent = rng.normal(size=(1, 512)).astype(np.float32)
    latent /= np.linalg.norm(latent)
    a = session.run(None, {"target": target, "source": latent})[0]
    b = session.run(None, {"target": target[:, ::-1].copy(), "source": latent})[0][:, ::-1]
    assert np.abs(a - b).max() * 255 > 5
