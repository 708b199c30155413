"""POST /v1/events in the streaming mode: each event goes to its type's topic, keyed by SKU,
as the bytes it was sent as, and the answer waits until Kafka has acknowledged every one.

The partition is named explicitly (Kafka's own partitioner computed by `partition_for`) so
that the read model's readiness check and the producer can never disagree on a SKU's
partition. The workers apply the events; this process only makes them durable, so the
outcome it reports is "accepted".
"""

from __future__ import annotations

from collections.abc import Sequence

from availability import Event
from availability.batch import BatchResult, event_type
from availability.topics import Names, partition_for

from .kafka_link import KafkaLink, Record

# A POST that answers 503 may still have had some of its events written: sending the batch
# again is safe, because the workers drop an event_id they have already applied.
_NOT_ACCEPTED = "the events were not accepted: send the batch again (their event ids make it safe)"


class KafkaIngest:
    def __init__(self, kafka: KafkaLink, names: Names, partitions: int) -> None:
        self._kafka = kafka
        self._names = names
        self._partitions = partitions

    async def submit(self, events: Sequence[Event], raw: Sequence[bytes]) -> BatchResult | None:
        records = []
        for event, value in zip(events, raw, strict=True):
            key = event.sku.encode()
            records.append(
                Record(
                    topic=self._names.event_topic(event_type(event)),
                    key=key,
                    value=value,
                    partition=partition_for(key, self._partitions),
                )
            )
        await self._kafka.send_all(records, _NOT_ACCEPTED)
        return None
