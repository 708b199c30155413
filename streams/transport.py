"""faust's aiokafka transport, with three fixes for events that faust could otherwise commit
without ever having them applied, and records delivered to the worker in batches.

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
   go on: every record after the seek comes from the committed offset. Records waiting
   for the handler to be ready are not in delivery, and a seek meanwhile drops them: the
   handler is ready only once the recovery is complete, so the seek that ends it must not
   wait for them.

3. A commit waits until every record produced so far is acknowledged (`BatchDelivery.durable`:
   the worker's changelog writer hands its records over, then `producer_durable`).
   faust commits acknowledged events' offsets on a timer, apart from the changelog records
   their table writes produced: its commit does not flush the producer, and its buffer's
   flush gives up after 0.1 s without progress. A commit that ran ahead of the changelog
   would let a kill -9 lose events whose offsets were committed. Waiting here, rather than
   after each batch, lets the worker go on with its next batch while Kafka acknowledges.

4. Changelog records fetched but not delivered (the flow stopped in between) are fetched
   again. faust drops them as it drops source records, but seeks changelog partitions only
   at a rebalance: the seek that ends a recovery stops the flow, and a standby that had
   just started reading from its beginning skipped those records for good. Taking the
   partition over later, the worker found SKU heads without the chunks written before
   them, and counted documents again.

5. The changelog is written in Kafka transactions, each partition's by a producer the
   worker starts when the partition is assigned, before faust recovers it
   (streams/fencing.py); what was added is committed before a partition is revoked. And
   faust's recovery waits for the offset before the end of each changelog partition,
   which is a transaction marker's, never delivered: it is told where the last record is.

6. A transactional producer whose coordinator's broker is gone finds the new coordinator.
   aiokafka 0.12 forgets a coordinator when it answers "not the coordinator", but a
   request it cannot send at all (the broker was killed) it retries against the same
   node, every 100 ms, until that broker comes back: with one broker of three down, a
   worker's changelog transactions stalled for good. Here a request that cannot be sent
   to a coordinator makes the producer look its coordinator up again. And that lookup
   asks a broker picked at random, the dead one too, and fails the producer for good
   when it cannot reach it: it is tried again, for up to COORDINATOR_LOOKUP_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Final, cast

from aiokafka import ConsumerRecord
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.producer import sender as aiokafka_sender
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message
from faust.types.tuples import ack_lock
from mode import ServiceT

log = logging.getLogger("availability.worker")

RecordBatch = Mapping[TP, Sequence[ConsumerRecord[bytes, bytes]]]

# Every private name of faust, mode and aiokafka that the worker uses is used in this module
# and nowhere else; pyproject.toml pins the versions they were read in, and
# tests/unit/test_dependencies.py names any that an installed version lacks.


def partition_database(store: Any, partition: int) -> Any:
    """The RocksDB database of one partition of a faust table's store: faust keeps one per
    partition and offers no public way to it (streams/table.py reads and writes it)."""
    return store._db_for_partition(partition)


async def send_or_forget_the_coordinator(handler: Any, node_id: int) -> bool:
    """aiokafka's `BaseHandler.do`, but a request to a coordinator that cannot be sent
    drops the coordinator, so that the next try looks it up (see 6. above)."""
    request = handler.create_request()
    try:
        response = await handler._sender.client.send(node_id, request, group=handler.group)
    except KafkaError as exc:
        log.warning("could not send %s to node %s: %r", type(request).__name__, node_id, exc)
        if handler.group == ConnectionGroup.COORDINATION or isinstance(
            handler, aiokafka_sender.InitPIDHandler
        ):
            handler._sender._coordinator_dead(CoordinationType.TRANSACTION)
            handler._sender._coordinator_dead(CoordinationType.GROUP)
        await asyncio.sleep(handler._default_backoff)
        return False
    backoff = handler.handle_response(response)
    if backoff is not None:
        await asyncio.sleep(backoff)
        return False
    return True


setattr(aiokafka_sender.BaseHandler, "do", send_or_forget_the_coordinator)  # noqa: B010

_find_coordinator = aiokafka_sender.Sender._find_coordinator
# How long a producer looks for its coordinator through unreachable brokers: longer than
# the cluster takes to move a dead broker's coordinators (its session timeout, 9 s).
COORDINATOR_LOOKUP_S: Final = 60.0


async def find_coordinator_through_unreachable_brokers(
    sender: Any, coordinator_type: int, coordinator_key: str
) -> int:
    """aiokafka's lookup, tried again while the broker it asked cannot be reached (see 6.)."""
    deadline = asyncio.get_running_loop().time() + COORDINATOR_LOOKUP_S
    while True:
        try:
            found: int = await _find_coordinator(sender, coordinator_type, coordinator_key)
            return found
        except (TransactionalIdAuthorizationFailed, GroupAuthorizationFailedError):
            raise
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("coordinator lookup failed, asking again: %r", exc)
            await sender.client.force_metadata_update()
            await asyncio.sleep(sender._retry_backoff)


setattr(  # noqa: B010
    aiokafka_sender.Sender, "_find_coordinator", find_coordinator_through_unreachable_brokers
)


@dataclass(frozen=True)
class BatchDelivery:
    """Which topics' records go to `handle`, at most `max_records` a call, each once
    `ready` returns (it is awaited only for those topics: faust starts a worker's own tasks
    only once its tables have recovered, through this same fetch loop).

    `handle` is synchronous: a batch is applied whole between two steps of the event loop,
    so no rebalance can move a partition in the middle of one. It returns the partitions
    it left alone (not this worker's any more): their records are not booked as handled."""

    topics: frozenset[str]
    handle: Callable[[RecordBatch], Collection[int]]
    max_records: int
    ready: Callable[[], Awaitable[object]]
    durable: Callable[[], Awaitable[None]]  # what a commit waits for (see 3. above)


@dataclass(frozen=True)
class Fencing:
    """The worker's side of a rebalance, for the changelog's transactions (see 5. above)."""

    assigned: Callable[[Set[TP]], Awaitable[None]]  # before faust's own steps
    revoked: Callable[[Set[TP]], Awaitable[None]]  # before faust's own steps
    # The offsets right after the last committed records, given the end offsets.
    past_last_records: Callable[[Mapping[TP, int]], Awaitable[Mapping[TP, int]]]


async def producer_durable(app: AppT) -> None:
    """Wait until every record produced so far (changelog records above all) is
    acknowledged by Kafka: faust's buffer handed to the producer, then the producer flushed.
    Records produced meanwhile may be acknowledged too; none produced before is left out."""
    producer = app.producer
    while producer.buffer.size:
        await producer.buffer.flush()
    await producer.flush()


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # The events of an aborted transaction never happened (a producer with exactly-once
        # delivery, Kafka Connect's for one, aborts what it will send again). faust reads
        # committed records only in its own exactly-once mode; aiokafka takes the level
        # from this attribute when the consumer starts.
        consumer._isolation_level = "read_committed"
        return consumer

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
        self._seeks_begun = 0  # a chunk that waited across a seek is dropped (_hand_over)

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
        await self._batches().durable()
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed

    async def on_partitions_assigned(self, assigned: Set[TP], generation_id: int = 0) -> None:
        try:
            await self._fencing().assigned(assigned)
        except Exception as exc:
            await self.app.crash(exc)  # aiokafka would only log it, and go on unfenced
            return
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        await self._fencing().revoked(revoked)
        await super().on_partitions_revoked(revoked)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        ends = dict(await super().highwaters(*partitions))
        changelogs = self.app.tables.changelog_topics
        tail = {tp: end for tp, end in ends.items() if tp.topic in changelogs}
        if tail:
            ends.update(await self._fencing().past_last_records(tail))
        return ends

    def _fencing(self) -> Fencing:
        fencing = cast(Transport, self.transport).fencing
        assert fencing is not None, "the worker sets its fencing before the app starts"
        return fencing

    async def perform_seek(self) -> None:
        self._seeks_begun += 1
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

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        batches = self._batches()
        fetcher_stopped = cast(Any, fetcher)._stopped.is_set
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(timeout=1.0)
                await asyncio.sleep(0)  # a run of empty fetches must still give way
                if not records or self.should_stop:
                    continue
                generation = self.app.consumer_generation_id
                undelivered = {
                    tp: fetched[0].offset
                    for tp, fetched in records.items()
                    if fetched and tp.topic not in batches.topics
                }
                if not self.flow_active:
                    # As faust's getmany: what was fetched across a stop goes, and the
                    # partitions are read again from their committed offsets.
                    await self._refetch_changelogs(undelivered, generation)
                    await self._seek_after_stop()
                    continue
                self._no_record_in_delivery.clear()
                try:
                    await self._deliver(records, active, batches, generation, undelivered)
                finally:
                    self._no_record_in_delivery.set()
                await self._refetch_changelogs(undelivered, generation)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _batches(self) -> BatchDelivery:
        batches = cast(Transport, self.transport).batches
        assert batches is not None, "the worker sets its batch delivery before the app starts"
        return batches

    async def _seek_after_stop(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning("exception performing seek when flow not active %r", exc)

    async def _refetch_changelogs(self, undelivered: Mapping[TP, int], generation: int) -> None:
        """Fetch changelog records again from the first one not delivered. A seek to the
        committed offsets covers the source topics only, and faust seeks a changelog only
        at a rebalance: a standby that lost records fetched across a stop of the flow (the
        seek that ends a recovery stops it) would go on without them for good, and a
        takeover would find a SKU's head without the chunks written before it."""
        if not undelivered or self.app.consumer_generation_id != generation:
            return  # after a rebalance faust seeks every changelog partition itself
        assigned = self.assignment()
        for tp, offset in undelivered.items():
            if tp in assigned:
                self.log.info("changelog %s fetched again from offset %d", tp, offset)
                await self.seek(tp, offset)

    async def _deliver(
        self,
        records: RecordBatch,
        active: set[TP] | None,
        batches: BatchDelivery,
        generation: int,
        undelivered: dict[TP, int],
    ) -> None:
        """Deliver a fetch's records; `undelivered` keeps, per changelog partition, the
        offset of its first record not delivered (none once all were)."""
        chunk: dict[TP, Sequence[ConsumerRecord[bytes, bytes]]] = {}
        size = 0
        for tp, fetched in records.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic not in batches.topics:
                for record in fetched:
                    if not self._still_flowing(generation):
                        return
                    await self._deliver_one(tp, record)
                    undelivered[tp] = record.offset + 1
                del undelivered[tp]
                continue
            unread = self._unread(tp, fetched)
            while unread:
                take = batches.max_records - size
                chunk[tp], unread = unread[:take], unread[take:]
                size += len(chunk[tp])
                if size < batches.max_records:
                    continue
                if not await self._hand_over(chunk, batches, generation):
                    return  # the rest is read again from the committed offsets
                chunk, size = {}, 0
        if chunk:
            await self._hand_over(chunk, batches, generation)

    def _still_flowing(self, generation: int) -> bool:
        return self.flow_active and self.app.consumer_generation_id == generation

    def _unread(
        self, tp: TP, fetched: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> Sequence[ConsumerRecord[bytes, bytes]]:
        """The records at or after the partition's read offset, as faust's loop keeps."""
        read = self._read_offset[tp]
        if read is None or fetched[0].offset >= read:
            return fetched
        return [record for record in fetched if record.offset >= read]

    async def _hand_over(self, chunk: RecordBatch, batches: BatchDelivery, generation: int) -> bool:
        """Hand a chunk to the handler once it is ready for more; False if a rebalance
        or a seek came meanwhile (the chunk is dropped, to be read again from the committed
        offsets).

        No record is in delivery while it waits: the seek that ends a recovery waits for
        that, and the handler is ready only once the recovery is complete (the rules
        follower is one of the tasks faust starts then), so the two would wait for each
        other for good whenever a fetch of source records came between faust resuming
        their partitions and the seek stopping the flow."""
        seeks = self._seeks_begun
        self._no_record_in_delivery.set()
        try:
            await batches.ready()
            buffer = self.app.producer.buffer  # dead letters and control messages wait there
            while buffer.size > batches.max_records:
                await buffer.flush_atmost(buffer.size - batches.max_records)
        finally:
            self._no_record_in_delivery.clear()
        if not self._still_flowing(generation) or self._seeks_begun != seeks:
            return False
        left_alone = batches.handle(chunk)
        gaps = [
            gap
            for tp, handled in chunk.items()
            if tp.partition not in left_alone
            for gap in self._acknowledge(tp, handled)
        ]
        for tp, first, last in gaps:
            await self._add_gap(tp, first, last)
        # No commit every N records here, as faust's loop does: a commit waits until the
        # changelog is acknowledged, and the next fetch would wait with it (a stall every
        # two seconds at 5,000 events/s). faust's commit timer commits what is booked.
        return True

    def _acknowledge(
        self, tp: TP, handled: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> list[tuple[TP, int, int]]:
        """Book handled records as faust books an acknowledged event, so its commits cover
        them; returns the gaps in their offsets (transaction markers), which faust's
        commits must step over."""
        gaps: list[tuple[TP, int, int]] = []
        read = self._read_offset[tp]
        committed = self._committed_offset[tp]
        with ack_lock:
            acked_index, acked = self._acked_index[tp], self._acked[tp]
            for record in handled:
                offset = record.offset
                # `read is not None`, where faust's loop tests `read`: after a record at
                # offset 0, faust records no gap, and its commits then stop at offset 1.
                if read is not None and offset - read > 1:
                    gaps.append((tp, read + 1, offset))
                read = offset
                if (committed is None or offset >= committed) and offset not in acked_index:
                    acked_index.add(offset)
                    acked.append(offset)
        self._read_offset[tp] = read
        return gaps

    async def _deliver_one(self, tp: TP, record: ConsumerRecord[bytes, bytes]) -> None:
        """A record of a topic faust handles itself (a changelog): faust's own steps."""
        message = self._to_message(tp, record)
        read = self._read_offset[tp]
        if read is not None and message.offset < read:
            return
        if read and message.offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, read + 1, message.offset)
        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = message.offset


class Transport(faust_aiokafka.Transport):
    Consumer = RewindingConsumer
    batches: BatchDelivery | None = None  # set by the worker before the app starts
    fencing: Fencing | None = None  # likewise
