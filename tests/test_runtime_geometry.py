"""Known-answer tests for ffkit.runtime.retinaface_decode, ffkit.runtime.geometry and
ffkit.runtime.templates.

Pure numpy / OpenCV: these tests must not need torch.
"""

import math

import cv2
import numpy as np
import pytest

from ffkit.runtime import geometry, templates
from ffkit.runtime import retinaface_decode as rd

# ---------------------------------------------------------------------------
# RetinaFace priors
# ---------------------------------------------------------------------------

def _prior_boxes_loop(h, w, min_sizes, steps):
    """Literal port of PriorBox.forward (python loops) as a reference."""
    anchors = []
    for k, step in enumerate(steps):
        fh, fw = math.ceil(h / step), math.ceil(w / step)
        for i in range(fh):
            for j in range(fw):
                for m in min_sizes[k]:
                    anchors += [(j + 0.5) * step / w, (i + 0.5) * step / h, m / w, m / h]
    return np.array(anchors, dtype=np.float32).reshape(-1, 4)


def test_prior_boxes_64x64_known_values():
    p = rd.prior_boxes(64, 64)
    # 8x8x2 + 4x4x2 + 2x2x2
    assert p.shape == (168, 4)
    assert p.dtype == np.float32
    expected_head = np.array([
        [0.0625, 0.0625, 0.25, 0.25],   # level 0, i=0, j=0, min_size 16
        [0.0625, 0.0625, 0.50, 0.50],   # min_size 32
        [0.1875, 0.0625, 0.25, 0.25],   # j=1
        [0.1875, 0.0625, 0.50, 0.50],
    ], dtype=np.float32)
    np.testing.assert_array_equal(p[:4], expected_head)
    # row i=1, j=0 of level 0 starts after 8 columns * 2 sizes
    np.testing.assert_array_equal(p[16], [0.0625, 0.1875, 0.25, 0.25])
    # level 1 (step 16, sizes 64/128) starts at 128
    np.testing.assert_array_equal(p[128], [0.125, 0.125, 1.0, 1.0])
    np.testing.assert_array_equal(p[129], [0.125, 0.125, 2.0, 2.0])
    # level 2 (step 32, sizes 256/512) starts at 160
    np.testing.assert_array_equal(p[160], [0.25, 0.25, 4.0, 4.0])
    np.testing.assert_array_equal(p[167], [0.75, 0.75, 8.0, 8.0])


def test_prior_boxes_non_square_and_ceil():
    p = rd.prior_boxes(48, 80)
    # level0 6x10, level1 3x5, level2 ceil(1.5)=2 x ceil(2.5)=3; 2 sizes each
    assert p.shape == ((60 + 15 + 6) * 2, 4)
    np.testing.assert_allclose(p[0], [4 / 80, 4 / 48, 16 / 80, 16 / 48], rtol=0, atol=1e-7)
    p = rd.prior_boxes(65, 65)
    assert p.shape == ((81 + 25 + 9) * 2, 4)


@pytest.mark.parametrize("hw", [(64, 64), (65, 97), (333, 517), (480, 640)])
def test_prior_boxes_match_loop_reference(hw):
    h, w = hw
    ref = _prior_boxes_loop(h, w, rd.DEFAULT_MIN_SIZES, rd.DEFAULT_STEPS)
    np.testing.assert_array_equal(rd.prior_boxes(h, w), ref)


def test_prior_boxes_clip_and_readonly():
    p = rd.prior_boxes(64, 64, clip=True)
    assert p.max() <= 1.0 and p.min() >= 0.0
    with pytest.raises(ValueError):
        p[0, 0] = 3.0


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

def test_decode_boxes_hand_computed():
    priors = np.array([[0.5, 0.5, 0.2, 0.4],
                       [0.25, 0.75, 0.1, 0.1]], dtype=np.float32)
    loc = np.array([[1.0, -1.0, 0.0, math.log(2.0) / 0.2],
                    [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    boxes = rd.decode_boxes(loc, priors, (0.1, 0.2))
    # prior 0: cx = .5 + 1*.1*.2 = .52, cy = .5 - .1*.4 = .46, w = .2, h = .4*2 = .8
    expected = np.array([[0.42, 0.06, 0.62, 0.86],
                         [0.20, 0.70, 0.30, 0.80]], dtype=np.float32)
    np.testing.assert_allclose(boxes, expected, atol=1e-6)


def test_decode_landmarks_hand_computed():
    priors = np.array([[0.5, 0.5, 0.2, 0.4]], dtype=np.float32)
    d = np.array([[1, 0, 0, 1, -1, 0, 0, -1, 2, 2]], dtype=np.float32)
    lm = rd.decode_landmarks(d, priors, (0.1, 0.2))
    # x: .5 + dx * .1 * .2 ; y: .5 + dy * .1 * .4
    expected = np.array([[0.52, 0.5, 0.5, 0.54, 0.48, 0.5, 0.5, 0.46, 0.54, 0.58]],
                        dtype=np.float32)
    np.testing.assert_allclose(lm, expected, atol=1e-6)


def _brute_force_nms(boxes, scores, thr):
    n = len(scores)
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    iou = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            w = max(0.0, min(x2[a], x2[b]) - max(x1[a], x1[b]) + 1)
            h = max(0.0, min(y2[a], y2[b]) - max(y1[a], y1[b]) + 1)
            inter = w * h
            iou[a, b] = inter / (area[a] + area[b] - inter)
    order = sorted(range(n), key=lambda i: -scores[i])
    suppressed = np.zeros(n, bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > thr
    return keep


@pytest.mark.parametrize("seed,thr", [(0, 0.4), (1, 0.3), (2, 0.5), (3, 0.7)])
def test_nms_matches_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    n = 250
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.permutation(n).astype(np.float64) / n + 0.001  # distinct
    keep = rd.nms(boxes, scores, thr)
    assert keep.dtype == np.int64
    assert keep.tolist() == _brute_force_nms(boxes, scores, thr)


def test_nms_plus_one_convention():
    # Boxes sharing the column x=10: zero IoU without the +1; with it they
    # overlap in a 1-pixel column: inter = 1*11, union = 2*121 - 11.
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    iou = 11.0 / (2 * 121 - 11)
    assert rd.nms(boxes, scores, iou - 1e-6).tolist() == [0]
    assert rd.nms(boxes, scores, iou + 1e-6).tolist() == [0, 1]


def test_detect_faces_hand_made():
    h = w = 64
    a = rd.prior_boxes(h, w).shape[0]
    loc = np.zeros((a, 4), np.float32)
    landms = np.zeros((a, 10), np.float32)
    conf = np.zeros((a, 2), np.float32)
    conf[:, 0] = 1.0
    # anchor 0: centre (4, 4) px, size 16 -> box [-4, -4, 12, 12]
    conf[0] = [0.1, 0.9]
    landms[0] = [1, 0, 0, 1, 0, 0, -1, 0, 0, -1]  # +/- 0.1*16 = 1.6 px
    # anchor 1: same centre, size 32 shrunk to 17.6 -> heavily overlaps anchor 0
    conf[1] = [0.2, 0.8]
    loc[1, 2:] = math.log(17.6 / 32) / 0.2
    # anchor 8*2*2+... pick level-1 anchor 128: centre (8, 8), size 64 -> [-24,-24,40,40]
    conf[128] = [0.3, 0.7]
    # below threshold
    conf[2] = [0.99, 0.01]

    det = rd.detect_faces(loc, conf, landms, h, w, score_threshold=0.02, nms_threshold=0.4)
    assert len(det) == 2
    np.testing.assert_allclose(det.scores, [0.9, 0.7], atol=1e-7)
    np.testing.assert_allclose(det.boxes, [[-4, -4, 12, 12], [-24, -24, 40, 40]], atol=1e-4)
    np.testing.assert_allclose(det.landmarks[0],
                               [[5.6, 4], [4, 5.6], [4, 4], [2.4, 4], [4, 2.4]], atol=1e-4)
    np.testing.assert_allclose(det.landmarks[1], np.full((5, 2), 8.0), atol=1e-4)
    assert det.as_dets().shape == (2, 15)

    # resize: the frame was scaled by 2 to make the input -> divide by 2
    det2 = rd.detect_faces(loc, conf, landms, h, w, resize=2.0)
    np.testing.assert_allclose(det2.boxes, det.boxes / 2, atol=1e-5)
    np.testing.assert_allclose(det2.landmarks, det.landmarks / 2, atol=1e-5)

    # keep_top_k and threshold
    det3 = rd.detect_faces(loc, conf, landms, h, w, keep_top_k=1)
    assert len(det3) == 1 and det3.scores[0] == np.float32(0.9)
    det4 = rd.detect_faces(loc, conf, landms, h, w, score_threshold=0.75)
    assert len(det4) == 1
    # without the overlapping anchor 0, anchor 1 survives NMS
    conf[0] = [1.0, 0.0]
    det5 = rd.detect_faces(loc, conf, landms, h, w)
    np.testing.assert_allclose(det5.scores, [0.8, 0.7], atol=1e-7)


def test_detect_faces_empty_and_shape_check():
    a = rd.prior_boxes(64, 64).shape[0]
    det = rd.detect_faces(np.zeros((a, 4)), np.tile([1.0, 0.0], (a, 1)), np.zeros((a, 10)), 64, 64)
    assert len(det) == 0
    assert det.boxes.shape == (0, 4) and det.landmarks.shape == (0, 5, 2)
    with pytest.raises(ValueError):
        rd.detect_faces(np.zeros((a + 1, 4)), np.zeros((a + 1, 2)), np.zeros((a + 1, 10)), 64, 64)


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------

INSIGHTFACE_ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def test_arcface_templates():
    np.testing.assert_array_equal(templates.ARCFACE_112_TEMPLATE, INSIGHTFACE_ARCFACE_DST)
    np.testing.assert_array_equal(templates.arcface_template(112), INSIGHTFACE_ARCFACE_DST)
    t128 = templates.arcface_template(128)
    np.testing.assert_allclose(t128[:, 0], INSIGHTFACE_ARCFACE_DST[:, 0] + 8, atol=1e-5)
    np.testing.assert_array_equal(t128[:, 1], INSIGHTFACE_ARCFACE_DST[:, 1])
    np.testing.assert_allclose(templates.arcface_template(256), INSIGHTFACE_ARCFACE_DST * 2 + [16, 0],
                               atol=1e-4)
    np.testing.assert_allclose(templates.arcface_template(224), INSIGHTFACE_ARCFACE_DST * 2, atol=1e-4)
    with pytest.raises(ValueError):
        templates.arcface_template(100)


def test_ffhq_and_simswap_templates():
    ffhq = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]])
    np.testing.assert_array_equal(templates.FFHQ_512_TEMPLATE, ffhq)
    np.testing.assert_array_equal(templates.ffhq_template(512), ffhq)
    np.testing.assert_allclose(templates.ffhq_template(256), ffhq / 2)
    s512 = templates.simswap_templates(512, "ffhq")
    assert s512.shape == (1, 5, 2)
    np.testing.assert_array_equal(s512[0], ffhq)
    s224 = templates.simswap_templates(224, "None")
    assert s224.shape == (5, 5, 2)
    # frontal legacy template (src3), doubled for 224
    np.testing.assert_allclose(s224[2], np.array(
        [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493],
         [42.463, 87.010], [69.537, 87.010]]) * 2, atol=1e-4)


# ---------------------------------------------------------------------------
# Similarity estimation
# ---------------------------------------------------------------------------

def _similarity(scale, angle_deg, tx, ty):
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


@pytest.mark.parametrize("params", [(1.0, 0.0, 0.0, 0.0), (2.3, 17.0, -40.5, 12.25),
                                    (0.37, -123.0, 300.0, -7.0), (5.0, 179.0, 1.0, 2.0)])
def test_estimate_similarity_recovers_exact_transform(params):
    m_true = _similarity(*params)
    rng = np.random.default_rng(7)
    src = rng.uniform(-50, 150, (5, 2))
    dst = geometry.transform_points(src, m_true)
    m = geometry.estimate_similarity(src, dst)
    assert m.shape == (2, 3) and m.dtype == np.float64
    np.testing.assert_allclose(m, m_true, atol=1e-9)


def test_estimate_similarity_least_squares_optimum():
    # With noise, perturbing the estimate must not lower the squared error.
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (5, 2))
    dst = geometry.transform_points(src, _similarity(1.5, 30, 5, 5)) + rng.normal(0, 2, (5, 2))
    m = geometry.estimate_similarity(src, dst)

    def err(a, b, tx, ty):
        mm = np.array([[a, -b, tx], [b, a, ty]])
        return np.sum((geometry.transform_points(src, mm) - dst) ** 2)

    p0 = np.array([m[0, 0], m[1, 0], m[0, 2], m[1, 2]])
    e0 = err(*p0)
    for k in range(4):
        for eps in (1e-4, -1e-4):
            p = p0.copy()
            p[k] += eps
            assert err(*p) >= e0


def test_arcface_norm_matrix_maps_landmarks_to_template():
    tmpl = templates.arcface_template(128)
    m_true = _similarity(2.0, 12.0, 100.0, 80.0)  # crop -> frame
    lmk = geometry.transform_points(tmpl, m_true)
    m = templates.arcface_norm_matrix(lmk, 128)
    np.testing.assert_allclose(geometry.transform_points(lmk, m), tmpl, atol=1e-4)


def test_simswap_norm_matrix_picks_matching_pose():
    crop_to_frame = _similarity(1.7, -8.0, 200.0, 50.0)
    for idx in range(5):
        tmpl = templates.simswap_templates(224, "None")[idx]
        lmk = geometry.transform_points(tmpl, crop_to_frame)
        m, chosen = templates.simswap_norm_matrix(lmk, 224)
        assert chosen == idx
        np.testing.assert_allclose(geometry.transform_points(lmk, m), tmpl, atol=1e-3)
    lmk = geometry.transform_points(templates.FFHQ_512_TEMPLATE, crop_to_frame)
    m, chosen = templates.simswap_norm_matrix(lmk, 512)  # ffhq mode
    assert chosen == 0
    np.testing.assert_allclose(geometry.transform_points(lmk, m), templates.FFHQ_512_TEMPLATE, atol=1e-3)


def test_gfpgan_lmeds_matrix_on_clean_landmarks():
    lmk = geometry.transform_points(templates.FFHQ_512_TEMPLATE, _similarity(0.4, 5.0, 30.0, 40.0))
    m = templates.gfpgan_norm_matrix(lmk, 512)
    np.testing.assert_allclose(m, geometry.estimate_similarity(lmk, templates.FFHQ_512_TEMPLATE),
                               atol=1e-3)


# ---------------------------------------------------------------------------
# Warp and paste back
# ---------------------------------------------------------------------------

def _smooth_frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 3)
    return np.clip(big, 0, 255).astype(np.uint8)


def _face_landmarks(scale, angle, cx, cy, size=128):
    tmpl = templates.arcface_template(size)
    c = np.array([size / 2, size / 2])
    a = math.radians(angle)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (tmpl - c) @ r.T * scale + [cx, cy]


def _inswapper_reference(frame, face, m):
    """Whole-frame blend exactly as insightface INSwapper.get (paste_back)."""
    im = cv2.invertAffineTransform(m)
    hh, ww = frame.shape[:2]
    white = np.full(face.shape[:2], 255, dtype=np.float32)
    fake = cv2.warpAffine(face, im, (ww, hh), borderValue=0.0)
    white = cv2.warpAffine(white, im, (ww, hh), borderValue=0.0)
    white[white > 20] = 255
    ys, xs = np.where(white == 255)
    ms = int(np.sqrt((ys.max() - ys.min()) * (xs.max() - xs.min())))
    k = max(ms // 10, 10)
    white = cv2.erode(white, np.ones((k, k), np.uint8), iterations=1)
    k = max(ms // 20, 5)
    white = cv2.GaussianBlur(white, (2 * k + 1, 2 * k + 1), 0)
    white /= 255
    mk = white[:, :, None]
    return (mk * fake + (1 - mk) * frame.astype(np.float32)).astype(np.uint8)


def _touched_region(frame_shape, m, crop, dilate=2):
    im = cv2.invertAffineTransform(m)
    ones = np.ones((crop, crop), np.float32)
    reg = cv2.warpAffine(ones, im, (frame_shape[1], frame_shape[0])) > 0
    return cv2.dilate(reg.astype(np.uint8), np.ones((2 * dilate + 1,) * 2, np.uint8)) > 0


def test_warp_face_matches_cv2_and_border():
    frame = _smooth_frame(200, 300)
    m = templates.arcface_norm_matrix(_face_landmarks(1.0, 10, 150, 100), 128)
    crop = geometry.warp_face(frame, m, 128)
    np.testing.assert_array_equal(crop, cv2.warpAffine(frame, m, (128, 128), borderValue=0.0))
    # fully outside the frame -> border colour
    m_out = m.copy()
    m_out[:, 2] += 10000
    gray = geometry.warp_face(frame, m_out, 64, border_value=templates.GFPGAN_BORDER_VALUE)
    assert gray.shape == (64, 64, 3)
    assert (gray == np.array(templates.GFPGAN_BORDER_VALUE, np.uint8)).all()


@pytest.mark.parametrize("case", [
    dict(scale=1.0, angle=12.0, cx=240, cy=180),    # fully inside
    dict(scale=1.6, angle=-25.0, cx=30, cy=20),     # clipped by the top-left corner
    dict(scale=0.8, angle=90.0, cx=470, cy=350),    # clipped bottom-right
])
def test_paste_back_identity_swap(case):
    frame = _smooth_frame(360, 480, seed=1)
    before = frame.copy()
    m = templates.arcface_norm_matrix(_face_landmarks(**case), 128)
    crop = geometry.warp_face(frame, m, 128)
    out = geometry.paste_back(frame, crop, m)

    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(frame, before)  # input untouched

    # Outside the pixels the warped crop can touch: exactly unchanged.
    touched = _touched_region(frame.shape, m, 128)
    assert np.array_equal(out[~touched], frame[~touched])

    # Well inside the face (away from the feathered edge): resampling error only.
    im = cv2.invertAffineTransform(m)
    inner = np.zeros((128, 128), np.float32)
    inner[32:96, 32:96] = 1
    core = cv2.warpAffine(inner, im, (frame.shape[1], frame.shape[0])) > 0.999
    # Near the frame border the crop's black (out-of-frame) pixels bleed in
    # through bilinear sampling, as in the original; that is a mask edge too.
    core[:4, :] = core[-4:, :] = False
    core[:, :4] = core[:, -4:] = False
    if core.any():
        diff = np.abs(out.astype(np.int16) - frame.astype(np.int16))[core]
        assert diff.max() <= 6
        assert diff.mean() < 1.5

    # Same result as insightface's whole-frame computation, up to OpenCV's
    # sub-pixel rounding of the shifted warp.
    ref = _inswapper_reference(frame, crop, m)
    d = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    assert d.max() <= 2
    assert (d > 0).mean() < 0.005


def test_paste_back_options_and_degenerate():
    frame = _smooth_frame(200, 260, seed=2)
    m = templates.arcface_norm_matrix(_face_landmarks(1.0, 0.0, 130, 100), 128)
    face = np.full((128, 128, 3), 255, np.uint8)
    # zero face mask -> nothing changes
    out = geometry.paste_back(frame, face, m, face_mask=np.zeros((128, 128), np.float32))
    np.testing.assert_array_equal(out, frame)
    # no erosion, no blur: centre pixel replaced exactly, rounding variant too
    for rnd in (False, True):
        out = geometry.paste_back(frame, face, m, erode_size=0, blur_radius=0, round_output=rnd)
        assert (out[100, 130] == 255).all()
    # face entirely outside the frame -> unchanged copy
    m_out = m.copy()
    m_out[:, 2] -= 5000
    out = geometry.paste_back(frame, face, m_out)
    np.testing.assert_array_equal(out, frame)
    assert out is not frame
    with pytest.raises(TypeError):
        geometry.paste_back(frame.astype(np.float32), face, m)


# ---------------------------------------------------------------------------
# Template dispatch, paste region, in-place paste
# ---------------------------------------------------------------------------

def test_template_for_size():
    assert [templates.template_for_size(s) for s in (112, 128, 224, 512, 256, 336)] == [
        "arcface_112", "arcface_128", "simswap_224", "ffhq_512", "arcface_128", "arcface_112"]
    with pytest.raises(ValueError):
        templates.template_for_size(100)


def test_norm_matrix_dispatches_to_the_originals():
    lm = _face_landmarks(1.3, 8.0, 200, 150)
    np.testing.assert_array_equal(templates.norm_matrix("arcface_112", lm, 112), templates.arcface_norm_matrix(lm, 112))
    np.testing.assert_array_equal(templates.norm_matrix("arcface_128", lm, 128), templates.arcface_norm_matrix(lm, 128))
    np.testing.assert_array_equal(templates.norm_matrix("arcface_128", lm, 256), templates.arcface_norm_matrix(lm, 256))
    np.testing.assert_array_equal(templates.norm_matrix("arcface_112", lm, 224), templates.arcface_norm_matrix(lm, 224))
    np.testing.assert_array_equal(templates.norm_matrix("simswap_224", lm, 224),
                                  templates.simswap_norm_matrix(lm, 224)[0])
    np.testing.assert_array_equal(templates.norm_matrix("ffhq_512", lm, 512),
                                  templates.simswap_norm_matrix(lm, 512, "ffhq")[0])
    np.testing.assert_array_equal(templates.norm_matrix("ffhq_512", lm, 512, lmeds=True),
                                  templates.gfpgan_norm_matrix(lm, 512))
    # arcface_128 at a size that is also a multiple of 112 keeps the 128 family (+8 px shift, scaled)
    m = templates.norm_matrix("arcface_128", lm, 896)
    np.testing.assert_allclose(geometry.transform_points(lm, m), templates.arcface_template(128) * 7, atol=1e-3)
    with pytest.raises(ValueError):
        templates.norm_matrix("arcface_112", lm, 128)
    with pytest.raises(ValueError):
        templates.norm_matrix("nope", lm, 128)


@pytest.mark.parametrize("case", [
    dict(scale=1.0, angle=12.0, cx=240, cy=180),
    dict(scale=1.6, angle=-25.0, cx=30, cy=20),
    dict(scale=0.5, angle=170.0, cx=470, cy=350),
])
def test_paste_region_bounds_every_change_and_in_place_paste(case):
    frame = _smooth_frame(360, 480, seed=3)
    m = templates.arcface_norm_matrix(_face_landmarks(**case), 128)
    face = np.random.default_rng(4).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = geometry.paste_back(frame, face, m)
    x0, y0, x1, y1 = geometry.paste_region(frame.shape, m, 128)
    assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 360
    inside = np.zeros(frame.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    changed = np.any(out != frame, axis=2)
    assert changed.any() and not changed[~inside].any()
    # the region is not wastefully large: the changes reach near its edges (blur + 3 px margin)
    ys, xs = np.nonzero(changed)
    assert xs.min() - x0 < 40 and ys.min() - y0 < 40
    # in place: same pixels, same array
    target = frame.copy()
    res = geometry.paste_back(target, face, m, out=target)
    assert res is target
    np.testing.assert_array_equal(target, out)
    with pytest.raises(ValueError):
        geometry.paste_back(frame, face, m, out=np.zeros((10, 10, 3), np.uint8))
    m_out = m.copy()
    m_out[:, 2] -= 5000
    assert geometry.paste_region(frame.shape, m_out, 128) is None
