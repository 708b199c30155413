"""The steady load, in a thread of its own with an event loop: events through both APIs'
`POST /v1/events` as fast as they are taken (up to the profile's ceiling), checkout holds
through both, and availability reads through both, each answer counted by API.

Writes (events and new holds) can be paused and resumed; reads go on until the load stops,
so the 503s and wrong answers of a recovery are counted while the stack settles. A read of
an event SKU answered 200 with less than READ_FLOOR is wrong: no such SKU ever has so
little (`workload.py`); this is the read that tells a shopper 0 for stock that exists."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec

from api.streaming.kafka_link import ACK_TIMEOUT_S
from api.streaming.runtime import HOLD_DECISION_TIMEOUT_S

from .checkout import HoldAnswers, HoldBook, live_through
from .log_fold import Ledger
from .profile import Profile
from .workload import READ_FLOOR, ChaosMix

# The API answers within its own bounds (Kafka's acknowledgement, a hold's decision); the
# client waits longer, so a slow answer is the API's 503, never a client time-out.
CLIENT_TIMEOUT_S: Final = ACK_TIMEOUT_S + HOLD_DECISION_TIMEOUT_S + 15
log = logging.getLogger("loadtests.chaos")

IDLE_TIMEOUT_S: Final = 120.0  # for the requests in flight when writes pause
READ_CHANNELS: Final = ("web", "pickup", "amazon")
_json = msgspec.json.Encoder()


@dataclass
class ApiCounts:
    """Answers one API gave, by kind."""

    events: Counter[str] = field(default_factory=Counter)  # "202", "503", ... : batches
    events_accepted: int = 0  # events in batches answered 202
    reads: Counter[str] = field(default_factory=Counter)  # "ok", "503", "wrong", other codes

    def copy(self) -> ApiCounts:
        return ApiCounts(Counter(self.events), self.events_accepted, Counter(self.reads))

    def minus(self, earlier: ApiCounts) -> ApiCounts:
        return ApiCounts(
            self.events - earlier.events,
            self.events_accepted - earlier.events_accepted,
            self.reads - earlier.reads,
        )


class Load:
    def __init__(
        self,
        urls: Sequence[str],
        mix: ChaosMix,
        book: HoldBook,
        ledger: Ledger,
        profile: Profile,
        seed: int = 29,
    ) -> None:
        self.urls = list(urls)
        self.mix = mix
        self.book = book
        self.ledger = ledger
        self.profile = profile
        self.random = random.Random(seed)
        self.counts = [ApiCounts() for _ in self.urls]
        self.hold_answers = HoldAnswers()
        self.wrong_examples: list[str] = []
        self.writing = False
        self._in_flight = 0
        self._stopping = False
        self._next_send = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._clients: list[httpx.AsyncClient] = []
        self._holds: set[asyncio.Task[None]] = set()
        # What broke the load itself (not an answer: a bug, or a surprise): the suite must
        # not go on measuring a load that stopped.
        self.failure: BaseException | None = None

    # -- control, from the suite's thread ----------------------------------------------------

    def start(self) -> Load:
        self._thread.start()
        return self

    def resume_writes(self) -> None:
        self.writing = True

    def pause_writes(self) -> None:
        """No new event batch or hold from now; returns once every one in flight has its
        final answer (holds: their commit or release too)."""
        self.writing = False
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while self._in_flight:
            self._raise_if_failed()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._in_flight} writes still in flight after pausing")
            time.sleep(0.05)
        self._raise_if_failed()

    def snapshot(self) -> list[ApiCounts]:
        return [c.copy() for c in self.counts]

    def stop(self) -> None:
        self._stopping = True
        self.writing = False
        self._thread.join(timeout=IDLE_TIMEOUT_S + 30)

    # -- the load, on its own loop ------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"the load failed: {self.failure!r}") from self.failure

    def _failed(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("the load failed: %r", exc)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # its thread would only print it
            self._failed(exc)
        finally:
            self._loop.close()

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.profile.writers_per_api + 16)
        self._clients = [
            httpx.AsyncClient(
                base_url=url, timeout=CLIENT_TIMEOUT_S, limits=limits, trust_env=False
            )
            for url in self.urls
        ]
        try:
            tasks = [
                *(
                    self._writer(api)
                    for api in range(len(self.urls))
                    for _ in range(self.profile.writers_per_api)
                ),
                *(self._holder(api) for api in range(len(self.urls))),
                *(self._reader(api) for api in range(len(self.urls))),
            ]
            await asyncio.gather(*tasks)
        finally:
            for client in self._clients:
                await client.aclose()

    async def _paced(self, events: int) -> None:
        """Holds the senders together under the profile's ceiling of events a second."""
        now = time.monotonic()
        slot = max(self._next_send, now)
        self._next_send = slot + events / self.profile.target_events_per_s
        await asyncio.sleep(slot - now)

    async def _writer(self, api: int) -> None:
        client, counts = self._clients[api], self.counts[api]
        while not self._stopping:
            if not self.writing:
                await asyncio.sleep(0.05)
                continue
            batch = self.mix.batch(self.profile.batch_size)
            await self._paced(len(batch))
            self._in_flight += 1
            try:
                answer = await client.post(
                    "/v1/events",
                    content=_json.encode(batch),
                    headers={"content-type": "application/json"},
                )
                counts.events[str(answer.status_code)] += 1
                if answer.status_code == 202:
                    counts.events_accepted += len(batch)
                    self.ledger.accepted(e["event_id"] for e in batch)
            except httpx.HTTPError as exc:
                counts.events[type(exc).__name__] += 1
                await asyncio.sleep(0.2)  # the API is gone: no busy loop meanwhile
            finally:
                self._in_flight -= 1

    async def _holder(self, api: int) -> None:
        period = 1.0 / self.profile.holds_per_s
        while not self._stopping:
            await asyncio.sleep(self.random.expovariate(1.0 / period))
            if self.writing:
                self._in_flight += 1
                task = asyncio.create_task(self._hold(api))
                self._holds.add(task)  # a task only the loop refers to may be collected
                task.add_done_callback(self._hold_done)

    def _hold_done(self, task: asyncio.Task[None]) -> None:
        self._holds.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._failed(error)

    async def _hold(self, api: int) -> None:
        try:
            await live_through(self.book.draw(), self._clients, api, self.hold_answers)
        finally:
            self._in_flight -= 1

    async def _reader(self, api: int) -> None:
        client, counts = self._clients[api], self.counts[api]
        period = 1.0 / self.profile.reads_per_s
        skus = self.mix.skus
        while not self._stopping:
            await asyncio.sleep(self.random.expovariate(1.0 / period))
            sku = self.random.choice(skus)
            params: dict[str, Any] = {"channel": self.random.choice(READ_CHANNELS)}
            if params["channel"] == "web" and self.random.random() < 0.3:
                params["location"] = self.random.choice(["DC1", "S001"])
            try:
                answer = await client.get(f"/v1/availability/{sku}", params=params)
            except httpx.HTTPError as exc:
                counts.reads[type(exc).__name__] += 1
                continue
            if answer.status_code != 200:
                counts.reads[str(answer.status_code)] += 1
            elif answer.json()["sellable"] < READ_FLOOR:
                counts.reads["wrong"] += 1
                if len(self.wrong_examples) < 20:
                    self.wrong_examples.append(f"api {api} {sku} {params}: {answer.text}")
            else:
                counts.reads["ok"] += 1
