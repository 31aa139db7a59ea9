"""Real-ESRGAN: the recipes' axis naming, and the torch-free frame enhancer against RealESRGANer.

The tiling tests run a tiny stand-in network built here (3x3 conv -> nearest upsampling x s ->
3x3 conv, zero padded: a receptive field of about 2 input pixels, so tiles interact through
their context) and compare :class:`FrameEnhancer` with an independent numpy transcription of
xinntao/Real-ESRGAN ``realesrgan/utils.py`` (commit a4abfb2) ``RealESRGANer.enhance``,
``pre_process``, ``tile_process`` and ``post_process``. The real seed-0 exports are used only
for the reference vectors (slow).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnx
import pytest
import reference
from onnx import TensorProto, helper, numpy_helper

from ffkit.recipes import get_recipe
from ffkit.recipes.spec import TensorSpec
from ffkit.runtime.frame_enhancer import (
    FrameEnhanceError,
    FrameEnhanceOptions,
    FrameEnhancer,
    tile_grid,
    upscale_factor,
)
from ffkit.runtime.sessions import create_session

# --------------------------------------------------------------------------- the stand-in network


def stand_in_model(scale: int, seed: int = 0) -> onnx.ModelProto:
    """``input`` N x 3 x H x W -> conv3x3(3->6) -> nearest x scale -> conv3x3(6->3) -> ``output``."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, f"{scale}H", f"{scale}W"])
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 6).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.25, (3, 6, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.full(3, 0.5, np.float32), "b2"),
             numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["f1"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["f1", "", "scales"], ["up"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Conv", ["up", "w2", "b2"], ["output"], pads=[1, 1, 1, 1])]
    return helper.make_model(helper.make_graph(nodes, "stand_in", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def sessions():
    return {s: create_session(stand_in_model(s)) for s in (4, 2)}


def recipe_of(scale: int):
    return get_recipe(f"realesrgan_x{scale}plus")


def frame(h: int, w: int, channels: int = 3, seed: int = 3) -> np.ndarray:
    """A smooth gradient plus noise, ``h x w x channels`` uint8 (``h x w`` for 1 channel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 100 * np.sin(xx / 5.0 + yy / 7.0)
    img = base[..., None] + rng.normal(0, 25, (h, w, channels))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


# --------------------------------------------------------------------------- RealESRGANer, transcribed


def realesrganer_enhance(session, scale, img, tile=0, tile_pad=10, pre_pad=10, outscale=None):
    """``RealESRGANer(scale, tile, tile_pad, pre_pad, half=False).enhance(img, outscale)`` with
    ``alpha_upsampler='realesrgan'``, transcribed line by line from realesrgan/utils.py; the
    torch tensors are numpy arrays, ``F.pad(x, (0, pw, 0, ph), 'reflect')`` is ``np.pad`` mode
    ``reflect`` on the last two axes, ``self.model`` the onnxruntime session."""
    state = {}

    def model(t):
        return session.run(None, {"input": np.ascontiguousarray(t, dtype=np.float32)})[0]

    def pre_process(img):
        t = np.transpose(img, (2, 0, 1)).astype(np.float32)[None]
        if pre_pad != 0:
            t = np.pad(t, ((0, 0), (0, 0), (0, pre_pad), (0, pre_pad)), mode="reflect")
        mod_scale = 2 if scale == 2 else 4 if scale == 1 else None
        state["mod_scale"] = mod_scale
        if mod_scale is not None:
            state["mod_pad_h"], state["mod_pad_w"] = 0, 0
            _, _, h, w = t.shape
            if h % mod_scale != 0:
                state["mod_pad_h"] = mod_scale - h % mod_scale
            if w % mod_scale != 0:
                state["mod_pad_w"] = mod_scale - w % mod_scale
            t = np.pad(t, ((0, 0), (0, 0), (0, state["mod_pad_h"]), (0, state["mod_pad_w"])), mode="reflect")
        return t

    def tile_process(t):
        batch, channel, height, width = t.shape
        output = np.zeros((batch, channel, height * scale, width * scale), np.float32)
        tiles_x = math.ceil(width / tile)
        tiles_y = math.ceil(height / tile)
        for y in range(tiles_y):
            for x in range(tiles_x):
                ofs_x = x * tile
                ofs_y = y * tile
                input_start_x = ofs_x
                input_end_x = min(ofs_x + tile, width)
                input_start_y = ofs_y
                input_end_y = min(ofs_y + tile, height)
                input_start_x_pad = max(input_start_x - tile_pad, 0)
                input_end_x_pad = min(input_end_x + tile_pad, width)
                input_start_y_pad = max(input_start_y - tile_pad, 0)
                input_end_y_pad = min(input_end_y + tile_pad, height)
                input_tile_width = input_end_x - input_start_x
                input_tile_height = input_end_y - input_start_y
                input_tile = t[:, :, input_start_y_pad:input_end_y_pad, input_start_x_pad:input_end_x_pad]
                output_tile = model(input_tile)
                output_start_x = input_start_x * scale
                output_end_x = input_end_x * scale
                output_start_y = input_start_y * scale
                output_end_y = input_end_y * scale
                output_start_x_tile = (input_start_x - input_start_x_pad) * scale
                output_end_x_tile = output_start_x_tile + input_tile_width * scale
                output_start_y_tile = (input_start_y - input_start_y_pad) * scale
                output_end_y_tile = output_start_y_tile + input_tile_height * scale
                output[:, :, output_start_y:output_end_y, output_start_x:output_end_x] = \
                    output_tile[:, :, output_start_y_tile:output_end_y_tile, output_start_x_tile:output_end_x_tile]
        return output

    def post_process(output):
        if state["mod_scale"] is not None:
            _, _, h, w = output.shape
            output = output[:, :, 0:h - state["mod_pad_h"] * scale, 0:w - state["mod_pad_w"] * scale]
        if pre_pad != 0:
            _, _, h, w = output.shape
            output = output[:, :, 0:h - pre_pad * scale, 0:w - pre_pad * scale]
        return output

    def run(img):
        t = pre_process(img)
        out = tile_process(t) if tile > 0 else model(t)
        out = np.clip(post_process(out)[0].astype(np.float32), 0, 1)
        return np.transpose(out[[2, 1, 0], :, :], (1, 2, 0))

    h_input, w_input = img.shape[0:2]
    img = img.astype(np.float32)
    max_range = 65535 if np.max(img) > 256 else 255
    img = img / max_range
    if len(img.shape) == 2:
        img_mode = "L"
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img_mode = "RGBA"
        alpha = img[:, :, 3]
        img = img[:, :, 0:3]
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        alpha = cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB)
    else:
        img_mode = "RGB"
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    output_img = run(img)
    if img_mode == "L":
        output_img = cv2.cvtColor(output_img, cv2.COLOR_BGR2GRAY)
    if img_mode == "RGBA":
        output_alpha = cv2.cvtColor(run(alpha), cv2.COLOR_BGR2GRAY)
        output_img = cv2.cvtColor(output_img, cv2.COLOR_BGR2BGRA)
        output_img[:, :, 3] = output_alpha
    output = (output_img * 255.0).round().astype(np.uint8)
    if outscale is not None and outscale != float(scale):
        output = cv2.resize(output, (int(w_input * outscale), int(h_input * outscale)),
                            interpolation=cv2.INTER_LANCZOS4)
    return output


def enhancer(sessions, scale, **options) -> FrameEnhancer:
    return FrameEnhancer(sessions[scale], recipe_of(scale), FrameEnhanceOptions(**options))


# --------------------------------------------------------------------------- tests


def test_output_axes_are_multiples_of_the_input_axes():
    spec = TensorSpec("output", ("N", 3, "4H", "4W"))
    assert spec.concrete_shape({"N": 2, "H": 24, "W": 40}) == (2, 3, 96, 160)
    assert recipe_of(2).outputs[0].concrete_shape({"N": 1, "H": 24, "W": 40}) == (1, 3, 48, 80)
    assert (upscale_factor(recipe_of(4)), upscale_factor(recipe_of(2))) == (4, 2)
    with pytest.raises(KeyError):
        spec.concrete_shape({"N": 1, "W": 40})


def test_tile_grid_by_hand():
    """A 10 x 25 image, tile 8, tile_pad 2: 2 rows x 4 columns, border tiles clipped, not padded."""
    rows = [((0, 8), (0, 10)), ((8, 10), (6, 10))]
    cols = [((0, 8), (0, 10)), ((8, 16), (6, 18)), ((16, 24), (14, 25)), ((24, 25), (22, 25))]
    expected = [((y0, y1, x0, x1), (py0, py1, px0, px1))
                for (y0, y1), (py0, py1) in rows for (x0, x1), (px0, px1) in cols]
    assert tile_grid(10, 25, 8, 2) == expected


def test_one_tile_covering_the_frame_equals_one_pass(sessions):
    img = frame(21, 30)
    whole = enhancer(sessions, 4, tile=0, pre_pad=3)
    tiled = enhancer(sessions, 4, tile=64, tile_pad=10, pre_pad=3)
    rgb = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_BGR2RGB)
    a, b = whole.upscale_rgb(rgb), tiled.upscale_rgb(rgb)
    assert a.shape == (84, 120, 3)
    assert np.abs(a - b).max() <= 1e-5
    np.testing.assert_array_equal(whole.enhance(img), tiled.enhance(img))


@pytest.mark.parametrize("scale, size, tile, tile_pad, pre_pad", [
    (4, (37, 53), 16, 4, 3),     # non-square, not a multiple of the tile, pre_pad > 0
    (4, (37, 53), 16, 0, 0),     # no context: tile seams show, and must be RealESRGANer's seams
    (4, (20, 45), 12, 2, 10),    # RealESRGANer's default pre_pad
    (2, (35, 51), 16, 4, 2),     # odd sizes: mod padding after the pre_pad
    (2, (34, 49), 10, 2, 0),     # odd width only, no pre_pad
])
def test_tiled_enhance_equals_realesrganer(sessions, scale, size, tile, tile_pad, pre_pad):
    img = frame(*size)
    got = enhancer(sessions, scale, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad).enhance(img)
    expected = realesrganer_enhance(sessions[scale], scale, img, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad)
    assert got.shape == (size[0] * scale, size[1] * scale, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    if tile_pad == 0:   # the comparison can see the grid: without context, tiling changes the result
        untiled = realesrganer_enhance(sessions[scale], scale, img, tile=0, pre_pad=pre_pad)
        assert np.abs(untiled.astype(int) - got.astype(int)).max() > 5


def test_tile_pad_covering_the_receptive_field_makes_tiles_invisible(sessions):
    """The stand-in sees 2 input pixels around each output pixel: with tile_pad 4, tiled = one pass."""
    img = frame(30, 41)
    rgb = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_BGR2RGB)
    tiled = enhancer(sessions, 4, tile=8, tile_pad=4).upscale_rgb(rgb)
    whole = enhancer(sessions, 4, tile=0).upscale_rgb(rgb)
    assert np.abs(tiled - whole).max() <= 1e-5


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_alpha_frames_as_realesrganer(sessions, channels):
    img = frame(19, 26, channels)
    if channels == 4:
        img[..., 3] = np.linspace(0, 255, 26, dtype=np.uint8)[None, :]
    got = enhancer(sessions, 4, tile=8, tile_pad=2, pre_pad=2).enhance(img)
    expected = realesrganer_enhance(sessions[4], 4, img, tile=8, tile_pad=2, pre_pad=2)
    assert got.shape == expected.shape == ((76, 104) if channels == 1 else (76, 104, 4))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("scale", [4, 2])
def test_input_size_mode_resizes_back_with_lanczos(sessions, scale):
    img = frame(27, 33)
    got = enhancer(sessions, scale, tile=10, tile_pad=2, pre_pad=0, size="input").enhance(img)
    expected = realesrganer_enhance(sessions[scale], scale, img, tile=10, tile_pad=2, pre_pad=0, outscale=1)
    assert got.shape == img.shape
    np.testing.assert_array_equal(got, expected)


def test_bad_options_and_frames_are_one_line_errors(sessions):
    with pytest.raises(FrameEnhanceError, match="multiples of 2"):
        enhancer(sessions, 2, tile=15, tile_pad=4)
    with pytest.raises(FrameEnhanceError, match="multiples of 2"):
        enhancer(sessions, 2, tile=16, tile_pad=3)
    enhancer(sessions, 4, tile=15, tile_pad=3)   # scale 4 has no mod padding: any tile
    with pytest.raises(FrameEnhanceError, match="size"):
        enhancer(sessions, 4, size="double")
    with pytest.raises(FrameEnhanceError, match="tile_pad must be a whole number"):
        enhancer(sessions, 4, tile_pad=-1)
    e = enhancer(sessions, 4, pre_pad=10)
    with pytest.raises(FrameEnhanceError, match="uint8"):
        e.enhance(np.zeros((20, 20, 3), np.uint16))
    with pytest.raises(FrameEnhanceError, match="shape"):
        e.enhance(np.zeros((20, 20, 2), np.uint8))
    with pytest.raises(FrameEnhanceError, match="too small for pre_pad") as info:
        e.enhance(np.zeros((8, 30, 3), np.uint8))
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["realesrgan_x4plus", "realesrgan_x2plus"])
def test_seed0_vectors_through_the_exported_onnx(name, artifacts):
    """The enhancer's network pass on the exported seed-0 model gives the reference vectors
    (clamped to [0, 1], BGR), within the manifest tolerance, with one tile or none."""
    tol = reference.manifest(name)["recommended_tolerance"]
    session = create_session(artifacts.export(name).path)
    for (x,), (ref,) in reference.cases(name):
        rgb = np.ascontiguousarray(x[0].transpose(1, 2, 0))
        expected = np.clip(ref[0], 0, 1)[[2, 1, 0]].transpose(1, 2, 0)
        for tile in (0, 64):
            got = FrameEnhancer(session, get_recipe(name), FrameEnhanceOptions(tile=tile, pre_pad=0)).upscale_rgb(rgb)
            np.testing.assert_allclose(got, expected, rtol=tol["rtol"], atol=tol["atol"])


def test_automatic_tiling_is_one_pass_up_to_a_megapixel_and_512_tiles_above():
    """``tile=-1`` (the CLI's and the server's default): small frames go through in one pass,
    exactly as tile 0; frames over 1 MP in 512 tiles (x4plus untiled on 1080p: ~8 GB of maps)."""
    from ffkit.runtime.frame_enhancer import AUTO, AUTO_MAX_PIXELS, AUTO_TILE

    class Stub:
        options = FrameEnhanceOptions(tile=AUTO)

    tile_for = FrameEnhancer.tile_for
    assert tile_for(Stub(), 1024, 1024) == 0 and 1024 * 1024 == AUTO_MAX_PIXELS
    assert tile_for(Stub(), 1080, 1920) == AUTO_TILE == 512
    Stub.options = FrameEnhanceOptions(tile=64)
    assert tile_for(Stub(), 1080, 1920) == 64
