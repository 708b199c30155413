"""Checkout holds in the streaming mode, on a real Kafka, Redis and worker (SPEC 6): each
decided by the single writer of its SKUs' partition, never from a cached value; racing
storefronts never oversell, multi-partition holds are all or nothing, and holds in flight
when the worker is killed end up whole or absent, and still expire on time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.events import event
from tests.support.holds import hold_body, line, race
from tests.support.read_model import sku_in_partition
from tests.support.server import ApiServer
from tests.support.streaming import Stack, WorkerProcess, wait_until

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

CONVERGE_S = 90.0


@pytest.fixture
def worker(fresh_stack: Stack, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(fresh_stack, tmp_path / "worker", standby_replicas=0).start()
    yield process
    process.stop()


@pytest.fixture
def api(start_api: Callable[..., ApiServer], worker: WorkerProcess, rules_path: Path) -> ApiServer:
    server = start_api(rules_file=rules_path)
    wait_readiness(server, 200, timeout_s=90)
    return server


def sellable(http: httpx.Client, sku: str) -> int | None:
    answer = http.get(f"/v1/availability/{sku}", params={"channel": "web"})
    if answer.status_code == 503:
        return None
    assert answer.status_code == 200, answer.text
    return int(answer.json()["sellable"])


def converge(http: httpx.Client, expected: dict[str, int], within_s: float = CONVERGE_S) -> None:
    deadline = time.monotonic() + within_s
    got: dict[str, int | None] = {}
    while time.monotonic() < deadline:
        got = {sku: sellable(http, sku) for sku in expected}
        if got == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"answers {got}, expected {expected}")


def stock(http: httpx.Client, **skus: int) -> None:
    answer = http.post(
        "/v1/events", json=[event("receipt", s, "DC1", qty=q) for s, q in skus.items()]
    )
    assert answer.status_code == 202, answer.text
    converge(http, skus)


def test_racing_storefronts_get_exactly_the_units_there_are(api: ApiServer) -> None:
    one = sku_in_partition(0, 4)
    with api.client() as http:
        stock(http, **{one: 50})

        codes = [a.status_code for a in race(api.url, [hold_body(line(one, 1))] * 200)]

        assert codes.count(201) == 50
        assert set(codes) == {201, 409}
        converge(http, {one: 0})
        positions = http.get(f"/v1/positions/{one}").json()["positions"]
        assert [(p["location"], p["oversold"]) for p in positions] == [("DC1", False)]


def test_a_hold_across_partitions_is_all_or_nothing(api: ApiServer) -> None:
    shirts, socks = sku_in_partition(1, 4), sku_in_partition(2, 4)
    with api.client() as http:
        stock(http, **{shirts: 50, socks: 30})

        answers = race(api.url, [hold_body(line(shirts, 1), line(socks, 1))] * 200)

        assert [a.status_code for a in answers].count(201) == 30
        refused = [a.json()["error"] for a in answers if a.status_code == 409]
        assert len(refused) == 170
        assert all(
            e["details"] in ([{"sku": s, "requested": 1, "sellable": 0}] for s in (shirts, socks))
            for e in refused
        ), refused[:3]
        converge(http, {shirts: 20, socks: 0})  # the refused holds' shirts were given back


def test_release_commit_repeat_and_expiry_through_the_writers(api: ApiServer) -> None:
    sku, other = sku_in_partition(0, 4), sku_in_partition(3, 4)
    with api.client() as http:
        stock(http, **{sku: 10, other: 10})
        placed = http.post(
            "/v1/holds", json=hold_body(line(sku, 3), line(other, 2)) | {"hold_id": "cart-1"}
        )
        assert placed.status_code == 201, placed.text
        repeated = http.post("/v1/holds", json=hold_body(line(sku, 9)) | {"hold_id": "cart-1"})
        assert (repeated.status_code, repeated.json()) == (201, placed.json())
        converge(http, {sku: 7, other: 8})

        released = http.delete("/v1/holds/cart-1")
        assert released.status_code == 200, released.text
        converge(http, {sku: 10, other: 10})
        assert http.delete("/v1/holds/cart-1").json()["error"]["code"] == "unknown_hold"

        hold_id = http.post("/v1/holds", json=hold_body(line(sku, 4))).json()["hold_id"]
        committed = http.post(f"/v1/holds/{hold_id}/commit", json={"order_id": "WEB-7"})
        assert committed.status_code == 200, committed.text
        assert committed.json()["lines"] == [{"sku": sku, "qty": 4, "location": "DC1"}]
        converge(http, {sku: 6})
        picked = http.post("/v1/events", json=[event("pick", sku, "DC1", qty=4, order_id="WEB-7")])
        assert picked.status_code == 202
        converge(http, {sku: 6})  # the order's units left the shelf: reserved became picked

        short_lived = http.post("/v1/holds", json=hold_body(line(other, 5), ttl_s=1))
        assert short_lived.status_code == 201, short_lived.text
        converge(http, {other: 10}, within_s=30)  # the writer expired it by itself


def test_holds_in_flight_when_the_worker_dies_end_whole_or_absent_and_still_expire(
    api: ApiServer, worker: WorkerProcess
) -> None:
    left, right = sku_in_partition(0, 4), sku_in_partition(1, 4)
    answers: list[httpx.Response] = []
    with api.client() as http:
        stock(http, **{left: 100, right: 100})

        stop = threading.Event()

        def storefronts() -> None:
            body = hold_body(line(left, 1), line(right, 1), ttl_s=45)
            for _ in range(12):  # bounded: at most 120 holds
                if stop.is_set():
                    return
                answers.extend(race(api.url, [body] * 10))

        clients = threading.Thread(target=storefronts)
        clients.start()
        assert wait_until(lambda: len(answers) >= 10, 30)
        worker.kill()  # holds in flight: some placed on one partition, some not yet sent
        time.sleep(1.0)
        worker.start()
        time.sleep(1.0)
        stop.set()
        clients.join(timeout=120)
        unexpected = [a.text for a in answers if a.status_code not in (201, 503)]
        assert not unexpected, unexpected
        assert any(a.status_code == 503 for a in answers)  # the kill was met by some
        granted = sum(a.status_code == 201 for a in answers)

        # Every hold the API granted is whole on both SKUs; every other one left nothing.
        converge(http, {left: 100 - granted, right: 100 - granted}, within_s=40)
        converge(http, {left: 100, right: 100}, within_s=90)  # and they expire on time
    assert "last stop was not clean" in worker.log_tail(200_000)


def test_a_commit_without_a_decision_in_time_is_not_undone_and_commits_again_as_the_first(
    api: ApiServer, worker: WorkerProcess
) -> None:
    sku = sku_in_partition(2, 4)
    with api.client() as http:
        stock(http, **{sku: 10})
        placed = http.post("/v1/holds", json=hold_body(line(sku, 3)) | {"hold_id": "cart-late"})
        assert placed.status_code == 201, placed.text
        with worker.paused():  # longer than the API's 5 s wait, shorter than the session
            late = http.post("/v1/holds/cart-late/commit", json={"order_id": "WEB-LATE"})
        assert late.status_code == 503, late.text
        assert "commit again" in late.json()["error"]["message"]
        again = http.post("/v1/holds/cart-late/commit", json={"order_id": "WEB-LATE"})
        assert again.status_code == 200, again.text
        assert again.json()["lines"] == [{"sku": sku, "qty": 3, "location": "DC1"}]
        converge(http, {sku: 7})  # the order reserves the units: nothing was given back
