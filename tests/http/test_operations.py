"""Probes, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.schemas import EventsRefused
from tests.support.events import event, unique_sku

from .helpers import error_of, post_events

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def test_healthz_answers_ok(client: httpx.Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ready_with_its_checks(client: httpx.Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["checks"]
    assert all(body["checks"].values())


def test_an_unknown_path_is_404_not_found(client: httpx.Client) -> None:
    error_of(client.get("/v2/availability/SKU-1"), 404, "not_found")


def test_metrics_expose_every_family(client: httpx.Client) -> None:
    client.get("/healthz")

    samples = scrape(client)

    for name in (
        "availability_oversold_positions",
        "availability_count_drift_units_count",
        "availability_count_drift_units_sum",
        "availability_count_drift_units_bucket",
        "availability_http_request_duration_seconds_count",
        "availability_http_request_duration_seconds_bucket",
    ):
        assert name in samples, name


def test_event_outcomes_are_counted_by_type_and_outcome(client: httpx.Client, sku: str) -> None:
    before = scrape(client)
    receipt = event("receipt", sku, "DC1", minute=30, qty=10)
    post_events(client, [receipt, event("sale", sku, "DC1", minute=31, qty=1)])
    post_events(client, [receipt])  # duplicate
    post_events(client, [event("count", sku, "DC1", minute=20, counted=5)])  # applied
    post_events(client, [event("count", sku, "DC1", minute=10, counted=5)])  # stale
    post_events(client, [event("count", sku, "DC1", minute=-50 * 60, counted=5)])  # too old
    refused = [event("receipt", sku, "DC1", qty=1), event("sale", sku, "DC1", qty=0)]
    error_of(client.post("/v1/events", json=refused), 422, "invalid_events")

    after = scrape(client)

    def moved(**labels: str) -> float:
        name = "availability_events_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(type="receipt", outcome="applied") == 1
    assert moved(type="sale", outcome="applied") == 1
    assert moved(type="receipt", outcome="duplicate") == 1
    assert moved(type="count", outcome="applied") == 1
    assert moved(type="count", outcome="stale") == 1
    assert moved(type="count", outcome="dead_lettered") == 1
    # The refused batch had one invalid event; nothing of it was applied.
    assert 1 <= moved(outcome="invalid") <= len(refused)
    assert moved(outcome="applied") == 3


def test_count_drift_is_observed_in_units(client: httpx.Client, sku: str) -> None:
    before = scrape(client)

    post_events(
        client,
        [
            event("receipt", sku, "DC1", minute=0, qty=10),
            event("count", sku, "DC1", minute=5, counted=13),  # drift -3
        ],
    )

    after = scrape(client)
    name = "availability_count_drift_units"
    assert value(after, f"{name}_count") - value(before, f"{name}_count") == 1
    assert value(after, f"{name}_sum") - value(before, f"{name}_sum") == 3


def test_the_oversold_gauge_follows_positions(client: httpx.Client, sku: str) -> None:
    gauge = "availability_oversold_positions"
    start = value(scrape(client), gauge)

    post_events(client, [event("sale", sku, "S001", qty=2), event("sale", sku, "DC1", qty=1)])
    assert value(scrape(client), gauge) == start + 2

    post_events(client, [event("receipt", sku, "S001", qty=5)])
    assert value(scrape(client), gauge) == start + 1


def test_request_durations_are_labelled_by_route_template(client: httpx.Client) -> None:
    sku = unique_sku()
    name = "availability_http_request_duration_seconds_count"
    before = scrape(client)

    client.get(f"/v1/availability/{sku}", params={"channel": "web"})
    client.get(f"/v1/availability/{sku}", params={"channel": "nosuch"})
    client.get(f"/v1/availability/{sku}")  # no channel: FastAPI's own answer, not the fast path's
    client.post("/v1/availability/batch", json={"channel": "web", "skus": [sku]})
    client.post("/v1/availability/batch", content=b"{not json")
    client.get(f"/v1/positions/{sku}")
    client.get(f"/no/such/{sku}")

    after = scrape(client)

    def moved(**labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    template = "/v1/availability/{sku}"
    assert moved(route=template, method="GET", status="200") == 1
    assert moved(route=template, method="GET", status="404") == 1
    assert moved(route=template, method="GET", status="422") == 1
    assert moved(route="/v1/availability/batch", method="POST", status="200") == 1
    assert moved(route="/v1/availability/batch", method="POST", status="400") == 1
    assert moved(route="/v1/positions/{sku}", method="GET", status="200") == 1
    assert moved(route="unmatched", status="404") == 1
    routes = {labels["route"] for labels, _ in after[name]}
    assert not [route for route in routes if sku in route]


# -- OpenAPI ------------------------------------------------------------------------------

# Every route of SPEC section 5 built so far, with the error statuses its answers document.
DOCUMENTED: list[tuple[str, str, set[str]]] = [
    ("get", "/v1/availability/{sku}", {"200", "401", "403", "404", "422"}),
    ("post", "/v1/availability/batch", {"200", "400", "401", "403", "404", "422"}),
    ("get", "/v1/positions/{sku}", {"200", "401", "403", "422"}),
    ("post", "/v1/events", {"202", "400", "401", "403", "413", "422"}),
    ("get", "/v1/rules", {"200", "401", "403"}),
    ("put", "/v1/rules", {"200", "400", "401", "403", "422"}),
    ("get", "/healthz", {"200"}),
    ("get", "/readyz", {"200", "503"}),
    ("get", "/metrics", {"200"}),
]


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize(
    ("method", "path", "statuses"), DOCUMENTED, ids=[f"{m} {p}" for m, p, _ in DOCUMENTED]
)
def test_openapi_documents_every_route_and_its_errors(
    openapi: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    operation = openapi["paths"][path][method]

    assert statuses <= set(operation["responses"])
    for status, answer in operation["responses"].items():
        assert answer["description"]
        if status.startswith(("4", "5")) and status != "422":
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}


def test_openapi_names_the_error_codes_it_documents(openapi: dict[str, Any]) -> None:
    events = openapi["paths"]["/v1/events"]["post"]["responses"]

    assert "malformed_json" in events["400"]["description"]
    assert "payload_too_large" in events["413"]["description"]
    assert "invalid_events" in events["422"]["description"]
    availability = openapi["paths"]["/v1/availability/{sku}"]["get"]["responses"]
    assert "unknown_channel" in availability["404"]["description"]
    assert (
        "invalid_rules" in openapi["paths"]["/v1/rules"]["put"]["responses"]["422"]["description"]
    )


def test_every_openapi_reference_resolves(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    references = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(openapi)))

    assert references
    dangling = [
        ref for ref in references if ref.removeprefix("#/components/schemas/") not in schemas
    ]
    assert dangling == []


def test_openapi_describes_the_event_types_of_the_events_body(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["maxItems"] == 1000
    event_schema = openapi["components"]["schemas"]["Event"]

    mapping = event_schema["discriminator"]["mapping"]
    assert set(mapping) == {
        "sale", "order", "cancel", "pick", "return",
        "transfer_out", "transfer_in", "receipt", "adjust", "count",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[]", "invalid_request"),
        (b"{}", "invalid_request"),
        (b'[{"type": "sale"}]', "invalid_events"),
    ],
    ids=["empty", "not-an-array", "invalid-event"],
)
def test_every_422_of_the_events_route_fits_its_documented_schema(
    client: httpx.Client, openapi: dict[str, Any], body: bytes, code: str
) -> None:
    documented = openapi["paths"]["/v1/events"]["post"]["responses"]["422"]
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventsRefused"
    }

    response = client.post("/v1/events", content=body)

    assert response.status_code == 422
    # EventsRefused is the Struct the documented schema is generated from.
    refused = msgspec.json.decode(response.content, type=EventsRefused)
    assert refused.error.code == code


def test_a_wrong_method_is_405_in_the_error_envelope(client: httpx.Client) -> None:
    error_of(client.delete("/v1/rules"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/rules", "GET, PUT"),
        # `batch` is also a SKU, which GET /v1/availability/{sku} reads.
        ("PUT", "/v1/availability/batch", "GET, POST"),
        ("GET", "/v1/events", "POST"),
    ],
)
def test_a_405_names_every_method_the_path_takes(
    client: httpx.Client, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed
