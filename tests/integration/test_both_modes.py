"""One scenario suite, two modes: the same events posted to the embedded server and to the
streaming stack (API -> Kafka -> worker -> Redis -> API) come out with the same answers,
versions included; only `updated_at` (server time) may differ. Then the Redis read model
is flushed under a reader, which must see a right answer or a 503, never a false zero."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from availability import CompiledRules, SkuState, rules_from_object
from availability.state import Position
from availability.views import MAX_LOCATIONS_PAGE, LocationsAsk, availability
from tests.support.events import event
from tests.support.read_model import forget_namespace
from tests.support.server import ApiServer, Server
from tests.support.streaming import Stack, WorkerProcess

from .helpers import RULES, wait_readiness

pytestmark = pytest.mark.integration

CONVERGE_S = 60.0
CHANNELS = ("web", "pickup", "amazon")
LOCATIONS = (None, "DC1", "S001", "S002")
# A breakdown has at most a few thousand locations: a cursor that never ends fails, not hangs.
MAX_PAGES = 10_000


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
                found[f"{sku} {channel} pages"] = pages(http, sku, channel, limit=1)
        batch = http.post("/v1/availability/batch", json={"channel": "web", "skus": skus}).json()
        listed = http.post(
            "/v1/availability/batch",
            json={"channel": "web", "skus": skus, "include": "locations", "limit": 1},
        ).json()
    for item in [*batch["items"], *listed["items"]]:
        item.pop("updated_at", None)
    found["batch"] = batch
    found["batch with locations"] = listed
    return found


def pages(http: httpx.Client, sku: str, channel: str, limit: int) -> list[dict[str, Any]]:
    """Every page of the SKU's breakdown for the channel, following `next_after`; the
    answers without `updated_at`."""
    found: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"channel": channel, "include": "locations", "limit": limit}
    for _ in range(MAX_PAGES):
        response = http.get(f"/v1/availability/{sku}", params=params)
        if response.status_code != 200:  # not published yet (streaming): compared again
            return [*found, {"status": response.status_code}]
        body = response.json()
        body.pop("updated_at", None)
        found.append(body)
        if "next_after" not in body:
            return found
        params["after"] = body["next_after"]
    pytest.fail(f"{sku}: no last page after {MAX_PAGES} pages for {channel}")


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


WIDE = "WIDE-1"
STORES = [f"W{n:04}" for n in range(5000)]
WIDE_RULES = RULES | {
    "safety_stock": [{"units": 0}, {"location_type": "store", "units": 2}],
    "channels": RULES["channels"] | {"amazon": {"location_types": ["store"], "share": 0.3,
                                                "cap": 9000, "buffer": 5}},
}  # fmt: skip
ON_HOLD_ANYWHERE, ON_HOLD_AT, HELD_STORE = 7, 2, "W0042"


def wide_events() -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """Stock at 5,000 stores and DC1, then sales at random stores; and each location's
    on_hand after them."""
    on_hand = {store: 5 + n % 7 for n, store in enumerate(STORES)} | {"DC1": 100}
    receipts = [event("receipt", WIDE, place, minute=1, qty=qty) for place, qty in on_hand.items()]
    pick = random.Random(20)
    sales = []
    for store in pick.sample(STORES, 400):
        qty = pick.randint(1, 3)
        on_hand[store] -= qty
        sales.append(event("sale", WIDE, store, minute=2, qty=qty))
    batches = [receipts[start : start + 1000] for start in range(0, len(receipts), 1000)]
    return [*batches, sales], on_hand


def core_answers(on_hand: dict[str, int], channel: str) -> tuple[int, list[dict[str, Any]]]:
    """The channel's quantity and whole breakdown as the core computes them from the
    positions the test's own events and holds leave, under WIDE_RULES."""
    rules = CompiledRules(rules_from_object(WIDE_RULES))
    state = SkuState(sku=WIDE, held_anywhere=ON_HOLD_ANYWHERE)
    state.positions = {
        place: Position(on_hand=qty, held=ON_HOLD_AT if place == HELD_STORE else 0)
        for place, qty in on_hand.items()
    }
    whole = availability(state, rules, rules.channels[channel], ask=LocationsAsk(limit=10**6))
    listed = [{"location": e.location, "sellable": e.sellable} for e in whole.locations or []]
    return whole.sellable, listed


def wide_answers(server: Server) -> dict[str, Any]:
    """Each channel's answer, its breakdown page by page (at most the cap a page), and a
    batch with the breakdown: bounded answers, checked for their shape on the way."""
    found: dict[str, Any] = {}
    with server.client() as http:
        for channel in CHANNELS:
            response = http.get(f"/v1/availability/{WIDE}", params={"channel": channel})
            if response.status_code != 200:
                return {"status": response.status_code}
            plain = response.json()
            assert "locations" not in plain
            assert len(response.content) < 200  # whatever the store count
            listed = pages(http, WIDE, channel, limit=MAX_LOCATIONS_PAGE)
            for page in listed:
                assert len(page.get("locations", [])) <= MAX_LOCATIONS_PAGE
                if "next_after" in page:
                    assert page["next_after"] == page["locations"][-1]["location"]
            plain.pop("updated_at")
            found[channel] = plain
            found[f"{channel} pages"] = listed
        batch = http.post(
            "/v1/availability/batch",
            json={"channel": "web", "skus": [WIDE], "include": "locations", "limit": 100},
        ).json()
    item = batch["items"][0]
    item.pop("updated_at", None)
    found["batch"] = item
    return found


def test_a_sku_at_5000_stores_answers_bounded_and_pages_its_breakdown_as_the_core_computes(
    embedded: Server, streaming: ApiServer
) -> None:
    batches, on_hand = wide_events()
    holds = [
        {"channel": "web", "ttl_s": 600, "hold_id": "wide-anywhere",
         "lines": [{"sku": WIDE, "qty": ON_HOLD_ANYWHERE}]},
        {"channel": "pickup", "ttl_s": 600, "hold_id": "wide-at",
         "lines": [{"sku": WIDE, "qty": ON_HOLD_AT, "location": HELD_STORE}]},
    ]  # fmt: skip
    for server in (embedded, streaming):
        post_all(server, batches)
        with server.client() as http:
            assert http.put("/v1/rules", json=WIDE_RULES).status_code == 200
    # The holds are decided on the stock: the streaming workers must have applied it.
    stocked = wide_answers(embedded)
    assert converge(lambda: wide_answers(streaming), stocked) == stocked
    for server in (embedded, streaming):
        with server.client() as http:
            for hold in holds:
                response = http.post("/v1/holds", json=hold)
                assert response.status_code == 201, response.text

    expected = wide_answers(embedded)
    for channel in CHANNELS:
        sellable, listed = core_answers(on_hand, channel)
        assert expected[channel]["sellable"] == sellable
        got = expected[f"{channel} pages"]
        assert [entry for page in got for entry in page["locations"]] == listed
        assert len(got) == -(-len(listed) // MAX_LOCATIONS_PAGE)  # full pages, then the rest
        assert all(page | {"locations": [], "next_after": None} == got[0] | {
            "locations": [], "next_after": None} for page in got)  # fmt: skip
    assert expected["batch"]["locations"] == core_answers(on_hand, "web")[1][:100]
    assert expected["batch"]["next_after"] == expected["batch"]["locations"][-1]["location"]
    assert converge(lambda: wide_answers(streaming), expected) == expected
