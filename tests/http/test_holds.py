"""Checkout holds over HTTP on the embedded server (SPEC 6): granted whole or refused whole,
never more than the channel sells however many storefronts race, released, committed into
orders, expired by themselves, idempotent by hold_id, and durable across a kill -9."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import event, unique_sku
from tests.support.holds import hold_body, line, race
from tests.support.server import Server

from .conftest import StartServer
from .helpers import position, post_events

WAIT_S = 15.0  # how long a test waits for an expiry it caused: generous on a busy machine


def stock(client: httpx.Client, sku: str, **at: int) -> None:
    post_events(client, [event("receipt", sku, where, qty=qty) for where, qty in at.items()])


def sellable(client: httpx.Client, sku: str, channel: str = "web") -> int:
    answer = client.get(f"/v1/availability/{sku}", params={"channel": channel})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["sellable"])


def hold(
    client: httpx.Client, *lines: dict[str, Any], ttl_s: int = 600, **extra: Any
) -> httpx.Response:
    return client.post(
        "/v1/holds", json={"channel": "web", "lines": list(lines), "ttl_s": ttl_s} | extra
    )


def wait_for(condition: Any, within_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_a_granted_hold_answers_201_and_takes_its_units_off_the_channel(
    client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=10, S001=6)  # web sells 10 + (6 - 1 safety stock)

    answer = hold(client, line(sku, 4), line(sku, 2, "S001"), ttl_s=120)

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"hold_id", "expires_at", "lines"}
    assert body["lines"] == [line(sku, 4), line(sku, 2, "S001")]
    remaining = datetime.fromisoformat(body["expires_at"]).timestamp() - time.time()
    assert 60 < remaining <= 121
    assert sellable(client, sku) == 15 - 6
    assert position(client, sku, "S001")["reserved"] == 2  # a located line counts as reserved


def test_a_hold_with_one_short_line_is_refused_with_409_and_holds_nothing(
    client: httpx.Client,
) -> None:
    plenty, scarce = unique_sku(), unique_sku()
    stock(client, plenty, DC1=20)
    stock(client, scarce, DC1=3)

    answer = hold(client, line(plenty, 5), line(scarce, 4))

    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "insufficient_stock"
    assert error["details"] == [{"sku": scarce, "requested": 4, "sellable": 3}]
    assert (sellable(client, plenty), sellable(client, scarce)) == (20, 3)


def test_repeating_a_hold_id_returns_the_first_answer_and_holds_nothing_more(
    client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=10)
    hold_id = f"cart-{uuid.uuid4().hex}"

    first = hold(client, line(sku, 3), hold_id=hold_id)
    again = hold(client, line(sku, 3), hold_id=hold_id)
    different = hold(client, line(sku, 9), hold_id=hold_id)

    assert first.status_code == again.status_code == different.status_code == 201
    assert first.json() == again.json() == different.json()
    assert first.json()["hold_id"] == hold_id
    assert sellable(client, sku) == 7


def test_a_released_hold_gives_its_units_back_and_is_then_unknown(
    client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=10)
    hold_id = hold(client, line(sku, 4)).json()["hold_id"]

    released = client.delete(f"/v1/holds/{hold_id}")
    assert released.status_code == 200, released.text
    assert sellable(client, sku) == 10

    again = client.delete(f"/v1/holds/{hold_id}")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "unknown_hold"
    assert client.post(f"/v1/holds/{hold_id}/commit").status_code == 404
    assert client.delete("/v1/holds/never-placed").json()["error"]["code"] == "unknown_hold"


def test_a_committed_hold_becomes_an_order_that_picks_and_cancels_apply_to(
    client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=5, S001=9, S002=4)  # web: DC1 5, S001 8, S002 1 (safety stock)
    hold_id = hold(client, line(sku, 2), line(sku, 1, "DC1")).json()["hold_id"]

    committed = client.post(f"/v1/holds/{hold_id}/commit", json={"order_id": "WEB-1001"})

    assert committed.status_code == 200, committed.text
    assert committed.json() == {
        "hold_id": hold_id,
        "order_id": "WEB-1001",
        "lines": [  # the line without a location goes where web sells most: S001
            {"sku": sku, "qty": 2, "location": "S001"},
            {"sku": sku, "qty": 1, "location": "DC1"},
        ],
    }
    assert sellable(client, sku) == 14 - 3
    assert position(client, sku, "S001")["reserved"] == 2
    post_events(client, [event("pick", sku, "S001", qty=2, order_id="WEB-1001")])
    assert position(client, sku, "S001")["reserved"] == 0
    post_events(client, [event("cancel", sku, "DC1", qty=1, order_id="WEB-1001")])
    assert sellable(client, sku) == 14 - 2  # the picked units left; the cancelled came back
    repeated = client.post(f"/v1/holds/{hold_id}/commit", json={"order_id": "WEB-1001"})
    assert repeated.json() == committed.json()
    assert client.delete(f"/v1/holds/{hold_id}").status_code == 404


def test_a_hold_expires_by_itself_and_can_no_longer_be_committed(
    client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=10)
    hold_id = hold(client, line(sku, 6), ttl_s=1).json()["hold_id"]
    assert sellable(client, sku) == 4

    assert wait_for(lambda: sellable(client, sku) == 10), "the hold never expired"
    gone = client.post(f"/v1/holds/{hold_id}/commit")
    assert gone.status_code == 404
    assert "expired" in gone.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"channel": "web", "lines": [], "ttl_s": 60}, "lines", id="no-lines"),
        pytest.param(
            {"channel": "web", "lines": [{"sku": "A", "qty": 1}], "ttl_s": 0}, "ttl_s", id="ttl-0"
        ),
        pytest.param(
            {"channel": "web", "lines": [{"sku": "A", "qty": 1}], "ttl_s": 3601},
            "ttl_s",
            id="ttl-over-an-hour",
        ),
        pytest.param(
            {"channel": "web", "lines": [{"sku": "A", "qty": 0}], "ttl_s": 60},
            "lines[0].qty",
            id="qty-0",
        ),
        pytest.param(
            {"channel": "web", "lines": [{"sku": "bad sku", "qty": 1}], "ttl_s": 60},
            "lines[0].sku",
            id="bad-sku",
        ),
    ],
)
def test_an_invalid_hold_request_is_refused_with_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/holds", json=body)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["field"] == field


def test_a_hold_on_an_unknown_channel_is_refused_with_404(client: httpx.Client, sku: str) -> None:
    answer = client.post(
        "/v1/holds", json={"channel": "nowhere", "lines": [line(sku, 1)], "ttl_s": 60}
    )

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_channel"


def test_two_hundred_storefronts_racing_for_fifty_units_get_exactly_fifty(
    server: Server, client: httpx.Client, sku: str
) -> None:
    stock(client, sku, DC1=50)

    codes = [answer.status_code for answer in race(server.url, [hold_body(line(sku, 1))] * 200)]

    assert sorted(set(codes)) == [201, 409]
    assert codes.count(201) == 50
    assert sellable(client, sku) == 0
    assert not position(client, sku, "DC1")["oversold"]


def test_racing_multi_sku_holds_are_all_or_nothing(server: Server, client: httpx.Client) -> None:
    shirts, socks = unique_sku(), unique_sku()
    stock(client, shirts, DC1=50)
    stock(client, socks, DC1=30)
    body = hold_body(line(shirts, 1), line(socks, 1))

    codes = [answer.status_code for answer in race(server.url, [body] * 200)]

    assert codes.count(201) == 30
    assert (sellable(client, shirts), sellable(client, socks)) == (20, 0)


def test_holds_survive_a_kill_and_still_expire_on_time(
    start_server: StartServer, rules_path: Path
) -> None:
    server = start_server(rules_file=rules_path)
    sku = unique_sku()
    with server.client() as http:
        stock(http, sku, DC1=10)
        placed = hold(http, line(sku, 3), ttl_s=600)
        assert placed.status_code == 201, placed.text
        lasting = placed.json()["hold_id"]
        hold(http, line(sku, 2), ttl_s=3)
    server.kill()
    server.restart()
    with server.client() as http:
        assert sellable(http, sku) in (5, 7)  # the short hold may have expired by now
        assert wait_for(lambda: sellable(http, sku) == 7), "the short hold never expired"
        committed = http.post(f"/v1/holds/{lasting}/commit")
        assert committed.status_code == 200, committed.text
        assert sellable(http, sku) == 7
