"""House rule 1: dependencies point inward. The core imports only the standard library and
msgspec; api/ and streams/ import the core, never each other; embedded/ never imports api/
or streams/. Only service/ (the entry points) may wire them all together."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"availability", "api", "streams", "embedded", "service", "loadtests", "tests"}
ALLOWED = {
    "availability": {"availability", "msgspec"},
    "api": {"api", "availability"},
    "streams": {"streams", "availability"},
    "embedded": {"embedded", "availability"},
}


def top_level_imports(package: str) -> dict[str, set[str]]:
    """Module path -> top-level names it imports (relative imports resolve to the package)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.add(package if node.level else (node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def is_stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    modules = top_level_imports(package)
    assert modules, f"no modules found in {package}/"
    for module, names in modules.items():
        if package == "availability":
            outside = {n for n in names if not is_stdlib(n)} - ALLOWED[package]
        else:
            outside = (names & PROJECT_PACKAGES) - ALLOWED[package]
        assert not outside, f"{module} imports {sorted(outside)}, against the dependency rule"


def test_core_has_no_clock_randomness_or_io() -> None:
    forbidden = {"time", "random", "logging", "os", "socket", "asyncio", "io", "pathlib"}
    for module, names in top_level_imports("availability").items():
        assert not names & forbidden, f"{module} imports {sorted(names & forbidden)}"
