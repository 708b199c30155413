"""POST /v1/events: 202 for a good batch, and every refusal of SPEC sections 2 and 5, each
with a clear error object and nothing of the batch applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import httpx
import pytest

from tests.support.events import event, unique_sku

from .helpers import error_of, positions, post_events

MIB = 1024 * 1024


def assert_nothing_applied(client: httpx.Client, *skus: str) -> None:
    for sku in skus:
        assert positions(client, sku) == {"sku": sku, "version": 0, "positions": []}


def test_a_good_batch_is_accepted_and_visible_at_once(client: httpx.Client, sku: str) -> None:
    batch = [event("receipt", sku, "DC1", qty=3), event("receipt", sku, "S001", qty=4)]

    response = client.post("/v1/events", json=batch)

    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    on_hand = {p["location"]: p["on_hand"] for p in positions(client, sku)["positions"]}
    assert on_hand == {"DC1": 3, "S001": 4}


def test_every_event_type_is_accepted(client: httpx.Client, sku: str) -> None:
    batch = [
        event("sale", sku, qty=1, source="pos-0042"),
        event("order", sku, qty=2, order_id="o-1", channel="web"),
        event("cancel", sku, qty=1, order_id="o-1"),
        event("pick", sku, qty=1),
        event("return", sku, qty=1, disposition="sellable"),
        event("transfer_out", sku, qty=1, transfer_id="t-1", to_location="S002"),
        event("transfer_in", sku, "S002", qty=1, transfer_id="t-1"),
        event("receipt", sku, qty=9, po_id="po-1"),
        event("adjust", sku, delta=2, reason="found"),
        event("count", sku, "S003", counted=0),
    ]

    post_events(client, batch)

    assert positions(client, sku)["version"] == len(batch)


def test_a_batch_of_1000_events_is_accepted(client: httpx.Client, sku: str) -> None:
    post_events(client, [event("receipt", sku, "DC1", qty=1) for _ in range(1000)])

    assert positions(client, sku)["positions"][0]["on_hand"] == 1000


def test_occurred_at_with_an_offset_is_accepted(client: httpx.Client, sku: str) -> None:
    moment = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    post_events(client, [event("receipt", sku, qty=1) | {"occurred_at": moment.isoformat()}])

    assert positions(client, sku)["version"] == 1


def test_occurred_at_up_to_5_minutes_ahead_is_accepted(client: httpx.Client, sku: str) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    post_events(client, [event("receipt", sku, qty=1) | {"occurred_at": ahead}])

    assert positions(client, sku)["version"] == 1


@pytest.mark.parametrize(
    "body",
    [b"[{", b"", b"not json", b'[{"type": "sale",}]', b"\xff\xfe"],
    ids=["truncated", "empty-body", "bare-words", "trailing-comma", "not-utf8"],
)
def test_malformed_json_is_400_malformed_json(client: httpx.Client, body: bytes) -> None:
    response = client.post("/v1/events", content=body)

    error_of(response, 400, "malformed_json")


DEEP: Final = 1_000  # about 2 KB of brackets: far under the body limit


NESTED: Final = "[" * DEEP + "]" * DEEP
# msgspec skips an unknown field by walking it: the deepest recursion of every route.
UNKNOWN: Final = '"unknown": ' + NESTED


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/events", NESTED),
        ("POST", "/v1/events", "[" + json.dumps(event("receipt", "SKU-D", qty=1))[:-1]
         + ", " + UNKNOWN + "}]"),
        ("POST", "/v1/holds", "{" + UNKNOWN + "}"),
        ("POST", "/v1/holds/h1/commit", "{" + UNKNOWN + "}"),
        ("PUT", "/v1/rules", "{" + UNKNOWN + "}"),
        ("POST", "/v1/availability/batch", "{" + UNKNOWN + "}"),
    ],
    ids=["events", "event-with-a-deep-unknown-field", "holds", "commit", "rules", "batch-read"],
)  # fmt: skip
def test_a_body_nested_too_deeply_is_400_malformed_json_not_a_crash(
    client: httpx.Client, method: str, path: str, body: str
) -> None:
    response = client.request(method, path, content=body)

    # Refused as it is read (400), or before the nesting is reached: a route whose type
    # forbids unknown fields says so (422). Never a 500.
    if response.status_code == 422:
        assert "unknown field" in response.text
    else:
        error = error_of(response, 400, "malformed_json")
        assert "nested too deeply" in error["message"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"events": []}, "a string", 42, None],
    ids=["object", "string", "number", "null"],
)
def test_a_body_that_is_not_an_array_is_422_invalid_request(
    client: httpx.Client, body: object
) -> None:
    response = client.post("/v1/events", content=json.dumps(body))

    error = error_of(response, 422, "invalid_request")
    assert "array" in error["message"]


def test_an_empty_batch_is_422_invalid_request(client: httpx.Client) -> None:
    error_of(client.post("/v1/events", json=[]), 422, "invalid_request")


def test_a_batch_of_1001_events_is_422_and_nothing_is_applied(
    client: httpx.Client, sku: str
) -> None:
    batch = [event("receipt", sku, "DC1", qty=1) for _ in range(1001)]

    error = error_of(client.post("/v1/events", json=batch), 422, "invalid_request")

    assert "1001" in error["message"]
    assert_nothing_applied(client, sku)


def test_a_body_over_4_mib_is_413_and_nothing_is_applied(client: httpx.Client, sku: str) -> None:
    good = json.dumps(event("receipt", sku, "DC1", qty=1)).encode()
    body = b"[" + good + b" " * (4 * MIB) + b"]"

    response = client.post("/v1/events", content=body)

    error_of(response, 413, "payload_too_large")
    assert_nothing_applied(client, sku)


def test_a_chunked_body_over_4_mib_is_413(client: httpx.Client, sku: str) -> None:
    # No Content-Length: the limit must hold while the body streams in.
    good = json.dumps(event("receipt", sku, "DC1", qty=1)).encode()
    body = b"[" + good + b" " * (4 * MIB) + b"]"

    def chunks() -> Any:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = client.post("/v1/events", content=chunks())

    error_of(response, 413, "payload_too_large")
    assert_nothing_applied(client, sku)


def test_a_body_just_under_4_mib_is_accepted(client: httpx.Client, sku: str) -> None:
    good = json.dumps(event("receipt", sku, "DC1", qty=1)).encode()
    body = b"[" + good + b" " * (4 * MIB - len(good) - 2) + b"]"
    assert len(body) == 4 * MIB

    response = client.post("/v1/events", content=body)

    assert response.status_code == 202
    assert positions(client, sku)["version"] == 1


def in_future(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


# (case id, fields to change on a good receipt or a whole replacement event, field named)
BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("qty-zero", {"qty": 0}, "qty"),
    ("qty-over-a-million", {"qty": 1_000_001}, "qty"),
    ("qty-negative", {"qty": -1}, "qty"),
    ("qty-a-string", {"qty": "5"}, "qty"),
    ("qty-a-float", {"qty": 1.5}, "qty"),
    ("qty-missing", {"qty": None}, "qty"),
    ("type-unknown", {"type": "teleport"}, "type"),
    ("type-missing", {"type": None}, "type"),
    ("sku-with-space", {"sku": "A B"}, "sku"),
    ("sku-65-chars", {"sku": "S" * 65}, "sku"),
    ("sku-empty", {"sku": ""}, "sku"),
    ("sku-a-number", {"sku": 42}, "sku"),
    ("location-with-slash", {"location": "S/1"}, "location"),
    ("location-missing", {"location": None}, "location"),
    ("event-id-empty", {"event_id": ""}, "event_id"),
    ("event-id-129-chars", {"event_id": "e" * 129}, "event_id"),
    ("event-id-control-char", {"event_id": "e\x07"}, "event_id"),
    ("occurred-at-no-timezone", {"occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),
    ("occurred-at-not-a-date", {"occurred_at": "yesterday"}, "occurred_at"),
    ("occurred-at-10-min-ahead", {"occurred_at": "FUTURE"}, "occurred_at"),
    ("occurred-at-before-1970", {"occurred_at": "1969-12-31T23:59:59Z"}, "occurred_at"),
    ("source-not-text", {"source": 7}, "source"),
]

BAD_TYPED_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("adjust-delta-zero", {"type": "adjust", "delta": 0, "reason": "r"}, "delta"),
    ("adjust-delta-too-big", {"type": "adjust", "delta": 1_000_001, "reason": "r"}, "delta"),
    ("adjust-no-reason", {"type": "adjust", "delta": 1}, "reason"),
    ("count-negative", {"type": "count", "counted": -1}, "counted"),
    ("count-missing", {"type": "count"}, "counted"),
    ("order-no-order-id", {"type": "order", "qty": 1}, "order_id"),
    ("order-bad-channel", {"type": "order", "qty": 1, "order_id": "o", "channel": "W"}, "channel"),
    ("return-bad-disposition", {"type": "return", "qty": 1, "disposition": "lost"}, "disposition"),
    ("transfer-out-no-to", {"type": "transfer_out", "qty": 1, "transfer_id": "t"}, "to_location"),
    ("transfer-in-no-transfer-id", {"type": "transfer_in", "qty": 1}, "transfer_id"),
]  # fmt: skip


def bad_event(sku: str, change: dict[str, Any]) -> dict[str, Any]:
    base = event("receipt", sku, "DC1", qty=5)
    if "type" in change and change["type"] not in (None, "teleport"):
        base = {k: v for k, v in base.items() if k != "qty"}
    for key, value in change.items():
        if value is None:
            base.pop(key, None)
        elif value == "FUTURE":
            base[key] = in_future(10)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize(
    ("change", "field"),
    [case[1:] for case in BAD_EVENTS + BAD_TYPED_EVENTS],
    ids=[case[0] for case in BAD_EVENTS + BAD_TYPED_EVENTS],
)
def test_an_invalid_event_among_good_ones_rejects_the_whole_batch(
    client: httpx.Client, change: dict[str, Any], field: str
) -> None:
    good, other = unique_sku(), unique_sku()
    batch = [
        event("receipt", good, "DC1", qty=5),
        event("receipt", other, "S001", qty=5),
        bad_event(good, change),
        event("sale", good, "DC1", qty=1),
    ]

    response = client.post("/v1/events", json=batch)

    error = error_of(response, 422, "invalid_events")
    assert error["details"] == [
        {"index": 2, "field": field, "message": error["details"][0]["message"]}
    ]
    assert error["details"][0]["message"]
    assert "nothing" in error["message"]
    assert_nothing_applied(client, good, other)


def test_every_invalid_event_of_a_batch_is_named(client: httpx.Client, sku: str) -> None:
    batch = [
        event("receipt", sku, "DC1", qty=0),
        event("receipt", sku, "DC1", qty=1),
        event("receipt", sku, "DC1", qty=1) | {"occurred_at": in_future(6)},
        event("count", sku, "DC1", counted=-1),
        event("adjust", sku, "DC1", delta=0, reason="none"),
        "not an event",
    ]

    error = error_of(client.post("/v1/events", json=batch), 422, "invalid_events")

    assert [(d["index"], d["field"]) for d in error["details"]] == [
        (0, "qty"),
        (2, "occurred_at"),
        (3, "counted"),
        (4, "delta"),
        (5, ""),
    ]
    assert "5 of 6" in error["message"]
    assert_nothing_applied(client, sku)


def test_a_refused_batch_leaves_existing_positions_unchanged(
    client: httpx.Client, sku: str
) -> None:
    post_events(
        client,
        [event("receipt", sku, "DC1", qty=10), event("order", sku, "DC1", qty=2, order_id="o")],
    )
    before = positions(client, sku)

    response = client.post(
        "/v1/events",
        json=[
            event("sale", sku, "DC1", qty=3),
            event("pick", sku, "DC1", qty=2, order_id="o"),
            event("transfer_out", sku, "DC1", qty=1, transfer_id="t", to_location="S001"),
            event("sale", sku, "DC1", qty=0),
        ],
    )

    error = error_of(response, 422, "invalid_events")
    assert error["details"][0]["index"] == 3
    assert positions(client, sku) == before
