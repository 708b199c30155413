"""A peak sale, as locust users. Run it through `python -m loadtests.peak_sale`, which
puts the rules and stocks the catalogue first (see the README's "Load tests"); by hand:

    PYTHONPATH=. .venv/bin/locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 60s \
        --host http://127.0.0.1:8000 --csv var/peak

- `Storefront` (the rest of the users): single availability reads, checkout batches of 20
  to 100 SKUs, and holds that are then committed or released. A 409 on a hold is the
  service saying a doorbuster is sold out: an expected answer, kept apart in the stats.
- `MarketplacePublisher` (`LOADTEST_PUBLISHERS`, default 2): snapshots the feed channel,
  then long-polls it from the snapshot's cursor; a 410 (cursor expired) means snapshot
  again.
- `StoreEvents` (`LOADTEST_EVENT_USERS`, default 2): POST /v1/events batches of the
  workload's event mix, `LOADTEST_EVENT_BATCH` events at `LOADTEST_EVENT_RATE` batches/s.
- `KafkaEvents` (`LOADTEST_KAFKA_USERS`, default 1), only with `LOADTEST_KAFKA` set: the
  same mix produced straight to the inventory topics of `LOADTEST_TOPIC_PREFIX`.

The catalogue comes from `LOADTEST_SKUS` and `LOADTEST_DOORBUSTERS`, and must be the one the
target was stocked with; `LOADTEST_HOLD_TTL_S` and `LOADTEST_FEED_WAIT_MS` set the holds'
lifetime and the long-polls' wait. With `LOADTEST_RESULTS` set, the final figures, failures
and exceptions are written there as JSON when locust quits (its CSV files are written once
a second, so they miss the last one).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from locust import User, between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from loadtests.peak_catalogue import FEED_CHANNEL, SOLD_OUT, Catalogue
from loadtests.workload import EventMix

CATALOGUE = Catalogue(
    skus=int(os.environ.get("LOADTEST_SKUS", "2000")),
    doorbusters=int(os.environ.get("LOADTEST_DOORBUSTERS", "10")),
)
RUN = os.environ.get("LOADTEST_RUN") or uuid.uuid4().hex[:8]
HOLD_TTL_S = int(os.environ.get("LOADTEST_HOLD_TTL_S", "60"))
FEED_WAIT_MS = int(os.environ.get("LOADTEST_FEED_WAIT_MS", "10000"))
EVENT_BATCH = int(os.environ.get("LOADTEST_EVENT_BATCH", "200"))
EVENT_RATE = float(os.environ.get("LOADTEST_EVENT_RATE", "5"))
KAFKA = os.environ.get("LOADTEST_KAFKA", "")
TOPIC_PREFIX = os.environ.get("LOADTEST_TOPIC_PREFIX", "")

HOLD_COMMIT_SHARE = 0.7  # the rest of the carts are abandoned and released


def event_mix() -> EventMix:
    """A mix of this user's own: unique event ids, times just behind the clock, and half the
    events on the hottest 1% of SKUs, as in a sale."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    prefix = f"lt-{RUN}-{uuid.uuid4().hex[:8]}"
    return EventMix(
        CATALOGUE.skus, seed=random.randrange(2**32), start=start, hot_share=0.5, id_prefix=prefix
    )


class Storefront(FastHttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rnd = random.Random()

    @task(10)
    def product_page(self) -> None:
        sku = CATALOGUE.sku(self.rnd)
        self.client.get(f"/v1/availability/{sku}?channel=web", name="/v1/availability/[sku]")

    @task(3)
    def checkout_page(self) -> None:
        skus = [CATALOGUE.sku(self.rnd) for _ in range(self.rnd.randint(20, 100))]
        self.client.post("/v1/availability/batch", json={"channel": "web", "skus": skus})

    @task(2)
    def checkout(self) -> None:
        body = CATALOGUE.hold_body(self.rnd, HOLD_TTL_S)
        with self.client.post("/v1/holds", json=body, catch_response=True) as response:
            if response.status_code == 409:
                response.request_meta["name"] = SOLD_OUT
                response.success()
                return
            if response.status_code != 201:
                response.failure(f"hold answered {response.status_code}: {response.text}")
                return
            hold_id = response.json()["hold_id"]
        if self.rnd.random() < HOLD_COMMIT_SHARE:
            self.client.post(f"/v1/holds/{hold_id}/commit", json={}, name="/v1/holds/[id]/commit")
        else:
            self.client.delete(f"/v1/holds/{hold_id}", name="/v1/holds/[id]")


class MarketplacePublisher(FastHttpUser):
    fixed_count = int(os.environ.get("LOADTEST_PUBLISHERS", "2"))
    wait_time = between(0, 0.05)

    def on_start(self) -> None:
        self.cursor: str | None = None
        self.quantities: dict[str, tuple[int, int]] = {}  # sku -> (version, sellable)
        self.snapshot()

    def keep(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            held = self.quantities.get(item["sku"])
            if held is None or held[0] < item["version"]:
                self.quantities[item["sku"]] = (item["version"], item["sellable"])

    def snapshot(self) -> None:
        token: str | None = None
        while True:
            params = "limit=1000" + (f"&page_token={token}" if token else "")
            with self.client.get(
                f"/v1/feeds/{FEED_CHANNEL}/snapshot?{params}",
                name="/v1/feeds/[channel]/snapshot",
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"snapshot answered {response.status_code}")
                    return
                page = response.json()
            self.keep(page["items"])
            self.cursor = page["cursor"]
            token = page.get("next_page_token")
            if not token:
                return

    @task
    def follow(self) -> None:
        if self.cursor is None:
            self.snapshot()
            return
        url = f"/v1/feeds/{FEED_CHANNEL}?cursor={self.cursor}&limit=1000&wait_ms={FEED_WAIT_MS}"
        with self.client.get(url, name="/v1/feeds/[channel]", catch_response=True) as response:
            if response.status_code == 410:
                # The feed trimmed past us: what we missed is only in a snapshot.
                response.request_meta["name"] = "/v1/feeds/[channel] (410 resnapshot)"
                response.success()
                self.cursor = None
                return
            if response.status_code != 200:
                response.failure(f"feed answered {response.status_code}")
                return
            page = response.json()
        self.keep(page["items"])
        self.cursor = page["cursor"] or self.cursor


class StoreEvents(FastHttpUser):
    fixed_count = int(os.environ.get("LOADTEST_EVENT_USERS", "2"))
    wait_time = constant_throughput(EVENT_RATE)

    def on_start(self) -> None:
        self.mix = event_mix()

    @task
    def send(self) -> None:
        batch = [self.mix.next() for _ in range(EVENT_BATCH)]
        self.client.post("/v1/events", json=batch)


class KafkaEvents(User):
    """The same events as `StoreEvents`, produced to Kafka by a `loadtests.kafka_pipe`
    child (see there why a child); each batch is one request in locust's stats."""

    abstract = not KAFKA
    fixed_count = int(os.environ.get("LOADTEST_KAFKA_USERS", "1"))
    wait_time = constant_throughput(EVENT_RATE)

    def on_start(self) -> None:
        self.mix = event_mix()
        command = [sys.executable, "-m", "loadtests.kafka_pipe", "--bootstrap", KAFKA]
        command += ["--topic-prefix", TOPIC_PREFIX]
        self.pipe = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def on_stop(self) -> None:
        if self.pipe.stdin:
            self.pipe.stdin.close()
        try:
            self.pipe.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.pipe.kill()

    @task
    def send(self) -> None:
        assert self.pipe.stdin
        assert self.pipe.stdout
        payload = json.dumps([self.mix.next() for _ in range(EVENT_BATCH)]).encode() + b"\n"
        started = time.perf_counter()
        self.pipe.stdin.write(payload)
        self.pipe.stdin.flush()
        answer = self.pipe.stdout.readline().decode().strip()
        failure = None if answer == "ok" else RuntimeError(answer or "the producer exited")
        self.environment.events.request.fire(
            request_type="KAFKA",
            name=f"produce to {TOPIC_PREFIX}inventory.*",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(payload),
            exception=failure,
            context={},
        )


@events.quitting.add_listener
def write_results(environment: Environment, **_kwargs: Any) -> None:
    """At quitting the users have stopped: these are the final figures."""
    path = os.environ.get("LOADTEST_RESULTS")
    if not path:
        return
    stats = environment.stats
    rows = [
        {
            "kind": entry.method,
            "name": entry.name,
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "per_second": entry.total_rps,
            "p50_ms": entry.get_response_time_percentile(0.5),
            "p99_ms": entry.get_response_time_percentile(0.99),
        }
        for entry in stats.entries.values()
    ]
    failures = [
        f"{error.method} {error.name}: {error.error} ({error.occurrences}x)"
        for error in stats.errors.values()
    ]
    raised = environment.runner.exceptions.values() if environment.runner else []
    errors = [f"{e['msg']} ({e['count']}x): {e['traceback'][-400:]}" for e in raised]
    with open(path, "w") as out:
        json.dump({"rows": rows, "failures": failures, "errors": errors}, out)
