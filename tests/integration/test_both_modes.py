"""One scenario suite, two modes: the same events posted to the embedded server and to the
streaming stack (API -> Kafka -> worker -> Redis -> API) come out with the same answers,
versions included; only `updated_at` (server time) may differ. Then the Redis read model
is flushed under a reader, which must see a right answer or a 503, never a false zero."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.events import event
from tests.support.read_model import forget_namespace
from tests.support.server import ApiServer, Server
from tests.support.streaming import Stack, WorkerProcess

from .helpers import RULES, wait_readiness

pytestmark = pytest.mark.integration

CONVERGE_S = 60.0
CHANNELS = ("web", "pickup", "amazon")
LOCATIONS = (None, "DC1", "S001", "S002")


def scenario() -> list[list[dict[str, Any]]]:
    """Batches over three SKUs: every event type, late and duplicated deliveries, a count
    rebase, a stale count, a transfer received before it was shipped, an oversold store."""
    a, b, c = "SKU-A1", "SKU-B2", "SKU-C3"
    receipt = event("receipt", a, "DC1", minute=1, qty=50)
    return [
        [
            receipt,
            event("receipt", a, "S001", minute=1, qty=8),
            event("order", a, "DC1", minute=2, qty=5, order_id="W-1", channel="web"),
            event("pick", a, "DC1", minute=3, qty=2, order_id="W-1"),
            event("cancel", a, "DC1", minute=4, qty=1, order_id="W-1"),
            event("sale", b, "S002", minute=2, qty=3),
            event("receipt", b, "S002", minute=1, qty=2),
            event("transfer_in", c, "S001", minute=6, qty=4, transfer_id="T-9"),
        ],
        [
            receipt,  # delivered twice
            event("transfer_out", c, "DC1", minute=5, qty=4, transfer_id="T-9", to_location="S001"),
            event("receipt", c, "DC1", minute=0, qty=30),
            event("count", a, "S001", minute=10, counted=6),
            event("sale", a, "S001", minute=11, qty=1),
            event("sale", a, "S001", minute=9, qty=1),  # before the count: already in it
            event("count", a, "S001", minute=8, counted=99),  # stale
            event("return", b, "S002", minute=7, qty=1, disposition="damaged"),
            event("return", a, "DC1", minute=7, qty=2, disposition="sellable"),
            event("adjust", c, "DC1", minute=8, delta=-3, reason="breakage"),
        ],
    ]


def answers(server: Server, skus: list[str]) -> dict[str, Any]:
    """Every question a storefront can ask of these SKUs, without server times."""
    found: dict[str, Any] = {}
    with server.client() as http:
        for sku in skus:
            # last_count_drift included: a stream interleaves the topics, so a sale may
            # reach a worker before or after the count in another topic, and the drift
            # must not depend on it.
            found[f"positions {sku}"] = http.get(f"/v1/positions/{sku}").json()
            for channel in CHANNELS:
                for location in LOCATIONS:
                    params = {"channel": channel} | ({"location": location} if location else {})
                    body = http.get(f"/v1/availability/{sku}", params=params).json()
                    body.pop("updated_at", None)
                    found[f"{sku} {channel} {location}"] = body
        batch = http.post("/v1/availability/batch", json={"channel": "web", "skus": skus}).json()
    for item in batch["items"]:
        item.pop("updated_at", None)
    found["batch"] = batch
    return found


def post_all(server: Server, batches: list[list[dict[str, Any]]]) -> None:
    with server.client() as http:
        for batch in batches:
            response = http.post("/v1/events", json=batch)
            assert response.status_code == 202, response.text


def converge(read: Callable[[], dict[str, Any]], expected: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + CONVERGE_S
    got = read()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        got = read()
    return got


@pytest.fixture
def worker(fresh_stack: Stack, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(fresh_stack, tmp_path / "worker").start()
    yield process
    process.stop()


@pytest.fixture
def streaming(
    start_api: Callable[..., ApiServer], worker: WorkerProcess, rules_path: Path
) -> ApiServer:
    api = start_api(rules_file=rules_path)
    wait_readiness(api, 200, timeout_s=90)
    return api


@pytest.fixture
def embedded(tmp_path: Path, rules_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "embedded", rules_file=rules_path).start()
    yield server
    server.stop()


def test_the_same_events_give_the_same_answers_in_both_modes(
    embedded: Server, streaming: ApiServer
) -> None:
    skus = ["SKU-A1", "SKU-B2", "SKU-C3", "SKU-NEVER-SEEN"]
    post_all(embedded, scenario())
    post_all(streaming, scenario())
    expected = answers(embedded, skus)
    assert expected["positions SKU-A1"]["version"] > 0
    got = converge(lambda: answers(streaming, skus), expected)
    assert got == expected

    # A rules change bumps the same versions in both modes, and moves the same answers.
    changed = RULES | {"safety_stock": [{"units": 0}, {"location_type": "store", "units": 3}]}
    for server in (embedded, streaming):
        with server.client() as http:
            assert http.put("/v1/rules", json=changed).status_code == 200
    expected = answers(embedded, skus)
    assert expected["positions SKU-A1"]["positions"][1]["safety_stock"] == 3
    assert converge(lambda: answers(streaming, skus), expected) == expected


def test_a_flushed_read_model_is_rebuilt_and_no_reader_sees_a_false_zero(
    streaming: ApiServer, worker: WorkerProcess, fresh_stack: Stack, redis_client: redis.Redis
) -> None:
    skus = [f"SKU-F{n}" for n in range(40)]
    stock = [event("receipt", sku, "DC1", minute=1, qty=10 + n) for n, sku in enumerate(skus)]
    post_all(streaming, [stock])

    def sellable(http: httpx.Client, sku: str) -> int | None:
        response = http.get(f"/v1/availability/{sku}", params={"channel": "web"})
        if response.status_code == 503:
            return None
        assert response.status_code == 200, response.text
        return int(response.json()["sellable"])

    with streaming.client() as http:
        assert converge(
            lambda: {sku: sellable(http, sku) for sku in skus},
            {sku: 10 + n for n, sku in enumerate(skus)},
        ) == {sku: 10 + n for n, sku in enumerate(skus)}

    seen: list[tuple[str, int | None]] = []
    stop = threading.Event()

    def reader() -> None:
        with streaming.client() as http:
            while not stop.is_set():
                for sku in skus:
                    seen.append((sku, sellable(http, sku)))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.5)
        # The worker rebuilds within a second of a flush: frozen meanwhile, it leaves the
        # flush visible long enough for the readers to meet it, every run.
        with worker.paused():
            assert forget_namespace(redis_client, fresh_stack.names) > 0
            wait_readiness(streaming, 503, timeout_s=10)
            time.sleep(0.5)
        wait_readiness(streaming, 200, timeout_s=60)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()

    wrong = [(sku, got) for sku, got in seen if got is not None and got != 10 + skus.index(sku)]
    assert not wrong, f"readers saw {len(wrong)} wrong answers, e.g. {wrong[:5]}"
    assert any(got is None for _, got in seen), "the flush was never visible to a reader"
    with streaming.client() as http:
        assert all(sellable(http, sku) == 10 + n for n, sku in enumerate(skus))
