"""Whole-process scenarios: each test starts (and kills, and restarts) servers of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.server import Server, server_pool

RULES: Final[dict[str, Any]] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "S001": {"type": "store"}, "S002": {"type": "store"}},
    "safety_stock": [
        {"location_type": "store", "units": 1},
        {"location": "S002", "units": 3},
    ],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
        "amazon": {
            "location_types": ["dc"],
            "share": 0.57,
            "cap": 100,
            "buffer": 2,
            "zero_below": 3,
        },
    },
}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test adds here are stopped after it, whatever state they are in."""
    with server_pool() as pool:
        yield pool


@pytest.fixture
def server(tmp_path: Path, rules_file: Path, servers: list[Server]) -> Server:
    """A server started with RULES from --rules; restarts keep its data dir."""
    started = Server(tmp_path / "data", rules_file=rules_file)
    servers.append(started)
    return started.start()
