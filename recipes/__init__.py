"""Recipes: one module per model family; each declares its :class:`~ffkit.recipes.spec.Recipe` s.

Importing this package is torch-free. ``get_recipe(name)`` is the only lookup.
"""

from __future__ import annotations

import difflib
import importlib

from ffkit.toolkit.errors import FfkitError

from .spec import Recipe

FAMILIES = ("retinaface", "arcface", "inswapper", "simswap", "gfpgan")


def _collect() -> dict[str, Recipe]:
    found: dict[str, Recipe] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        for recipe in getattr(module, "RECIPES", ()):
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
