"""The three floors import only downward: web -> workers -> lens. lens knows neither web nor
workers, and workers does not know web (a worker machine needs no Flask). The walk reads the
source with ast, so an import hidden in a function or an importlib string counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each floor and the packages it must never import.
FORBIDDEN = {"lens": {"web", "workers", "flask", "celery"}, "workers": {"web", "flask"}}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import statement and importlib.import_module("literal")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def upward_imports(floor: str) -> list[str]:
    bad = []
    for path in sorted((REPO_ROOT / floor).rglob("*.py")):
        for line, module in imported_modules(path.read_text()):
            if module.split(".")[0] in FORBIDDEN[floor]:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_upward_imports(floor):
    assert upward_imports(floor) == []


def test_the_walk_sees_plain_nested_and_importlib_imports():
    source = (
        "import web.app\n"
        "def f():\n    from workers import tasks\n"
        "import importlib\nimportlib.import_module('web.cli')\n"
    )
    assert sorted(m for _, m in imported_modules(source)) == ["importlib", "web.app", "web.cli", "workers"]


def test_lens_serve_still_registered_through_the_entry_point():
    from lens.cli import build_parser

    assert "serve" in build_parser().format_help()
