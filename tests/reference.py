"""Access to the reference data copied from ``shared/reference`` (manifests, vectors, fill rule)."""

from __future__ import annotations

import json
import sys
import types
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from ffkit.validation.synthetic_weights import fill_state_dict

REFERENCE = Path(__file__).parent / "data" / "reference"


@lru_cache(maxsize=None)
def manifest(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.manifest.json").read_text())


def seed0_fill(name: str) -> dict[str, np.ndarray]:
    """``fill.fill_state_dict(manifest, 0)``: keys exactly as in the published file."""
    m = manifest(name)
    return fill_state_dict(m["state_dict"], 0, m.get("fill_overrides", ()), m.get("key_prefix", ""))


def cases(name: str) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Every case of ``<name>.seed0.npz`` as ``(inputs, outputs)`` in manifest order."""
    sidecar = json.loads((REFERENCE / f"{name}.seed0.json").read_text())
    data = np.load(REFERENCE / f"{name}.seed0.npz")
    return [([data[i["key"]] for i in case["inputs"]], [data[o["key"]] for o in case["outputs"]])
            for case in sidecar["cases"]]


#: How the published whole-module pickles name the classes of ffkit's rebuilds (ffkit class -> theirs).
PICKLED_NAMES = {"simswap_arcface": ("models.arcface_models", {"IRSEResNet": "ResNet", "IRBlock": "IRBlock",
                                                               "SEBlock": "SEBlock"})}


@contextmanager
def pickled_as(model, module_name: str, names: dict[str, str]):
    """Inside the block, each submodule of ``model`` whose class is named like a key of ``names``
    is an instance of a subclass importable as ``module_name.<value>`` (fake modules in
    ``sys.modules``), so ``torch.save(model)`` pickles it as the original code's file does.
    Everything is put back on exit."""
    fake, made = types.ModuleType(module_name), {}
    for m in model.modules():
        cls = type(m)
        if cls.__name__ in names:
            if cls not in made:
                made[cls] = type(names[cls.__name__], (cls,), {"__module__": module_name})
                setattr(fake, made[cls].__name__, made[cls])
            m.__class__ = made[cls]
    parts = module_name.split(".")
    added = [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) not in sys.modules]
    sys.modules.update({n: fake if n == module_name else types.ModuleType(n) for n in added})
    try:
        yield model
    finally:
        for n in added:
            del sys.modules[n]
        for m in model.modules():
            if type(m) in made.values():
                m.__class__ = type(m).__mro__[1]


def seed0_model(name: str):
    """ffkit's rebuild of ``name`` holding the seed-0 fill (strict keys), in eval mode."""
    import torch

    from ffkit.recipes import get_recipe

    model = get_recipe(name).build_model()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in seed0_fill(name).items()}, strict=True)
    return model


def write_published(name: str, path: Path) -> Path:
    """Write the seed-0 fill in the published checkpoint layout (e.g. ``{'params_ema': sd}``, or
    ``torch.save(model)`` with the original class names for a whole pickled module)."""
    import torch

    if name in PICKLED_NAMES:
        with pickled_as(seed0_model(name), *PICKLED_NAMES[name]) as model:
            torch.save(model, path)
        return path
    sd = {k: torch.from_numpy(v) for k, v in seed0_fill(name).items()}
    layout = manifest(name)["checkpoint_layout"]
    obj = {"params_ema": sd} if "params_ema" in layout else sd
    torch.save(obj, path)
    return path
