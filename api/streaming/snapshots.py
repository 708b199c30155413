"""ERP snapshots in the streaming mode: their reports in Redis (one list a snapshot, one
report an import, kept as long as Redis keeps its data; a rebuild of the read model does
not touch them), and a `full` snapshot's end, told to the writer of every partition on the
counts topic, after the rows (availability/snapshots.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability import NotReady
from availability.published import snapshot_key
from availability.snapshots import SNAPSHOT_END_KEY, SnapshotEnd
from availability.topics import Names

from .kafka_link import KafkaLink, Record

_NOT_ZEROED: Final = (
    "the rows were taken, the unlisted positions not zeroed: send the snapshot again to"
    " zero them, rows already taken count once"
)


class StreamingSnapshots:
    def __init__(
        self, redis: Redis, namespace: str, kafka: KafkaLink, names: Names, partitions: int
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._kafka = kafka
        self._counts_topic = names.event_topic("count")
        self._partitions = partitions

    async def zero_unlisted(self, snapshot_id: str, locations: Mapping[str, int]) -> None:
        """One SnapshotEnd on each partition of the counts topic: every row is acknowledged
        already, so each partition's writer reads it after the snapshot's rows there, and
        reports the zero counts it makes with the rest (streams/processor.py)."""
        value = msgspec.json.encode(SnapshotEnd(snapshot_id, dict(locations)))
        records = [
            Record(self._counts_topic, SNAPSHOT_END_KEY, value, partition)
            for partition in range(self._partitions)
        ]
        await self._kafka.send_all(records, _NOT_ZEROED)

    async def add_snapshot_report(self, snapshot_id: str, report: bytes) -> None:
        try:
            await self._redis.rpush(snapshot_key(self._namespace, snapshot_id), report)
        except RedisError as exc:
            raise NotReady(
                f"the report of snapshot {snapshot_id} could not be stored in Redis ({exc}); "
                "its rows were taken: send it again to store its report, rows already "
                "taken count once"
            ) from exc

    async def snapshot_reports(self, snapshot_id: str) -> list[bytes]:
        try:
            found = await self._redis.lrange(snapshot_key(self._namespace, snapshot_id), 0, -1)
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); retry") from exc
        return [item if isinstance(item, bytes) else item.encode() for item in found]
