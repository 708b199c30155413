"""Reading topics to the end they had when a command started, for the operator commands.

A command reads up to the end offsets it saw at its start, so it ends even while producers
go on; whatever arrives later is for its next run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_WAIT_MS: Final = 500
# A partition that stays behind its end this long without a record is reported, not awaited
# for ever (a broker that stopped answering, a topic deleted under the command).
STALL_TIMEOUT_S: Final = 30.0


class ReadStalled(RuntimeError):
    """No record arrived for STALL_TIMEOUT_S while partitions were still behind their end;
    the message names them. Check that Kafka answers, then run the command again."""


def existing_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of `topic`, or an empty set when it does not exist: the consumer read
    every topic's metadata when it started, a moment ago."""
    return set(consumer.partitions_for_topic(topic) or ())


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> AsyncIterator[list[Any]]:
    """Yield batches of records, each partition's in offset order, from the consumer's
    position of each (assigned) partition to the end offset it had when this began."""
    wanted = list(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    behind = [tp for tp in wanted if await consumer.position(tp) < ends[tp]]
    last_record = time.monotonic()
    while behind:
        batch = await consumer.getmany(*behind, timeout_ms=FETCH_WAIT_MS)
        records = [
            record
            for tp, got in sorted(
                batch.items(), key=lambda item: (item[0].topic, item[0].partition)
            )
            for record in got
            if record.offset < ends[tp]
        ]
        if records:
            last_record = time.monotonic()
            yield records
        behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
        if behind and time.monotonic() - last_record > STALL_TIMEOUT_S:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in behind)
            raise ReadStalled(f"no record for {STALL_TIMEOUT_S:.0f} s while behind: {names}")


async def remaining(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> int:
    """How many offsets lie between the consumer's positions and the current ends."""
    wanted = list(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    total = 0
    for tp in wanted:
        total += max(0, ends[tp] - await consumer.position(tp))
    return total
