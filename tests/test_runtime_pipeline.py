"""The runtime as a library: ONNX inspection, sessions, model picking, stages, pipeline, files.

Runs on seed-0 exports (RetinaFace MobileNet-0.25, ArcFace IResNet-18) and a tiny foreign
inswapper-style ONNX; the real inswapper_128 / GFPGAN paths are marked slow.
"""

from __future__ import annotations

import shutil
from fractions import Fraction

import av
import numpy as np
import onnx
import pytest
from runtime_helpers import ASTRONAUT, foreign_emap, make_foreign_inswapper, models_dir

from ffkit.recipes.errors import ArtifactError, FfkitError
from ffkit.recipes.onnx_file import read_model_info
from ffkit.runtime import (
    Detector,
    DetectParams,
    FrameResult,
    MediaError,
    Pipeline,
    SessionPool,
    SwapOptions,
    detect_faces,
    identify,
    iter_frames,
    pick_models,
    probe_video,
    read_emap,
    read_image,
    resolve_providers,
    select_faces,
    swap_image,
    swap_video,
)
from ffkit.runtime.retinaface_decode import Detections
from ffkit.validation.synthetic_media import make_test_video, pan_frames

DETECT = DetectParams(max_side=640, score_threshold=0.8)


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    return models_dir(artifacts, tmp_path_factory.mktemp("rt") / "models")


@pytest.fixture(scope="module")
def pool():
    return SessionPool(resolve_providers("cpu"), intra_op_threads=1)


@pytest.fixture(scope="module")
def pipe(folder, pool):
    return Pipeline.from_models(pick_models(folder), pool, SwapOptions(detect=DETECT, max_faces=2))


@pytest.fixture(scope="module")
def photo():
    return read_image(ASTRONAUT)


@pytest.fixture(scope="module")
def source(pipe, photo):
    return pipe.prepare_source(np.ascontiguousarray(photo[:, ::-1]))


# ---------------------------------------------------------------- ONNX inspection without loading weights

def test_model_info_matches_onnx(folder):
    for path in sorted(folder.glob("*.onnx")):
        info = read_model_info(path)
        model = onnx.load(str(path), load_external_data=False)
        assert info.metadata == {p.key: p.value for p in model.metadata_props}
        assert [t.name for t in info.inputs] == [i.name for i in model.graph.input]
        assert [t.name for t in info.outputs] == [o.name for o in model.graph.output]
        assert info.last_initializer.name == model.graph.initializer[-1].name
        assert info.last_initializer.dims == tuple(model.graph.initializer[-1].dims)


def test_model_info_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff" * 100)
    with pytest.raises(ArtifactError, match="bad.onnx"):
        read_model_info(bad)
    good = tmp_path / "good.onnx"
    make_foreign_inswapper(good)
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="trunc.onnx"):
        read_model_info(trunc)


def test_foreign_inswapper_recognised_and_emap_read(tmp_path):
    path = make_foreign_inswapper(tmp_path / "inswapper_128.onnx")
    ref = identify(path)
    assert ref.foreign and ref.recipe.name == "inswapper_128" and ref.role == "swapper"
    np.testing.assert_array_equal(read_emap(ref), foreign_emap())


# ---------------------------------------------------------------- sessions

def test_resolve_providers():
    have = ["CPUExecutionProvider"]
    assert resolve_providers(None, have).providers == ("CPUExecutionProvider",)
    assert resolve_providers("auto", have).providers == ("CPUExecutionProvider",)
    choice = resolve_providers("cuda,cpu", have)
    assert choice.providers == ("CPUExecutionProvider",)
    assert "CUDAExecutionProvider is not available" in choice.warnings[0]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", gpu).providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert resolve_providers(["TensorRT", "cuda"], gpu).providers == tuple(gpu)
    assert resolve_providers("trt", gpu).providers == tuple(gpu)
    with pytest.raises(FfkitError, match="unknown execution provider 'cudaa'"):
        resolve_providers("cudaa", have)


def test_session_pool_caches_and_warns(folder):
    warnings = []
    pool = SessionPool(resolve_providers("directml"), warn=warnings.append)
    assert len(warnings) == 1 and "DmlExecutionProvider" in warnings[0]
    path = folder / "retinaface_mobilenet0.25.fp32.onnx"
    assert pool.get(path) is pool.get(str(path))
    assert pool.loaded()[0][1] == ("CPUExecutionProvider",)
    with pytest.raises(ArtifactError, match="nope.onnx"):
        pool.get(folder / "nope.onnx")


# ---------------------------------------------------------------- picking models

def test_pick_by_metadata_not_file_name(artifacts, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    # misleading names: the detector is called swapper.onnx, the embedder detector.onnx
    shutil.copy(artifacts.export("retinaface_mobilenet0.25").path, d / "swapper.onnx")
    shutil.copy(artifacts.export("arcface_iresnet18").path, d / "retinaface.onnx")
    make_foreign_inswapper(d / "whatever.onnx")
    other = tmp_path / "other.onnx"
    make_foreign_inswapper(other)
    m = onnx.load(str(other))
    m.graph.input[1].type.tensor_type.shape.dim[1].dim_value = 256   # a 256-d identity: fits no recipe
    onnx.save(m, str(d / "unrelated.onnx"))
    sel = pick_models(d, variant="int8")
    assert sel.detector.path.name == "swapper.onnx" and sel.detector.recipe.name == "retinaface_mobilenet0.25"
    assert sel.embedder.path.name == "retinaface.onnx"
    assert sel.swapper.path.name == "whatever.onnx" and sel.swapper.foreign
    assert any("unrelated.onnx" in n for n in sel.notes)
    assert any("no int8 detector" in n for n in sel.notes)


def test_pick_errors_name_the_folder_or_file(artifacts, folder, tmp_path):
    d = models_dir(artifacts, tmp_path / "noswap", swapper="none")
    with pytest.raises(FfkitError, match=r"noswap: no swapper artifact"):
        pick_models(d)
    with pytest.raises(FfkitError, match=r"no enhancer artifact"):
        pick_models(folder, enhance=True)
    with pytest.raises(FfkitError, match=r"arcface_iresnet18.fp32.onnx: is an embedder artifact"):
        pick_models(folder, swapper=str(folder / "arcface_iresnet18.fp32.onnx"))
    with pytest.raises(FfkitError, match="no simswap_512 artifact"):
        pick_models(folder, swapper="simswap_512")
    with pytest.raises(FfkitError, match="arcface_iresnet18 is an embedder"):
        pick_models(folder, swapper="arcface_iresnet18")
    with pytest.raises(FfkitError, match="models folder not found"):
        pick_models(tmp_path / "missing")
    assert pick_models(folder, swapper="inswapper_128.onnx").swapper.foreign


# ---------------------------------------------------------------- stages

def test_detector_max_side_0_is_detect_py(pipe, photo):
    det: Detector = pipe.detector
    params = DetectParams(max_side=0, score_threshold=0.6, nms_threshold=0.4)
    got = det.detect(photo, params)
    raw = det.raw(photo)
    ref = detect_faces(raw["loc"], raw["conf"], raw["landms"], *photo.shape[:2], score_threshold=0.6,
                       nms_threshold=0.4, top_k=5000, keep_top_k=750)
    np.testing.assert_array_equal(got.as_dets(), ref.as_dets())
    assert len(got) > 0 and np.all(np.diff(got.scores) <= 0)


def test_detector_resize_maps_back_to_frame(pipe, photo):
    big = np.ascontiguousarray(np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1))  # 1024 x 1024
    params = DetectParams(max_side=512, score_threshold=0.8)
    got = pipe.detector.detect(big, params)
    raw = pipe.detector.raw(photo)  # the resize of the exact 2x upscale is exactly the photo
    ref = detect_faces(raw["loc"], raw["conf"], raw["landms"], 512, 512, score_threshold=0.8, resize=0.5)
    assert len(got) == len(ref) > 0
    # photo pixel j is big pixels 2j, 2j + 1, centred at 2j + 0.5: detect.py's u / 0.5 is 0.5 px short
    np.testing.assert_allclose(got.boxes, ref.boxes + 0.5, atol=2e-3)
    np.testing.assert_allclose(got.landmarks, ref.landmarks + 0.5, atol=2e-3)


def test_select_faces_modes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 40], [0, 0, 30, 30], [0, 0, 5, 100]], np.float32)
    dets = Detections(boxes, np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.zeros((4, 5, 2), np.float32))
    assert select_faces(dets) == [0, 1, 2, 3]
    assert select_faces(dets, mode="largest") == [1]
    assert select_faces(dets, max_faces=2) == [0, 1]
    assert select_faces(dets, min_face_size=20) == [1, 2]
    sims = np.array([0.1, 0.5, 0.45, 0.9], np.float32)
    assert select_faces(dets, mode="reference", similarities=sims, threshold=0.45) == [1, 2, 3]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    assert select_faces(empty, mode="largest") == []


# ---------------------------------------------------------------- pipeline

def test_process_frame_changes_only_its_regions(pipe, photo, source):
    before = photo.copy()
    result = pipe.process_frame(photo, source)
    np.testing.assert_array_equal(photo, before)  # input untouched
    assert result.swapped == 2 and len(result.regions) == 2
    changed = np.any(result.image != photo, axis=2)
    assert changed.any()
    assert not changed[~result.changed_mask()].any()
    for face in result.faces:
        if face.swapped:
            x0, y0, x1, y1 = face.regions[0]
            assert changed[y0:y1, x0:x1].any()


def test_process_frame_without_faces_passes_through(folder, pool, photo, source):
    pipe = Pipeline.from_models(pick_models(folder), pool, SwapOptions(detect=DetectParams(score_threshold=0.999)))
    result = pipe.process_frame(photo, source)
    assert result.image is photo and result.swapped == 0 and result.regions == []


def test_reference_mode_swaps_the_matching_face(folder, pool, photo, source):
    opts = SwapOptions(detect=DETECT, select="reference", similarity=0.999)
    pipe = Pipeline.from_models(pick_models(folder), pool, opts)
    reference = pipe.prepare_reference(photo)  # largest face of the photo itself
    result = pipe.process_frame(photo, source, reference)
    dets = pipe.detector.detect(photo, DETECT)
    largest = select_faces(dets, mode="largest")[0]
    assert result.faces[largest].swapped and result.faces[largest].similarity == pytest.approx(1.0, abs=1e-4)
    assert all(f.similarity is not None for f in result.faces)
    assert all(f.similarity >= 0.999 for f in result.faces if f.swapped)


def test_source_without_face_is_one_line_error(folder, pool, photo):
    pipe = Pipeline.from_models(pick_models(folder), pool, SwapOptions(detect=DetectParams(score_threshold=0.999)))
    with pytest.raises(FfkitError, match=r"^face\.jpg: no face found in the source image"):
        pipe.prepare_source(photo, "face.jpg")


def test_swap_image_file(pipe, source, photo, tmp_path):
    out = tmp_path / "out.png"
    summary = swap_image(pipe, source, ASTRONAUT, out)
    result = read_image(out)
    assert result.shape == photo.shape
    assert summary.faces_swapped == 2 and summary.frames_with_faces == 1
    mask = np.zeros(photo.shape[:2], bool)
    for face in summary.faces:
        for x0, y0, x1, y1 in face.regions:
            mask[y0:y1, x0:x1] = True
    assert mask.any() and not mask.all()
    np.testing.assert_array_equal(result[~mask], photo[~mask])
    assert (result[mask] != photo[mask]).any()


def _audio(path):
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        frames = list(c.decode(s))
        return s.codec_context.codec.name, s.codec_context.sample_rate, sum(f.samples for f in frames)


def test_swap_video_keeps_frames_fps_size_audio(pipe, source, photo, tmp_path):
    src = make_test_video(tmp_path / "in.mp4", frames=10, size=(192, 160), fps=Fraction(30000, 1001),
                          frame_fn=pan_frames(photo, 10))
    out = tmp_path / "out.mp4"
    results: list[FrameResult] = []
    ticks = []
    summary = swap_video(pipe, source, src, out, workers=2, on_frame=lambda i, r: results.append(r),
                         progress=lambda done, total: ticks.append((done, total)))
    a, b = probe_video(src), probe_video(out)
    assert (b.width, b.height, b.fps, b.frame_count) == (a.width, a.height, a.fps, a.frame_count) == \
        (192, 160, Fraction(30000, 1001), 10)
    assert b.has_audio and _audio(out) == _audio(src)
    assert summary.frames == 10 and ticks[-1] == (10, 10) and len(results) == 10
    assert summary.frames_with_faces + summary.frames_without_faces == 10
    assert summary.frames_with_faces == sum(r.swapped > 0 for r in results) > 0
    # exact at the pipeline level: in order, nothing outside the regions changed
    for frame, result in zip(iter_frames(src), results):
        changed = np.any(result.image != frame, axis=2)
        assert not changed[~result.changed_mask()].any()
    # the encoded output is the processed frames in order, up to the lossy (yuv420p) re-encode
    decoded = list(iter_frames(out))
    for i, result in enumerate(results):
        errors = [np.mean((result.image.astype(float) - d) ** 2) for d in decoded]
        assert int(np.argmin(errors)) == i
        assert 10 * np.log10(255 ** 2 / errors[i]) > 28  # PSNR, dB


def test_swap_video_failure_leaves_no_output(pipe, source, photo, tmp_path):
    src = make_test_video(tmp_path / "in.mp4", frames=4, size=(64, 64), fps=10)
    out = tmp_path / "out.mp4"

    class Boom(Pipeline):
        def process_frame(self, frame, source, reference=None):
            raise MediaError("boom")

    broken = Boom(pipe.detector, pipe.embedder, pipe.swapper, None, pipe.options)
    with pytest.raises(MediaError, match="boom"):
        swap_video(broken, source, src, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]


def test_simswap_224_swaps_an_image(artifacts, pool, photo, tmp_path):
    d = models_dir(artifacts, tmp_path / "m", swapper="simswap_224")
    sel = pick_models(d)
    assert sel.swapper.recipe.name == "simswap_224"
    assert sel.embedder.recipe.name == "simswap_arcface"       # SimSwap's own identity space, not arcface_torch's
    pipe = Pipeline.from_models(sel, pool, SwapOptions(detect=DETECT, max_faces=1))
    source = pipe.prepare_source(np.ascontiguousarray(photo[:, ::-1]))
    assert source.latent.shape == (1, 512)
    np.testing.assert_allclose(np.linalg.norm(source.latent), 1.0, rtol=1e-5)
    result = pipe.process_frame(photo, source)
    assert result.swapped == 1
    changed = np.any(result.image != photo, axis=2)
    assert changed.any() and not changed[~result.changed_mask()].any()


@pytest.mark.slow
def test_inswapper_128_with_emap_and_gfpgan_enhance(artifacts, pool, photo, tmp_path):
    d = models_dir(artifacts, tmp_path / "m", swapper="inswapper_128", enhancer=True)
    sel = pick_models(d, enhance=True)
    assert sel.swapper.recipe.name == "inswapper_128" and not sel.swapper.foreign
    pipe = Pipeline.from_models(sel, pool, SwapOptions(detect=DETECT, max_faces=1, enhance_blend=0.5))
    source = pipe.prepare_source(np.ascontiguousarray(photo[:, ::-1]))
    emap = read_emap(sel.swapper)
    e = source.embedding / np.linalg.norm(source.embedding)
    expected = e @ emap
    np.testing.assert_allclose(source.latent[0], expected / np.linalg.norm(expected), rtol=1e-4, atol=1e-6)
    result = pipe.process_frame(photo, source)
    assert result.swapped == 1 and len(result.regions) == 2  # swap + enhance
    changed = np.any(result.image != photo, axis=2)
    assert changed.any() and not changed[~result.changed_mask()].any()


def test_embedder_and_swapper_must_share_an_identity_space(artifacts, tmp_path):
    from ffkit.runtime.models import check_pair, require_role

    d = models_dir(artifacts, tmp_path / "m", swapper="simswap_224")
    (d / "simswap_arcface.fp32.onnx").unlink()
    with pytest.raises(FfkitError, match=r"simswap_224\.fp32\.onnx \(simswap_224\) consumes simswap_arcface "
                                         r"identities and no embedder there produces them \(has: "
                                         r"arcface_iresnet18\.fp32\.onnx \(insightface_arcface\)\)"):
        pick_models(d)
    arc = require_role(d / "arcface_iresnet18.fp32.onnx", "embedder", "--embedder")
    sim = require_role(d / "simswap_224.fp32.onnx", "swapper", "--swapper")
    with pytest.raises(FfkitError, match=r"^arcface_iresnet18\.fp32\.onnx \(arcface_iresnet18\) produces "
                                         r"insightface_arcface identities but simswap_224\.fp32\.onnx "
                                         r"\(simswap_224\) consumes simswap_arcface"):
        check_pair(arc, sim)
    check_pair(arc, require_role(models_dir(artifacts, tmp_path / "i") / "inswapper_128.onnx", "swapper", "--swapper"))
