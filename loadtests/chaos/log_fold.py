"""The reference: the event log read back from Kafka as it grows and folded by the core, as
`tests.support.streaming.reference_states` does at once, but incrementally, since the log
of a whole run is read again after every fault. The core is order-independent, and one
SKU's counts are on one partition of the counts topic, read in order as a worker reads
them, so folding a topic after another gives the states (and versions) the workers reach.

The `Ledger` is the client's side of the books: which event serials were answered 202, and
which the log holds; an event answered 202 that the log does not hold is lost before any
worker could see it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from availability import SkuState, apply_events
from availability.topics import Names
from tests.support.streaming import applicable

from .workload import serial_of

CATCH_UP_TIMEOUT_S: Final = 120.0
FETCH_MS: Final = 500


class Ledger:
    """One byte a serial: bit 1 answered 202, bit 2 seen in the log."""

    ACCEPTED: Final = 1
    LOGGED: Final = 2

    def __init__(self) -> None:
        self.flags = bytearray()

    def _mark(self, serial: int, flag: int) -> None:
        if serial >= len(self.flags):
            self.flags.extend(bytes(serial + 1 - len(self.flags) + 65_536))
        self.flags[serial] |= flag

    def accepted(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._mark(serial_of(event_id), self.ACCEPTED)

    def logged(self, event_id: str) -> None:
        self._mark(serial_of(event_id), self.LOGGED)

    def lost_before_kafka(self) -> int:
        """Events answered 202 whose id no inventory topic holds."""
        return self.flags.count(self.ACCEPTED)  # ACCEPTED alone, not ACCEPTED | LOGGED


class LogFold:
    """Reads every inventory topic from its start, as far as it ends now at each call of
    `catch_up`, and folds the events into `states`. Owns an event loop of its own, driven
    only during a call, so its consumer survives from one check to the next."""

    def __init__(self, bootstrap: str, names: Names, partitions: int, ledger: Ledger) -> None:
        self.bootstrap = bootstrap
        self.partitions = [
            TopicPartition(topic, p) for topic in names.inventory_topics for p in range(partitions)
        ]
        self.ledger = ledger
        self.states: dict[str, SkuState] = {}
        self.records = 0
        self._loop = asyncio.new_event_loop()
        self._consumer: AIOKafkaConsumer | None = None

    def catch_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> int:
        """Read and fold up to the topics' current ends; returns the records read."""
        return self._loop.run_until_complete(self._catch_up(timeout_s))

    async def _catch_up(self, timeout_s: float) -> int:
        consumer = await self._started()
        ends = await consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout_s
        read = 0
        while behind := await _behind(consumer, ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the log fold did not reach the topics' ends: {behind}")
            fetched = await consumer.getmany(timeout_ms=FETCH_MS, max_records=20_000)
            now = time.time_ns() // 1000
            for records in fetched.values():
                read += len(records)
                events = applicable(records, now)
                for event in events:
                    self.ledger.logged(event.event_id)
                apply_events(self._state, events, now)
        self.records += read
        return read

    def _state(self, sku: str) -> SkuState:
        state = self.states.get(sku)
        if state is None:
            state = self.states[sku] = SkuState(sku=sku)
        return state

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            await consumer.start()
            consumer.assign(self.partitions)
            await consumer.seek_to_beginning(*self.partitions)
            self._consumer = consumer
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._loop.run_until_complete(self._consumer.stop())
            self._consumer = None
        self._loop.close()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> dict[str, int]:
    """Records left to read, by partition not read to its end yet."""
    left = {}
    for tp, end in ends.items():
        if (missing := end - await consumer.position(tp)) > 0:
            left[f"{tp.topic}[{tp.partition}]"] = missing
    return left
