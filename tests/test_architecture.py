"""The package graph holds: import-linter's contracts (pyproject.toml: layers, no Streamlit in
core, torch in core.training only), no import circle anywhere, no private name imported from
another package, every public name of a core package listed in its ``__init__``, imports of
core at the top of modules (only torch-loading modules imported lazily), and
docs/ARCHITECTURE.md naming every module."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "ui").rglob("*.py")])
# modules that import torch: the only core modules another module may import inside a function
TORCH_MODULES = {"core.training.cnn", "core.training.texture", "core.training.onnx_export",
                 "core.training.recipes", "core.training.particle_net", "core.training.fibre_net"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """``core.review.labels`` → ``core.review``; a top-level seam is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports(path: Path) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import statement of a file, and whether it sits inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            walk(child, inside)

    walk(tree, False)
    return found


def test_import_linter_contracts_are_kept():
    r = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], check=False,
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def test_no_import_circle():
    graph = grimp.build_graph("core", "ui", cache_dir=None)
    circles = []
    for m in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(m):
            if graph.find_shortest_chain(importer=imported, imported=m):
                circles.append((m, imported))
    assert not circles, f"import circles: {circles}"


def test_no_private_name_is_imported_from_another_package():
    crossing = []
    for path in SOURCES:
        here = module_name(path)
        for node, _ in imports(path):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
                for alias in node.names:
                    if alias.name.startswith("_") and package_of(node.module) != package_of(here):
                        crossing.append(f"{here}: from {node.module} import {alias.name}")
    assert not crossing, crossing


def test_core_imports_sit_at_the_top_except_for_torch():
    local = []
    for path in SOURCES:
        for node, in_function in imports(path):
            if not in_function or not isinstance(node, ast.ImportFrom):
                continue
            if node.module and node.module.startswith("core") and node.module not in TORCH_MODULES:
                local.append(f"{module_name(path)}:{node.lineno} from {node.module}")
    assert not local, local


def public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


PACKAGES = sorted(p.parent for p in (ROOT / "core").glob("*/__init__.py"))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_public_name_is_listed_in_the_package_init(package):
    pkg = importlib.import_module(module_name(package / "__init__.py"))
    listed = set(pkg.__all__)
    missing = {}
    for module in sorted(package.glob("*.py")):
        if module.stem.startswith("__"):
            continue
        names = public_names(module) - listed
        if names:
            missing[module.stem] = sorted(names)
    assert not missing, f"{pkg.__name__}.__all__ lacks {missing}"
    unresolved = [n for n in listed if not hasattr(pkg, n)]
    assert not unresolved, f"{pkg.__name__}.__all__ names what it does not define: {unresolved}"


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [p.relative_to(ROOT).as_posix() for p in SOURCES
               if p.name != "__init__.py" and f"`{p.relative_to(ROOT).as_posix()}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"
    packages = sorted({p.parent.relative_to(ROOT).as_posix() for p in SOURCES if p.name == "__init__.py"})
    absent = [p for p in packages if f"`{p}/`" not in doc]
    assert not absent, f"docs/ARCHITECTURE.md does not name the packages {absent}"
