"""pyproject.toml declares every package the code imports; the exact versions the code that
uses private names (faust's, aiokafka's, mode's) was written for are the ones installed;
those names are used in streams/transport.py only, and exist in the installed versions."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path
from typing import Final

import pytest

from tests.unit.test_architecture import ROOT, is_stdlib, top_level_imports

PROJECT: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME: Final[list[str]] = PROJECT["dependencies"]
DEV: Final[list[str]] = PROJECT["optional-dependencies"]["dev"]
FIRST_PARTY: Final = {"availability", "api", "streams", "embedded", "service", "loadtests", "tests"}
# What runs in production imports only runtime dependencies; the rest may use dev's too.
SHIPPED: Final = ("availability", "api", "streams", "embedded", "service")
TOOLING: Final = ("loadtests", "tests", "scripts")
# The distributions streams/ reaches into by private names: each must be pinned exactly.
PINNED_FOR_STREAMS: Final = ("faust-streaming", "aiokafka", "mode-streaming")


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares it (`PyYAML` is `pyyaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    found = set()
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name, f"pyproject.toml: cannot read a name in {requirement!r}"
        found.add(normalized(name.group()))
    return found


def exact_pins(requirements: list[str]) -> dict[str, str]:
    pins = (re.fullmatch(r"([A-Za-z0-9._-]+)==([^;,\s]+)", r.strip()) for r in requirements)
    return {normalized(pin[1]): pin[2] for pin in pins if pin}


@pytest.mark.parametrize("distribution", PINNED_FOR_STREAMS)
def test_what_streams_reaches_into_is_pinned_and_installed_at_that_version(
    distribution: str,
) -> None:
    pinned = exact_pins(RUNTIME).get(distribution)
    assert pinned, (
        f"pyproject.toml must pin {distribution} exactly (==): streams/ uses its private names"
    )
    installed = importlib.metadata.version(distribution)
    assert installed == pinned, (
        f"streams/ is written for {distribution} {pinned}; installed: {installed}."
        " Install the pinned version, or read the new version's changes against the private"
        " names streams/ uses, run tests/integration and move the pin"
    )


@pytest.mark.parametrize(
    ("packages", "allowed"),
    [(SHIPPED, RUNTIME), (TOOLING, RUNTIME + DEV)],
    ids=["shipped-packages", "tooling"],
)
def test_every_third_party_import_is_declared(
    packages: tuple[str, ...], allowed: list[str]
) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed_names = declared(allowed)
    undeclared = []
    for package in packages:
        for module, names in top_level_imports(package).items():
            for name in sorted(names - FIRST_PARTY - {package}):
                if is_stdlib(name):
                    continue
                distributions = {normalized(d) for d in providers.get(name, [])}
                if not distributions & allowed_names:
                    shown = ", ".join(sorted(distributions)) or "no installed distribution"
                    undeclared.append(f"{module} imports {name} ({shown})")
    assert not undeclared, "declare these in pyproject.toml:\n" + "\n".join(undeclared)


# Private by convention only: namedtuple's documented methods.
PUBLIC_UNDERSCORED: Final = frozenset({"_replace", "_asdict", "_fields", "_make"})
TRANSPORT: Final = ROOT / "streams" / "transport.py"
# Where the private names streams/transport.py uses are defined.
THIRD_PARTY_SOURCES: Final = (
    "faust.transport.consumer",
    "faust.transport.producer",
    "faust.transport.drivers.aiokafka",
    "faust.stores.rocksdb",
    "aiokafka.consumer.consumer",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "mode.services",
)


def private_attributes(path: Path) -> dict[str, int]:
    """Each `x._name` of a file whose `x` is not `self` or `cls` (or is `super()`), with
    the line it is first met on."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") or node.attr in PUBLIC_UNDERSCORED:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
            continue
        found.setdefault(node.attr, node.lineno)
    return found


def test_private_names_of_faust_mode_and_aiokafka_are_used_in_streams_transport_only() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for package in SHIPPED
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != TRANSPORT
        for name, line in private_attributes(path).items()
    ]
    assert not outside, (
        "private names of other packages belong in streams/transport.py (one place to read "
        "when faust, mode or aiokafka move):\n" + "\n".join(outside)
    )


def test_every_private_name_streams_transport_uses_exists_in_the_installed_versions() -> None:
    tree = ast.parse(TRANSPORT.read_text())
    own = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    own |= {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }
    sources = "\n".join(
        inspect.getsource(importlib.import_module(module)) for module in THIRD_PARTY_SOURCES
    )
    # A private method defined here and never called here overrides faust's: it must still
    # be faust's, or it would silently never run.
    overrides = {name for name in own if name.startswith("_") and name not in used}
    overrides -= {"__init__"}
    foreign = {name for name in used | overrides if re.search(rf"\b{re.escape(name)}\b", sources)}
    missing = sorted((used - own) - foreign | overrides - foreign)
    assert not missing, (
        f"streams/transport.py uses {missing}, which the installed faust, mode and aiokafka "
        "no longer define: read their changes against this module before moving the pins"
    )
    assert len(foreign) >= 15, sorted(foreign)  # the check looks where the names live
