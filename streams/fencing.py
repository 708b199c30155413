"""Fencing: a worker that lost a partition never writes that partition's changelog again.

A worker frozen past its session timeout (a long pause of its process or its machine, a
SIGSTOP) is out of the group and its partitions move, but it does not know until it talks
to Kafka again; when it resumes, the batch it was applying goes on, and its changelog
records would land after the new owner's and be recovered over them. So each partition's
changelog is written in Kafka transactions, by a producer whose transactional id names the
partition: Kafka Streams' exactly-once design before KIP-447 (one producer per task), the
one aiokafka offers (its offset commits in a transaction carry no group generation). The
worker that takes a partition over starts that producer before it recovers the partition;
the broker then bumps the id's epoch, aborts the old owner's open transaction and refuses
whatever the old owner sends after (`ProducerFenced`). The old owner's write fails, so
nothing of it is published (Redis and hold replies wait for the changelog,
streams/durable.py), and it stops (`Worker.changelog_failed`).

Readers of the changelog (faust's recovery and standbys) read committed records only
(streams/transport.py), so an aborted transaction's records are never recovered. A
committed transaction ends with a marker, which takes an offset and is never delivered:
`past_last_records` tells faust's recovery where the last record really is, since it waits
for the offset before the end of the log and the marker's would never come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger("availability.worker")

# How long a transaction may stay open before the broker aborts it: a worker that dies in
# one holds back the changelog's readers (they read committed records only) until its
# successor starts the same id, or until this passes.
TRANSACTION_TIMEOUT_MS: Final = 30_000
# Records read back from the end of a changelog partition to find its last record; doubled
# while only markers and aborted records are found.
FIRST_LOOK_BACK: Final = 16
PROBE_TIMEOUT_S: Final = 30.0
# A producer's start waits for the broker to end the partition's last transaction (its
# abort needs the partition's leader): bounded, so a worker that cannot says so and stops.
START_TIMEOUT_S: Final = 60.0


class ChangelogProducers:
    """One transactional producer for each changelog partition this worker owns."""

    def __init__(
        self,
        bootstrap: str,
        transactional_prefix: str,
        max_batch_bytes: int,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._prefix = transactional_prefix
        self._max_batch_bytes = max_batch_bytes
        self._options = dict(kafka_options or {})
        self._producers: dict[int, AIOKafkaProducer] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self._prefix}-{partition}"

    def owned(self) -> set[int]:
        return set(self._producers)

    def __getitem__(self, partition: int) -> AIOKafkaProducer:
        try:
            return self._producers[partition]
        except KeyError:
            raise LookupError(f"no changelog producer: partition {partition} is not ours") from None

    async def claim(self, partitions: Iterable[int]) -> None:
        """Start the producers of `partitions` this worker has none for yet: from then on,
        whoever wrote them before cannot (the broker fences its producer)."""
        new = sorted(set(partitions) - set(self._producers))
        if not new:
            return
        started = await asyncio.gather(*(self._start(p) for p in new), return_exceptions=True)
        failed = [(p, r) for p, r in zip(new, started, strict=True) if isinstance(r, BaseException)]
        for partition, producer in zip(new, started, strict=True):
            if isinstance(producer, AIOKafkaProducer):
                self._producers[partition] = producer
        if failed:
            partition, error = failed[0]
            raise RuntimeError(
                f"could not start the transactional producer {self.transactional_id(partition)!r}"
                f" of changelog partition {partition}: {error!r}. The worker writes each "
                "partition's changelog in Kafka transactions: the cluster must allow them "
                "(transaction.state.log.* settings) and the worker's principal needs Write "
                "and Describe on transactional ids with this prefix."
            ) from error
        log.info("changelog producers started for partitions %s", new)

    async def release(self, partitions: Iterable[int]) -> None:
        """Stop the producers of `partitions` (moved to another worker)."""
        gone = {p: self._producers.pop(p) for p in sorted(set(partitions)) if p in self._producers}
        stopped = await asyncio.gather(
            *(producer.stop() for producer in gone.values()), return_exceptions=True
        )
        for partition, result in zip(gone, stopped, strict=True):
            if isinstance(result, BaseException):  # its transactions are over: only said
                log.warning(
                    "changelog producer of partition %d did not stop: %r", partition, result
                )

    async def close(self) -> None:
        await self.release(list(self._producers))

    async def _start(self, partition: int) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=self.transactional_id(partition),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            acks="all",
            linger_ms=1,
            max_batch_size=self._max_batch_bytes,
            client_id=self.transactional_id(partition),
            **self._options,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await producer.start()  # InitProducerId: the fence
        except BaseException as exc:
            await producer.stop()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"Kafka did not give it a producer id within {START_TIMEOUT_S:.0f} s (the "
                    "partition's last transaction could not be ended)"
                ) from None
            raise
        return producer


async def past_last_records(
    bootstrap: str, ends: Mapping[TopicPartition, int], kafka_options: Mapping[str, Any]
) -> dict[TopicPartition, int]:
    """For each partition, the offset right after its last committed record (0 if it has
    none), given its end offset: what a reader of committed records reaches once it has
    read everything, where the end offset may be a marker's or an aborted record's."""
    found = {tp: 0 for tp in ends}
    unsure = {tp: end for tp, end in ends.items() if end > 0}
    if not unsure:
        return found
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        **kafka_options,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            look_back = FIRST_LOOK_BACK
            while unsure:
                starts = await consumer.beginning_offsets(list(unsure))
                last = await _last_offsets(consumer, unsure, starts, look_back)
                for tp, offset in last.items():
                    if offset is not None:
                        found[tp] = offset + 1
                    if offset is not None or unsure[tp] - look_back <= starts[tp]:
                        del unsure[tp]  # found, or there is nothing before to look at
                look_back *= 2
    finally:
        await consumer.stop()
    return found


async def _last_offsets(
    consumer: AIOKafkaConsumer,
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
    look_back: int,
) -> dict[TopicPartition, int | None]:
    """The offset of the last committed record of each partition within `look_back` of
    its end, or None if there is none there."""
    consumer.assign(list(ends))
    for tp, end in ends.items():
        consumer.seek(tp, max(starts[tp], end - look_back))
    last: dict[TopicPartition, int | None] = dict.fromkeys(ends)
    reading = set(ends)
    while reading:
        fetched = await consumer.getmany(*reading, timeout_ms=500)
        for tp, records in fetched.items():
            if records:
                last[tp] = records[-1].offset
        for tp in list(reading):
            if await consumer.position(tp) >= ends[tp]:
                reading.discard(tp)
    return last
