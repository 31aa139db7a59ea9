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


# ------------------------------------------------------------------ one module graph, one of each job


def module_name(path: Path) -> str:
    """``ffkit.<package>.<module>`` of a source file under ROOT (``__init__`` is its package)."""
    parts = ["ffkit", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: ffkit modules it imports}`` over the package folders, every import read with
    ``ast`` (module-level and inside functions, relative or absolute). ``from pkg import name``
    counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    files = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files:   # ffkit.recipes.onnx_file.X -> the module itself
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds a cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:   # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a circle closed by a lazy relative import is found, a chain is not."""
    global ROOT
    pkg = tmp_path / "recipes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from ffkit.recipes import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    saved, ROOT = ROOT, tmp_path
    try:
        for other in PACKAGES[1:]:
            (tmp_path / other).mkdir()
        assert cycles(import_graph()) == [["ffkit.recipes.a", "ffkit.recipes.b"]]
    finally:
        ROOT = saved


def test_no_import_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (each line: the modules of one circle):\n" + "\n".join(" <-> ".join(c) for c in found)


def source_lines(needle: str) -> dict[str, list[int]]:
    """``{file under the package folders: line numbers}`` where ``needle`` appears in code (not
    in a comment or a docstring: the tokens are read, strings skipped)."""
    import io
    import tokenize

    where: dict[str, list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if needle not in text:
                continue
            code = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                    if tok.type not in (tokenize.STRING, tokenize.COMMENT)]
            lines: dict[int, str] = {}
            for line, string in code:
                lines[line] = lines.get(line, "") + string
            hits = [line for line, joined in lines.items() if needle.replace(" ", "") in joined]
            if hits:
                where[str(path.relative_to(ROOT))] = hits
    return where


@pytest.mark.parametrize("needle, allowed", [
    ("InferenceSession(", {"runtime/sessions.py"}),
    ("os.replace(", {"recipes/atomic.py"}),
    ("cv2.imread(", {"runtime/media/images.py"}),
    ("cv2.imwrite(", {"runtime/media/images.py"}),
], ids=["one-session-factory", "one-atomic-writer", "images-read-by-media", "images-written-by-media"])
def test_one_module_does_each_job(needle, allowed):
    found = source_lines(needle)
    stray = {path: lines for path, lines in found.items()
             if path not in allowed and not (needle.startswith("cv2.") and path.startswith("runtime/media/"))}
    assert not stray, f"{needle} belongs in {sorted(allowed)} only; also found in: {stray}"
