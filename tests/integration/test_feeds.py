"""Channel feeds in both modes, over real HTTP: `availability serve`, and the streaming
stack (API -> Kafka -> worker -> Redis streams -> API). A consumer that snapshots and then
follows the cursor ends with the service's current quantities; a long-poll wakes on a
publish; an expired cursor gets 410 and a snapshot recovers; the channel's rate holds."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.events import event, unique_sku
from tests.support.feeds import Follower, burst, current, follow_until
from tests.support.server import ApiServer, Server
from tests.support.streaming import Stack, WorkerProcess, read_topic, run

from .helpers import RULES, wait_readiness

pytestmark = pytest.mark.integration

FEED_RULES: dict[str, Any] = {
    **RULES,
    "channels": {
        **RULES["channels"],
        "web": {
            "location_types": ["dc", "store"],
            "feed": {"max_per_second": 5000, "min_interval_ms": 0},
        },
        "slow": {"location_types": ["dc"], "feed": {"max_per_second": 16, "min_interval_ms": 0}},
    },
}

StartMode = Callable[..., Server]


@contextmanager
def service(mode: str, tmp_path: Path, stack: Stack) -> Iterator[StartMode]:
    """Start the service in `mode`, with FEED_RULES and `env`; stop it afterwards."""
    rules = tmp_path / "feed-rules.json"
    rules.write_text(json.dumps(FEED_RULES))
    started: list[Server | WorkerProcess] = []

    def start(env: dict[str, str] | None = None) -> Server:
        if mode == "embedded":
            server = Server(tmp_path / "embedded", env=env, rules_file=rules).start()
            started.append(server)
            return server
        worker = WorkerProcess(stack, tmp_path / "worker", env=env).start()
        started.append(worker)
        api = ApiServer(tmp_path / "api", env=stack.env | (env or {}), rules_file=rules)
        started.append(api.start())
        wait_readiness(api, 200, timeout_s=90)
        return api

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture(params=["embedded", "streaming"])
def start_mode(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_stack: Stack
) -> Iterator[StartMode]:
    with service(request.param, tmp_path, fresh_stack) as start:
        yield start


@pytest.fixture
def start_streaming(tmp_path: Path, fresh_stack: Stack) -> Iterator[StartMode]:
    with service("streaming", tmp_path, fresh_stack) as start:
        yield start


def test_a_consumer_that_snapshots_then_follows_ends_with_the_current_quantities(
    start_mode: StartMode,
) -> None:
    server = start_mode()
    skus = [unique_sku("FEED") for _ in range(2000)]
    with server.client(timeout=30) as http:
        burst(http, skus, 5000, seed=1)
        follower = Follower(http, "web")
        follower.snapshot()  # mid-burst: half of the 10,000 changes are still to come
        burst(http, skus, 5000, seed=2)
        expected = follow_until(follower, lambda: current(http, "web", skus))
        # Nothing published later takes the follower away from the last word.
        follower.poll(wait_ms=1000)
        assert {sku: follower.sellable().get(sku, 0) for sku in skus} == expected


def test_a_long_poll_returns_as_soon_as_a_change_is_published(start_mode: StartMode) -> None:
    server = start_mode()
    sku = unique_sku("FEED")
    with server.client(timeout=60) as http:
        follower = Follower(http, "web")
        follower.snapshot()
        follower.poll()  # past anything published before
        answer: dict[str, Any] = {}

        def long_poll() -> None:
            started = time.monotonic()
            answer["items"] = follower.poll(wait_ms=30_000)
            answer["seconds"] = time.monotonic() - started

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)
        assert poller.is_alive(), "the poll answered before anything was published"
        http.post("/v1/events", json=[event("receipt", sku, "DC1", qty=4)]).raise_for_status()
        poller.join(timeout=40)
    assert [(i["sku"], i["sellable"]) for i in answer["items"]] == [(sku, 4)]
    assert answer["seconds"] < 15, answer  # woken by the publish, not by its 30 s running out


def test_an_expired_cursor_is_refused_with_410_and_a_snapshot_recovers(
    start_mode: StartMode,
) -> None:
    server = start_mode(env={"AVAIL_FEED_RETENTION": "50"})
    skus = [unique_sku("FEED") for _ in range(200)]
    with server.client(timeout=30) as http:
        follower = Follower(http, "web")
        follower.snapshot()
        stale_cursor = follower.cursor
        burst(http, skus, 400, seed=3)
        deadline = time.monotonic() + 60  # the fan-out publishes the burst within seconds
        expired = http.get("/v1/feeds/web", params={"cursor": stale_cursor})
        while expired.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            expired = http.get("/v1/feeds/web", params={"cursor": stale_cursor})
        assert expired.status_code == 410, expired.text
        assert expired.json()["error"]["code"] == "cursor_expired"
        recovered = Follower(http, "web", resnapshot_when_expired=True)
        recovered.snapshot()
        follow_until(recovered, lambda: current(http, "web", skus))


def test_the_channel_rate_limit_holds_on_the_published_items(start_mode: StartMode) -> None:
    server = start_mode()
    skus = [unique_sku("SLOW") for _ in range(48)]
    with server.client(timeout=30) as http:
        http.post(
            "/v1/events", json=[event("receipt", sku, "DC1", qty=5) for sku in skus]
        ).raise_for_status()
        follower = Follower(http, "slow")
        items: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while len(items) < len(skus) and time.monotonic() < deadline:
            items += follower.poll(wait_ms=1000)
    assert sorted(i["sku"] for i in items) == sorted(skus)
    times = [datetime.fromisoformat(i["at"]).timestamp() for i in items]
    for start in times:  # every one-second window from an item on: at most 16 items
        assert sum(start <= t < start + 1 for t in times) <= 16
    assert Counter(i["sku"] for i in items).most_common(1)[0][1] == 1


def test_a_rules_change_that_moves_many_skus_goes_through_the_same_throttle(
    start_mode: StartMode,
) -> None:
    server = start_mode()
    skus = [unique_sku("RULE") for _ in range(32)]
    with server.client(timeout=30) as http:
        follower = Follower(http, "slow")
        follower.snapshot()
        stock = [event("receipt", sku, "DC1", qty=10) for sku in skus]
        http.post("/v1/events", json=stock).raise_for_status()
        follow_until(follower, lambda: current(http, "slow", skus))
        first = len(follower.values)

        halved = json.loads(json.dumps(FEED_RULES))
        halved["channels"]["slow"]["share"] = 0.5
        assert http.put("/v1/rules", json=halved).status_code == 200
        items: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            follower.sellable().get(sku) != 5 for sku in skus
        ):
            items += follower.poll(wait_ms=1000)
    assert first == len(skus)
    assert {sku: follower.sellable()[sku] for sku in skus} == dict.fromkeys(skus, 5)
    times = [datetime.fromisoformat(i["at"]).timestamp() for i in items]
    for start in times:
        assert sum(start <= t < start + 1 for t in times) <= 16


def test_the_streaming_feed_is_also_a_compacted_topic_with_each_skus_last_value(
    start_streaming: StartMode, fresh_stack: Stack
) -> None:
    server = start_streaming()
    skus = [unique_sku("TOPIC") for _ in range(300)]
    with server.client(timeout=30) as http:
        burst(http, skus, 2000, seed=4)
        follower = Follower(http, "web")
        expected = follow_until(follower, lambda: current(http, "web", skus))
    deadline, last = time.monotonic() + 30, dict[str, tuple[int, int]]()
    while time.monotonic() < deadline:
        last = {}
        for record in run(read_topic(fresh_stack.names.feed_topic("web"))):
            item = json.loads(record.value)
            assert record.key == item["sku"].encode()
            if item["version"] > last.get(item["sku"], (-1, 0))[0]:
                last[item["sku"]] = (item["version"], item["sellable"])
        if {sku: last.get(sku, (0, 0))[1] for sku in skus} == expected:
            break
        time.sleep(0.5)
    assert {sku: last.get(sku, (0, 0))[1] for sku in skus} == expected
