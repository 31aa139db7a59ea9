"""Access to the reference data copied from ``shared/reference`` (manifests, vectors, fill rule)."""

from __future__ import annotations

import json
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


def write_published(name: str, path: Path) -> Path:
    """Write the seed-0 fill in the published checkpoint layout (e.g. ``{'params_ema': sd}``)."""
    import torch

    sd = {k: torch.from_numpy(v) for k, v in seed0_fill(name).items()}
    layout = manifest(name)["checkpoint_layout"]
    obj = {"params_ema": sd} if "params_ema" in layout else sd
    torch.save(obj, path)
    return path
