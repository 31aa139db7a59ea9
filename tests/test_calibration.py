"""Calibration readers (images and ready tensors -> recipe inputs) and the calibration statistics."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import write_images

from ffkit.recipes import get_recipe
from ffkit.validation.calibration import DETECTOR_MAX_SIDE, CalibrationError, load_calibration, read_latents, sample_set


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "calib"
    write_images(folder, 4, sizes=((96, 80), (700, 300), (64, 64)))
    return folder


def test_detector_gets_whole_images_resized_and_padded(images):
    recipe = get_recipe("retinaface_mobilenet0.25")
    cs = load_calibration(recipe, images)
    assert len(cs) == 4 and not cs.skipped
    shapes = [s["input"].shape for s in cs]
    assert shapes[0] == (1, 3, 96, 96)                         # 80x96 padded to multiples of 32
    assert shapes[1][2:] == (288, DETECTOR_MAX_SIDE)            # 300x700 scaled down to long side 640 (274), padded
    assert all(s[2] % 32 == 0 and s[3] % 32 == 0 for s in shapes)
    import cv2
    first = cv2.imread(str(sorted(images.iterdir())[0]))
    # BGR minus (104, 117, 123), no scaling; the padding is the mean colour (0)
    np.testing.assert_allclose(cs.samples[0]["input"][0, :, :80, :96],
                               (first.astype(np.float32) - [104, 117, 123]).transpose(2, 0, 1))
    assert not cs.samples[0]["input"][0, :, 80:, :].any()


@pytest.mark.parametrize("name, size, low, high", [("arcface_iresnet18", 112, -1, 1), ("gfpgan_v1.4", 512, -1, 1),
                                                   ("simswap_224", 224, 0, 1), ("inswapper_128", 128, 0, 1)])
def test_crops_and_ranges(images, name, size, low, high):
    recipe = get_recipe(name)
    cs = load_calibration(recipe, images, samples=3)
    assert len(cs) == 3
    first = cs.samples[0][recipe.inputs[0].name]
    assert first.shape == (1, 3, size, size) and first.dtype == np.float32
    assert first.min() >= low - 1e-6 and first.max() <= high + 1e-6 and first.std() > 0.05
    if recipe.role == "swapper":
        latent = cs.samples[0][recipe.inputs[1].name]
        assert latent.shape == (1, 512)
        np.testing.assert_allclose(np.linalg.norm(latent), 1.0, rtol=1e-5)
        assert not np.allclose(latent, cs.samples[1][recipe.inputs[1].name])


def test_latents_file_is_used_and_cycled(images, tmp_path):
    latents = np.random.default_rng(3).normal(size=(2, 512)).astype(np.float32)
    np.save(tmp_path / "lat.npy", latents)
    cs = load_calibration(get_recipe("simswap_224"), images, latents=tmp_path / "lat.npy")
    got = [s["source_latent"][0] for s in cs]
    np.testing.assert_array_equal(got[0], latents[0])
    np.testing.assert_array_equal(got[1], latents[1])
    np.testing.assert_array_equal(got[2], latents[0])


def test_bad_latents_file(tmp_path):
    np.save(tmp_path / "lat.npy", np.zeros((3, 128), np.float32))
    with pytest.raises(CalibrationError, match="K x 512"):
        read_latents(tmp_path / "lat.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="not a .npy"):
        read_latents(tmp_path / "junk.npy")


def test_ready_tensors_used_as_they_are(tmp_path):
    recipe = get_recipe("simswap_224")
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, (3, 3, 224, 224)).astype(np.float32)
    latent = rng.normal(size=(3, 512)).astype(np.float32)
    np.savez(tmp_path / "a.npz", target=target, source_latent=latent)
    np.save(tmp_path / "b.npy", target[:1])
    np.save(tmp_path / "c.npy", np.zeros((1, 3, 100, 100), np.float32))   # wrong size: skipped
    cs = load_calibration(recipe, tmp_path)
    assert len(cs) == 4 and list(cs.skipped) == ["c.npy"] and "shape" in cs.skipped["c.npy"]
    for i in range(3):
        np.testing.assert_array_equal(cs.samples[i]["target"], target[i:i + 1])
        np.testing.assert_array_equal(cs.samples[i]["source_latent"], latent[i:i + 1])
    np.testing.assert_array_equal(cs.samples[3]["target"], target[:1])       # .npy: first input, latent drawn


def test_unreadable_files_are_skipped_with_a_count(images):
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (images / "notes.txt").write_text("hello")
    (images / ".hidden.png").write_bytes(b"")
    cs = load_calibration(get_recipe("arcface_iresnet18"), images)
    assert len(cs) == 4 and sorted(cs.skipped) == ["broken.jpg", "notes.txt"]
    assert cs.summary()["skipped"] == 2


def test_empty_or_all_bad_folder_is_a_clear_error(tmp_path):
    recipe = get_recipe("arcface_iresnet18")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no usable calibration image.*empty"):
        load_calibration(recipe, empty)
    (empty / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match=r"1 file\(s\), none usable \(e.g. a.jpg"):
        load_calibration(recipe, empty)
    with pytest.raises(CalibrationError, match="no such calibration folder"):
        load_calibration(recipe, tmp_path / "missing")


def test_digest_identifies_the_set(images):
    recipe = get_recipe("arcface_iresnet18")
    a, b = load_calibration(recipe, images), load_calibration(recipe, images)
    assert a.digest == b.digest
    assert load_calibration(recipe, images, samples=2).digest != a.digest
    assert sample_set(recipe).samples[0]["input"].shape == (1, 3, 112, 112)


def test_entropy_threshold_matches_onnxruntime():
    """The vectorised KL search gives onnxruntime's get_entropy_threshold exactly."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from ffkit.toolkit.calibrate import entropy_threshold

    rng = np.random.default_rng(0)
    for bins, tail in ((512, 1.0), (300, 5.0), (256, 0.1)):
        data = np.concatenate([rng.normal(0, 1, 20000), rng.standard_t(2, 500) * tail]).astype(np.float32)
        collector = HistogramCollector("entropy", False, bins, 128, 99.9, "same")
        collector.collect_value({"x": data})
        hist = collector.histogram_dict["x"]
        expected = collector.get_entropy_threshold(hist, 128)
        got = entropy_threshold(hist, 128)
        assert float(got[0]) == float(expected[0]) and float(got[1]) == float(expected[1])
