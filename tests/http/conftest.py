"""One shared server for the read and ingest tests (every test uses its own SKUs), started
with the rules of helpers.RULES from a --rules file; tests that need their own server or
settings start one with `start_server`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import unique_sku
from tests.support.server import Server, server_pool

from .helpers import RULES

StartServer = Callable[..., Server]


@pytest.fixture(scope="session")
def rules_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, rules_path: Path) -> Iterator[Server]:
    with server_pool() as pool:
        shared = Server(tmp_path_factory.mktemp("shared") / "data", rules_file=rules_path)
        pool.append(shared)
        yield shared.start()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def sku() -> str:
    return unique_sku()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start a server of the test's own on a fresh data dir; stopped after the test."""
    with server_pool() as pool:

        def start(**kwargs: Any) -> Server:
            own = Server(tmp_path / f"data{len(pool)}", **kwargs)
            pool.append(own)
            return own.start()

        yield start
