"""The contract at the bottom of ffkit: recipes, errors, the artifact format and the ONNX reader.

Every other ffkit package imports this one; it imports none of them.

* One sub-package per model family (``retinaface/``, ``arcface/``, ...): its ``__init__.py``
  declares the family's :class:`~ffkit.recipes.spec.Recipe` s in ``RECIPES`` (torch-free), its
  ``arch.py`` builds the PyTorch architecture. A family is registered by existing: the registry
  below finds every sub-package that defines ``RECIPES``, so adding one is adding its folder.
* :mod:`.spec` (the Recipe declaration), :mod:`.errors` (the user-facing error types),
  :mod:`.artifact` (the ``metadata_props`` format), :mod:`.onnx_file` (the one ONNX reader and
  writer), :mod:`.atomic` (atomic writes), :mod:`.checkpoint` (safe checkpoint loading, torch).

Importing this package is torch-free. ``get_recipe(name)`` is the only lookup.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from .errors import FfkitError
from .spec import Recipe

#: Families listed first, in this order (``ffkit recipes`` and the registry's order); any other
#: family sub-package found is registered after them, alphabetically.
FAMILY_ORDER = ("retinaface", "arcface", "inswapper", "simswap", "gfpgan")


def _family_names() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.ispkg}
    return [f for f in FAMILY_ORDER if f in found] + sorted(found - set(FAMILY_ORDER))


def _collect() -> dict[str, Recipe]:
    found: dict[str, Recipe] = {}
    for family in _family_names():
        module = importlib.import_module(f"{__name__}.{family}")
        for recipe in getattr(module, "RECIPES", ()):
            if recipe.name in found:
                raise RuntimeError(f"recipe {recipe.name!r} is declared twice ({family} and {found[recipe.name].family})")
            found[recipe.name] = recipe
    return found


REGISTRY: dict[str, Recipe] = _collect()


def all_recipes() -> list[Recipe]:
    """Every registered recipe, in family order."""
    return list(REGISTRY.values())


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name raises a one-line error suggesting the closest."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FfkitError(f"unknown recipe {name!r}{hint} (known: {', '.join(REGISTRY)})") from None
