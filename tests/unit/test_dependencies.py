"""pyproject.toml declares every package the code imports, and the exact versions the code
that uses private names (streams/: faust's, aiokafka's, mode's) was written for are the
ones installed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
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
