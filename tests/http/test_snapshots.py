"""ERP snapshots in the embedded mode: imported as counts, each bad row reported, a second
import changing nothing, and positions and drifts as the core folds the whole event log."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.support.events import at, event
from tests.support.snapshots import SnapshotScenario, figures_from_positions

from .helpers import error_of, positions, post_events

CSV = {"content-type": "text/csv"}
HEADER = "sku,location,counted,counted_at\n"
AT = "2026-12-01T10:00:00Z"


def post_snapshot(
    client: httpx.Client,
    body: bytes,
    snapshot_id: str | None = None,
    params: dict[str, str] | None = None,
    **headers: str,
) -> httpx.Response:
    params = (params or {}) | ({"snapshot_id": snapshot_id} if snapshot_id else {})
    return client.post(
        "/v1/snapshots", content=body, params=params, headers=CSV | headers, timeout=300
    )


def in_batches(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 1000):
        post_events(client, events[start : start + 1000])


def test_a_chain_snapshot_gives_the_positions_and_drifts_of_the_whole_log_and_twice_is_once(
    client: httpx.Client,
) -> None:
    scenario = SnapshotScenario.build(f"SN{uuid.uuid4().hex[:6]}", skus=5000, locations=20, seed=3)
    in_batches(client, scenario.before)

    first = post_snapshot(client, scenario.csv_bytes(), scenario.snapshot_id)

    assert first.status_code == 202, first.text
    report = first.json()
    assert (report["rows"], report["accepted"], report["refused"]) == (100_000, 100_000, 0)
    assert report["outcomes"] == {"applied": 100_000}
    at_import = scenario.expected(now_us(), with_late=False)
    drifts = [d for places in at_import.values() for _, d in places.values() if d is not None]
    assert report["drift"]["absolute_drift"] == sum(abs(d) for d in drifts)
    assert len(report["drift"]["by_location"]) == 20
    assert sum(place["counts"] for place in report["drift"]["by_location"]) == 100_000
    largest = report["drift"]["largest"]
    assert abs(largest[0]["drift"]) == max(abs(d) for d in drifts)

    in_batches(client, scenario.late)
    again = post_snapshot(client, scenario.csv_bytes(), scenario.snapshot_id)

    assert again.status_code == 202, again.text
    assert again.json()["outcomes"] == {"duplicate": 100_000}
    expected = scenario.expected(now_us())
    served = {sku: figures_from_positions(positions(client, sku)) for sku in scenario.skus}
    wrong = {sku: (served[sku], expected[sku]) for sku in expected if served[sku] != expected[sku]}
    assert not wrong, f"{len(wrong)} SKUs differ, e.g. {list(wrong.items())[:1]}"


def test_bad_rows_are_each_reported_and_the_rest_applied(client: httpx.Client, sku: str) -> None:
    body = (
        HEADER
        + f"{sku},S1,4,{AT}\n"
        + f"{sku},S2,-4,{AT}\n"
        + f"{sku} x,S3,4,{AT}\n"
        + f"{sku},S4,4\n"
        + f"{sku},S5,6,{AT}\n"
    ).encode()

    answer = post_snapshot(client, body)

    assert answer.status_code == 202, answer.text
    report = answer.json()
    assert report["snapshot_id"].startswith("sha256:")
    assert (report["rows"], report["accepted"], report["refused"]) == (5, 2, 3)
    assert [(r["line"], r["field"]) for r in report["refusals"]] == [
        (3, "counted"),
        (4, "sku"),
        (5, "counted_at"),
    ]
    assert {p["location"]: p["on_hand"] for p in positions(client, sku)["positions"]} == {
        "S1": 4,
        "S5": 6,
    }
    # The same file again: the same id (its content's), nothing new.
    assert post_snapshot(client, body).json()["outcomes"] == {"duplicate": 2}


def test_a_full_snapshot_zeroes_the_unlisted_positions_of_its_locations_only(
    client: httpx.Client,
) -> None:
    # Locations of this test's own: a full snapshot zeroes every SKU at its locations.
    tag = uuid.uuid4().hex[:8]
    listed, unlisted, elsewhere = (f"SF{tag}-{n}" for n in range(3))
    counted, other = f"F{tag}", f"G{tag}"
    post_events(
        client,
        [
            event("receipt", listed, counted, qty=9),
            event("receipt", unlisted, counted, qty=9),
            event("receipt", unlisted, other, qty=9),
            event("receipt", elsewhere, other, qty=9),
        ],
    )
    body = (HEADER + f"{listed},{counted},4,{at(10)}\n").encode()

    answer = post_snapshot(client, body, f"full-{tag}", params={"scope": "full"})

    assert answer.status_code == 202, answer.text
    report = answer.json()
    assert (report["zeroed"], report["locations"]) == (1, {counted: at(10)})
    figures = {
        sku: figures_from_positions(positions(client, sku)) for sku in (listed, unlisted, elsewhere)
    }
    assert figures == {
        listed: {counted: (4, 5)},
        unlisted: {counted: (0, 9), other: (9, None)},  # `other` is not the snapshot's
        elsewhere: {other: (9, None)},
    }
    # Sent again: nothing more to zero, nothing changes.
    again = post_snapshot(client, body, f"full-{tag}", params={"scope": "full"}).json()
    assert (again["outcomes"], again["zeroed"]) == ({"duplicate": 1}, 0)
    stored = client.get(f"/v1/snapshots/full-{tag}").json()
    assert (stored["accepted"], stored["zeroed"]) == (2, 1)


def test_ndjson_is_taken_too(client: httpx.Client, sku: str) -> None:
    body = f'{{"sku":"{sku}","location":"S1","counted":3,"counted_at":"{AT}"}}\n'.encode()

    answer = post_snapshot(client, body, "nd-1", **{"content-type": "application/x-ndjson"})

    assert answer.status_code == 202, answer.text
    assert answer.json()["outcomes"] == {"applied": 1}
    assert positions(client, sku)["positions"][0]["on_hand"] == 3


@pytest.mark.parametrize(
    ("body", "params", "headers", "status", "code"),
    [
        (HEADER, {}, {"content-type": "application/json"}, 415, "unsupported_media_type"),
        (HEADER, {"scope": "everything"}, CSV, 422, "invalid_request"),
        (HEADER, {"scope": "Full"}, CSV, 422, "invalid_request"),
        (HEADER, {"snapshot_id": "bad\x01id"}, CSV, 422, "invalid_request"),
        ("sku,location\nA,S1\n", {}, CSV, 422, "invalid_snapshot"),
        (HEADER, {"line_offset": "-1"}, CSV, 422, "invalid_request"),
        ("", {}, CSV, 422, "invalid_snapshot"),
    ],
)
def test_a_request_that_cannot_be_a_snapshot_is_refused_and_takes_nothing(
    client: httpx.Client,
    body: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = client.post("/v1/snapshots", content=body.encode(), params=params, headers=headers)
    error_of(answer, status, code)


def test_an_unknown_snapshot_has_no_report(client: httpx.Client) -> None:
    error_of(client.get("/v1/snapshots/never-sent"), 404, "unknown_snapshot")
    error_of(client.get("/v1/snapshots/never-sent/report.csv"), 404, "unknown_snapshot")


def test_a_file_not_in_utf8_takes_no_row_at_all(client: httpx.Client, sku: str) -> None:
    body = (HEADER + f"{sku},S1,4,{AT}\n").encode() + b"\xff\n"

    error = error_of(post_snapshot(client, body), 422, "invalid_snapshot")

    assert "line 3: not UTF-8" in error["message"]
    assert positions(client, sku)["positions"] == []


def now_us() -> int:
    return time.time_ns() // 1000
