"""SimSwap swaps with SimSwap's own identities: the runtime's latent equals SimSwap's recipe.

SimSwap (``test_wholeimage_swapsingle.py``) aligns the source face to the swapper's crop (224:
its pose templates; 512: FFHQ), ImageNet-normalises it, resizes it to 112 with
``F.interpolate`` (nearest), runs netArc and ``F.normalize`` s the result. The test writes that
recipe out with OpenCV and torch on the recipe's PyTorch model (checked bit-exact against the
reference vectors elsewhere) and compares it with what ``ffkit swap``'s pipeline feeds the
swapper, computed by onnxruntime on the exported artifact.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import recipe_params
from runtime_helpers import ASTRONAUT, models_dir

from ffkit.recipes import get_recipe
from ffkit.recipes.checkpoint import load_checkpoint
from ffkit.runtime import DetectParams, Pipeline, SessionPool, SwapOptions, pick_models, read_image, resolve_providers
from ffkit.runtime.templates import norm_matrix


def simswap_latent(model, image_bgr: np.ndarray, landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    """SimSwap's source latent, as its test scripts compute it (``1 x 512``, unit norm)."""
    m = norm_matrix(template, landmarks, size)
    crop = cv2.warpAffine(image_bgr, m, (size, size), borderValue=0.0)
    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    x = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        t = torch.nn.functional.interpolate(t, size=(112, 112))
        return torch.nn.functional.normalize(model(t), dim=1).numpy()


@pytest.mark.parametrize("swapper", recipe_params(["simswap_224", "simswap_512"]))
def test_runtime_latent_is_simswaps(swapper, artifacts, tmp_path):
    folder = models_dir(artifacts, tmp_path / "m", swapper=swapper)
    selection = pick_models(folder)
    assert selection.embedder.recipe.name == "simswap_arcface"
    pipe = Pipeline.from_models(selection, SessionPool(resolve_providers("cpu")),
                                SwapOptions(detect=DetectParams(score_threshold=0.8), max_faces=1))
    photo = read_image(ASTRONAUT)
    source = pipe.prepare_source(photo)
    recipe = get_recipe(swapper)
    net_arc = load_checkpoint(get_recipe("simswap_arcface"), artifacts.checkpoint("simswap_arcface"))
    want = simswap_latent(net_arc, photo, source.landmarks, recipe.template, recipe.crop_size)
    cosine = float(source.latent.ravel() @ want.ravel())
    print(f"{swapper}: cosine(runtime latent, SimSwap's) = {cosine:.7f}")
    assert cosine > 0.9999
    assert np.linalg.norm(source.latent) == pytest.approx(1.0, abs=1e-5)
