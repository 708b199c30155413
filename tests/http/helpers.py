"""The rules the shared server starts with, and small assertions over its HTTP answers."""

from __future__ import annotations

from typing import Any, Final

import httpx

# The one SKU with SKU-specific safety stock; only the safety-stock test uses it.
SAFETY_SKU: Final = "SAFETY-SKU-1"

RULES: Final[dict[str, Any]] = {
    "default_location_type": "store",
    "locations": {
        "DC1": {"type": "dc"},
        "DC2": {"type": "dc"},
        "S001": {"type": "store"},
        "S002": {"type": "store"},
        "S003": {"type": "store"},
        "D001": {"type": "dropship"},
    },
    "safety_stock": [
        {"units": 0},
        {"location_type": "store", "units": 1},
        {"location": "S002", "units": 3},
        {"sku": SAFETY_SKU, "units": 5},
        {"sku": SAFETY_SKU, "location_type": "store", "units": 6},
        {"sku": SAFETY_SKU, "location": "S001", "units": 7},
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
        "marketplace": {"locations": ["D001"]},
    },
}


def post_events(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": len(events)}


def positions(client: httpx.Client, sku: str) -> dict[str, Any]:
    response = client.get(f"/v1/positions/{sku}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def position(client: httpx.Client, sku: str, location: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        p for p in positions(client, sku)["positions"] if p["location"] == location
    ]
    assert len(found) == 1, f"{sku} has no position at {location}"
    return found[0]


def availability(
    client: httpx.Client,
    sku: str,
    channel: str,
    location: str | None = None,
    **breakdown: str | int,
) -> dict[str, Any]:
    """The answer; `breakdown` adds query parameters (include, after, limit)."""
    params = {"channel": channel} | ({"location": location} if location else {}) | breakdown
    response = client.get(f"/v1/availability/{sku}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is the error envelope with `status` and `code`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return error
