"""faust's aiokafka transport, with two fixes for events that faust could otherwise commit
without ever handing them to the agent.

1. After a rebalance, a source partition that has no committed offset yet is read again
   from its beginning. At a rebalance faust drops the events already fetched but not yet
   processed, and relies on "seek to the committed offset" to fetch them again. aiokafka
   skips that seek when the committed offset is missing (or 0), so the fetch position stays
   after the dropped events: the first commit after the rebalance then covers them. It
   happens to every partition that had no commit when the group rebalanced: a new
   deployment, or a quiet topic. Reading such a partition from its beginning (the
   `earliest` reset the worker is configured with) delivers those events again; the
   per-SKU dedup ids make the events already applied count once.

2. The seek to the committed offsets that ends a recovery is fenced from the fetch loop.
   faust 0.15.3 resumes the source partitions, with the flow running, and only then awaits
   the seek. While the seek is in the consumer thread, the fetch loop goes on delivering
   records fetched before it, and moves its read offset past them. Those records land in
   the agent's queue, which faust clears when it resumes the flow right after the seek;
   and the seek resets the read offset, so the next record of the old batch opens a "gap"
   that faust counts as acknowledged. Either way the next commit covers events that no one
   applied (the shape of faust-streaming #221). Here the seek first stops the flow, waits
   until no record is being delivered and no fetch is in flight, seeks, then lets the flow
   go on: every record after the seek comes from the committed offset.

3. A commit waits until every record produced so far is acknowledged (`producer_durable`).
   faust commits acknowledged events' offsets on a timer, apart from the changelog records
   their table writes produced: its commit does not flush the producer, and its buffer's
   flush gives up after 0.1 s without progress. A commit that ran ahead of the changelog
   would let a kill -9 lose events whose offsets were committed. Waiting here, rather than
   after each batch, lets the agent go on with its next batch while Kafka acknowledges.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message


async def producer_durable(app: AppT) -> None:
    """Wait until every record produced so far (changelog records above all) is
    acknowledged by Kafka: faust's buffer handed to the producer, then the producer flushed.
    Records produced meanwhile may be acknowledged too; none produced before is left out."""
    producer = app.producer
    while producer.buffer.size:
        await producer.buffer.flush()
    await producer.flush()


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await self.call_thread(self._seek_to_committed_or_start)
        return committed

    async def _seek_to_committed_or_start(self) -> Mapping[Any, int | None]:
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # faust reads those from its own offsets
        uncommitted = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        if uncommitted:
            await consumer.seek_to_beginning(*uncommitted)
        return committed


class RewindingConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetches_in_flight = 0
        self._no_fetch_in_flight = asyncio.Event()
        self._no_fetch_in_flight.set()
        self._no_record_in_delivery = asyncio.Event()
        self._no_record_in_delivery.set()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109  # faust's signature
    ) -> Any:
        self._fetches_in_flight += 1
        self._no_fetch_in_flight.clear()
        try:
            return await super()._getmany(active_partitions, timeout)
        finally:
            self._fetches_in_flight -= 1
            if not self._fetches_in_flight:
                self._no_fetch_in_flight.set()

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109  # faust's signature
    ) -> AsyncIterator[tuple[TP, Message]]:
        # faust's fetch loop handles a record (and sets its read offset) between two steps of
        # this iterator: a record is "in delivery" from its yield until the next step.
        async for tp, message in super().getmany(timeout):
            self._no_record_in_delivery.clear()
            try:
                yield tp, message
            finally:
                self._no_record_in_delivery.set()

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        # The offsets were chosen before this wait: every event they cover was applied,
        # and its table writes produced, before it was acknowledged.
        await producer_durable(self.app)
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed

    async def perform_seek(self) -> None:
        flowing = self.flow_active
        if flowing:
            self.stop_flow()  # faust's getmany yields no more records of a batch once stopped
        try:
            await self._no_record_in_delivery.wait()
            await self._no_fetch_in_flight.wait()
            await super().perform_seek()
        finally:
            if flowing:
                self.resume_flow()


class Transport(faust_aiokafka.Transport):
    Consumer = RewindingConsumer
