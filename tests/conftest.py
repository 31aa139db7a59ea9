"""Shared fixtures: seed-0 checkpoints in the published layouts and their exports, made once per run."""

from __future__ import annotations

from pathlib import Path

import pytest
import reference

#: Recipes whose export takes tens of seconds on 2 cores.
SLOW = {"retinaface_resnet50", "arcface_iresnet50", "arcface_iresnet100", "gfpgan_v1.4", "simswap_512", "inswapper_128",
        "simswap_arcface", "fan_2dfan4", "bisenet_faceparsing", "realesrgan_x4plus", "realesrgan_x2plus"}
ALL = ["retinaface_mobilenet0.25", "retinaface_resnet50", "arcface_iresnet18", "arcface_iresnet50",
       "arcface_iresnet100", "gfpgan_v1.4", "simswap_224", "simswap_512", "inswapper_128", "simswap_arcface",
       "fan_2dfan4", "bisenet_faceparsing", "realesrgan_x4plus", "realesrgan_x2plus"]


def recipe_params(names=ALL):
    """Parametrize over recipe names, marking the slow ones."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


class Artifacts:
    """Lazily written seed-0 checkpoints and ONNX exports, shared by every test of the session."""

    def __init__(self, root: Path):
        self.root = root
        self._exports = {}

    def checkpoint(self, name: str) -> Path:
        """The seed-0 file in the published layout (``reference.write_published``: a whole
        ``torch.save(model)`` with the original class names for a ``pickled_module`` recipe)."""
        path = self.root / f"{name}.pth"
        if not path.exists():
            reference.write_published(name, path)
        return path

    def export(self, name: str, *options: str, **finalize):
        from ffkit.toolkit.export import export_recipe

        if name == "inswapper_128" and not finalize:   # no emap given: ask for an emap-less one (else refused)
            finalize = {"no_emap": True}
        key = (name, options, tuple(sorted(finalize)))
        if key not in self._exports:
            suffix = "".join(f".{o}" for o in options) + "".join(f".{k}" for k in sorted(finalize))
            out = self.root / f"{name}{suffix}.onnx"
            self._exports[key] = export_recipe(name, self.checkpoint(name), out, options=options,
                                               finalize_kwargs=finalize or None)
        return self._exports[key]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("artifacts"))
