"""The layering of the source tree: imports run one way, and the registry finds every family.

``recipes`` (the contract) imports no other ffkit package; ``runtime`` imports only ``recipes``;
``validation`` imports ``recipes`` and ``runtime``; ``toolkit`` may import all. Every import is
read from the source with ``ast`` (module-level, inside functions, relative or absolute), so a
lazy import inside a function cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recipes", "runtime", "validation", "toolkit")
ALLOWED = {
    "recipes": {"recipes"},
    "runtime": {"recipes", "runtime"},
    "validation": {"recipes", "runtime", "validation"},
    "toolkit": {"recipes", "runtime", "validation", "toolkit"},
}


def ffkit_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, ffkit package)`` for every import of an ffkit package in the file at ``path``."""
    module_parts = [package, *path.relative_to(ROOT / package).with_suffix("").parts]
    if module_parts[-1] == "__init__":
        module_parts.pop()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module_parts[: len(module_parts) - node.level + (path.name == "__init__.py")]
                names = [".".join(["ffkit", *base, *([node.module] if node.module else [])])]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ffkit" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_ffkit_imports_sees_every_form(tmp_path):
    """The checker itself: absolute, relative and function-level imports are all seen."""
    pkg = tmp_path / "runtime"
    (pkg / "sub").mkdir(parents=True)
    source = pkg / "sub" / "mod.py"
    source.write_text("import ffkit.toolkit.cli\nfrom ..detector import x\nfrom ffkit.recipes import spec\n"
                      "def f():\n    from ffkit.validation import metrics\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert sorted(ffkit_imports(source, "runtime")) == [(1, "toolkit"), (2, "runtime"), (3, "recipes"),
                                                            (5, "validation")]
    finally:
        ROOT = saved


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports ffkit.{target}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line, target in ffkit_imports(path, package) if target not in ALLOWED[package]]
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_registry_finds_every_family_folder():
    """A family is registered by its folder alone: every sub-package of recipes/ that declares
    RECIPES is in the registry, and nothing else is."""
    import importlib

    from ffkit.recipes import REGISTRY

    declared = {}
    for folder in sorted(p for p in (ROOT / "recipes").iterdir() if (p / "__init__.py").is_file()):
        module = importlib.import_module(f"ffkit.recipes.{folder.name}")
        declared.update({r.name: folder.name for r in getattr(module, "RECIPES", ())})
    assert {name: r.family for name, r in REGISTRY.items()} == declared
    assert len(declared) >= 9


def test_recipes_are_immutable():
    """A frozen Recipe holds no mutable mapping: budgets are data passed in, never patched."""
    from ffkit.recipes import get_recipe

    recipe = get_recipe("arcface_iresnet18")
    with pytest.raises(TypeError):
        recipe.budgets["int8"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        recipe.sample_dims["N"] = 7  # type: ignore[index]
