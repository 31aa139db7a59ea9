"""The pipeline options of the issue "The rest of the pipeline": each changes only what it should.

``--mask box,region`` (the parser's regions, combined with the box by their minimum), ``--color-match``
(LAB mean/std of the face matched to the target's inside the mask), ``--landmarks 68`` (alignment
from the landmarker's points turned into 5) and ``--frame-enhance`` (the whole frame upscaled).
Models are the seed-0 exports (parser, landmarker, upscaler) with the tiny foreign inswapper.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from cli_helpers import ffkit
from runtime_helpers import ASTRONAUT, FAST_ARGS, link, models_dir

from ffkit.runtime.color_match import lab_statistics, match_colors
from ffkit.runtime.detector import DetectParams
from ffkit.runtime.face_masks import DEFAULT_REGIONS, REGIONS
from ffkit.runtime.frame_enhancer import FrameEnhanceOptions
from ffkit.runtime.frame_pipeline import Pipeline, SwapOptions
from ffkit.runtime.geometry import warp_face
from ffkit.runtime.models import pick_models
from ffkit.runtime.sessions import SessionPool, resolve_providers
from ffkit.toolkit.cli_runtime import DEFAULT_REGIONS_CLI

DETECT = DetectParams(max_side=640, score_threshold=0.8)


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    root = models_dir(artifacts, tmp_path_factory.mktemp("options") / "models")
    link(artifacts.export("bisenet_faceparsing").path, root / "bisenet_faceparsing.fp32.onnx")
    return root


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(ASTRONAUT))


def pipeline(folder, **options) -> tuple[Pipeline, object]:
    opts = SwapOptions(detect=DETECT, max_faces=1, **options)
    chosen = pick_models(folder, parser="region" in opts.mask, landmarks68=opts.landmarks == 68)
    pipe = Pipeline.from_models(chosen, SessionPool(resolve_providers("cpu")), opts)
    return pipe, pipe.prepare_source(np.ascontiguousarray(cv2.imread(str(ASTRONAUT))[:, ::-1]))


def test_cli_default_regions_are_the_runtime_ones():
    assert DEFAULT_REGIONS_CLI == DEFAULT_REGIONS


def test_region_mask_changes_only_the_parsed_face(folder, photo):
    """Box alone is insightface's paste; box,region leaves every pixel the parser's region does
    not cover (after feathering) exactly as the frame was, and changes fewer pixels."""
    box_pipe, source = pipeline(folder)
    region_pipe, _ = pipeline(folder, mask=("box", "region"))
    box_out = box_pipe.process_frame(photo, source)
    region_out = region_pipe.process_frame(photo, source)
    assert box_out.swapped == region_out.swapped == 1
    face = region_out.faces[0]
    lm = np.asarray(face.landmarks, np.float32)
    swapped_crop, m = region_pipe.swapper.swap_crop(photo, lm, source.latent)
    region = region_pipe.parser.region_mask(swapped_crop, DEFAULT_REGIONS)
    # where the region mask is 0 in crop space, warped back it contributes nothing: frame kept
    inv = cv2.invertAffineTransform(m)
    covered = cv2.warpAffine(region, inv, (photo.shape[1], photo.shape[0])) > 0
    covered = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0   # bilinear reach
    changed_region = np.any(region_out.image != photo, axis=2)
    changed_box = np.any(box_out.image != photo, axis=2)
    assert changed_region.any() and not (changed_region & ~covered).any()
    assert changed_region.sum() < changed_box.sum()


def test_color_match_moves_the_face_statistics_to_the_target(folder, photo):
    pipe, source = pipeline(folder, color_match=True)
    plain_pipe, _ = pipeline(folder)
    lm = plain_pipe.detector.detect(photo, DETECT).landmarks[0]
    face, m = plain_pipe.swapper.swap_crop(photo, lm, source.latent)
    target = warp_face(photo, m, plain_pipe.swapper.crop_size)
    from ffkit.runtime.face_masks import box_mask

    mask = box_mask(plain_pipe.swapper.crop_size)
    matched = match_colors(face, target, mask)
    t_mean, t_std = lab_statistics(target, mask)
    f_mean, f_std = lab_statistics(face, mask)
    m_mean, m_std = lab_statistics(matched, mask)
    # the swapped face's statistics were far off; matched ones equal the target's (uint8 rounding)
    assert np.abs(f_mean - t_mean).max() > 2.0
    np.testing.assert_allclose(m_mean, t_mean, atol=0.6)
    np.testing.assert_allclose(m_std, t_std, atol=0.6, rtol=0.03)
    # in the pipeline: pixels outside the paste region are the frame's, inside they changed
    out = pipe.process_frame(photo, source)
    plain = plain_pipe.process_frame(photo, source)
    outside = ~out.changed_mask()
    assert np.array_equal(out.image[outside], photo[outside])
    assert np.abs(out.image.astype(int) - plain.image.astype(int)).max() > 0


def test_unknown_mask_and_region_names_are_one_line():
    from ffkit.recipes.errors import FfkitError

    with pytest.raises(FfkitError, match="masks are box and/or region"):
        SwapOptions(mask=("box", "ellipse"))
    with pytest.raises(FfkitError) as err:
        SwapOptions(mask=("region",), mask_regions=("skin", "beard"))
    assert "beard" in str(err.value) and "nose" in str(err.value) and "\n" not in str(err.value)
    assert set(DEFAULT_REGIONS) <= set(REGIONS)


@pytest.mark.slow
def test_landmarks_68_align_from_the_fan_points_turned_into_5(artifacts, folder, photo, tmp_path):
    link(artifacts.export("fan_2dfan4").path, folder / "fan_2dfan4.fp32.onnx")
    pipe, source = pipeline(folder, landmarks=68)
    result = pipe.process_frame(photo, source)
    face = result.faces[0]
    points = np.asarray(face.landmarks_68)
    assert points.shape == (68, 2)
    # FaceFusion's convert_face_landmark_68_to_5, written out: eye centres, nose tip, mouth corners
    five = np.array([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
    expected = photo.copy()
    pipe.swapper.swap_into(expected, five.astype(np.float32), source.latent)
    assert np.array_equal(result.image, expected)


@pytest.mark.slow
def test_cli_all_options_on_an_image_and_a_video(artifacts, folder, tmp_path):
    """``--mask box,region --color-match --frame-enhance realesrgan_x2plus``: the output is twice
    the size, and equals the upscale of the un-enhanced swap (the upscaler changes only that)."""
    from ffkit.runtime.frame_enhancer import FrameEnhancer
    from ffkit.runtime.media import iter_frames, probe_video
    from ffkit.validation.synthetic_media import make_test_video, pan_frames

    link(artifacts.export("realesrgan_x2plus").path, folder / "realesrgan_x2plus.fp32.onnx")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(ASTRONAUT)), (128, 128), interpolation=cv2.INTER_AREA))
    args = ["--mask", "box,region", "--color-match", "--models", folder, *FAST_ARGS]
    plain, enhanced = tmp_path / "plain.png", tmp_path / "enhanced.png"
    for out, extra in ((plain, []), (enhanced, ["--frame-enhance", "realesrgan_x2plus"])):
        result = ffkit("swap", "--source", ASTRONAUT, "--target", small, "-o", out, *args, *extra,
                       "--json", out.with_suffix(".json"))
        assert result.exit_code == 0, result.output
    assert json.loads(plain.with_suffix(".json").read_text())["faces_swapped"] >= 1
    chosen = pick_models(folder, frame_enhance="realesrgan_x2plus")
    upscaler = FrameEnhancer(SessionPool(resolve_providers("cpu")).get(chosen.frame_enhancer.path),
                             chosen.frame_enhancer.recipe, FrameEnhanceOptions())
    got = cv2.imread(str(enhanced))
    assert got.shape == (256, 256, 3)
    assert np.array_equal(got, upscaler.enhance(cv2.imread(str(plain))))

    clip = tmp_path / "clip.mp4"
    make_test_video(clip, frames=3, size=(96, 96), fps=5, with_audio=True,
                    frame_fn=pan_frames(cv2.imread(str(ASTRONAUT)), 3))
    out = tmp_path / "clip_out.mp4"
    result = ffkit("swap", "--source", ASTRONAUT, "--target", clip, "-o", out, *args,
                   "--frame-enhance", "realesrgan_x2plus", "--frame-enhance-size", "input")
    assert result.exit_code == 0, result.output
    info = probe_video(out)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (96, 96, 3, True)
    assert len(list(iter_frames(out))) == 3
