"""The rules the streaming API tests start with, and small helpers over their answers."""

from __future__ import annotations

import time
from typing import Any, Final

import httpx

from tests.support.server import Server

READY_TIMEOUT_S: Final = 30.0

RULES: Final[dict[str, Any]] = {
    "default_location_type": "store",
    "locations": {"DC1": {"type": "dc"}, "S001": {"type": "store"}, "S002": {"type": "store"}},
    "safety_stock": [{"units": 0}, {"location_type": "store", "units": 1}],
    "channels": {
        "web": {"location_types": ["dc", "store"]},
        "pickup": {"location_types": ["store"]},
        "amazon": {"location_types": ["dc"], "share": 0.5, "buffer": 2},
    },
}


def readiness(server: Server) -> tuple[int, dict[str, Any]]:
    """/readyz's status and its checks."""
    with server.client() as http:
        response = http.get("/readyz")
    body = response.json()
    checks = body["checks"] if response.status_code == 200 else body["error"]["details"]
    return response.status_code, checks


def wait_readiness(
    server: Server, status: int, timeout_s: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """Poll /readyz until it answers `status`; returns its checks then."""
    deadline = time.monotonic() + timeout_s
    while True:
        got, checks = readiness(server)
        if got == status:
            return checks
        if time.monotonic() > deadline:
            raise AssertionError(
                f"/readyz still {got} {checks} after {timeout_s} s\n{server.log_tail()}"
            )
        time.sleep(0.1)


def wait_check(
    server: Server, name: str, value: bool, timeout_s: float = READY_TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    """Poll /readyz until its check `name` is `value`; returns its status and checks then."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, checks = readiness(server)
        if checks.get(name) is value:
            return status, checks
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz {name} still not {value}: {checks}\n{server.log_tail()}")
        time.sleep(0.1)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code
