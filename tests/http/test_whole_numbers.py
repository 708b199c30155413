"""A whole number written as a float (`2.0`, `1e1`) is the integer it is, as JSON Schema's
`integer` in the OpenAPI document says: taken wherever an integer goes. A fraction, or a
float too large to say which integer it means, is still refused."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.events import event

from .helpers import RULES, error_of, position


def post_json(client: httpx.Client, path: str, text: str) -> httpx.Response:
    """`text` sent as it is: json.dumps would write 2 for an int, and these are floats."""
    return client.post(path, content=text, headers={"content-type": "application/json"})


def test_an_events_whole_float_quantity_is_taken_as_the_integer(
    client: httpx.Client, sku: str
) -> None:
    body = json.dumps([event("receipt", sku, "DC1", qty=0)]).replace('"qty": 0', '"qty": 12.0')

    response = post_json(client, "/v1/events", body)

    assert response.status_code == 202, response.text
    assert position(client, sku, "DC1")["on_hand"] == 12


@pytest.mark.parametrize("qty", ["2.5", "1e300", "-0.5"])
def test_a_fraction_or_a_float_past_exact_integers_is_still_refused(
    client: httpx.Client, sku: str, qty: str
) -> None:
    body = json.dumps([event("receipt", sku, "DC1", qty=0)]).replace('"qty": 0', f'"qty": {qty}')

    response = post_json(client, "/v1/events", body)

    details = error_of(response, 422, "invalid_events")["details"]
    assert [detail["field"] for detail in details] == ["qty"]


def test_a_holds_whole_float_quantity_and_ttl_are_taken(client: httpx.Client, sku: str) -> None:
    assert client.post("/v1/events", json=[event("receipt", sku, "DC1", qty=5)]).status_code == 202
    hold = {"channel": "web", "ttl_s": 60.0, "lines": [{"sku": sku, "qty": 2.0}]}

    response = post_json(client, "/v1/holds", json.dumps(hold))

    assert response.status_code == 201, response.text
    assert response.json()["lines"] == [{"sku": sku, "qty": 2}]


def test_rules_with_whole_float_units_are_taken_as_integers(client: httpx.Client) -> None:
    rules: dict[str, Any] = {**RULES, "safety_stock": [*RULES["safety_stock"]]}
    text = json.dumps(rules).replace('"units": 0', '"units": 0.0', 1)
    assert '"units": 0.0' in text

    try:
        response = client.put("/v1/rules", content=text)
        assert response.status_code == 200, response.text
        assert response.json()["safety_stock"][0] == {"units": 0}
    finally:
        assert client.put("/v1/rules", json=RULES).status_code == 200
