"""Where things live in the streaming mode (SPEC section 2): topic names, which topic each
event type goes to, and the partition of a key, computed exactly as Kafka's default
partitioner does, so the API, the workers and any producer agree on a SKU's partition.
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct

EVENT_TOPIC_SUFFIX: Final[dict[str, str]] = {
    "sale": "inventory.sales",
    "order": "inventory.orders",
    "cancel": "inventory.orders",
    "pick": "inventory.picks",
    "return": "inventory.returns",
    "transfer_out": "inventory.transfers",
    "transfer_in": "inventory.transfers",
    "receipt": "inventory.receipts",
    "count": "inventory.counts",
    "adjust": "inventory.counts",
}


class Names(Struct, frozen=True):
    """Every topic and Redis key prefix of one deployment. `prefix` lets several deployments
    (or tests) share one Kafka and one Redis without seeing each other."""

    prefix: str = ""

    def event_topic(self, event_type: str) -> str:
        return self.prefix + EVENT_TOPIC_SUFFIX[event_type]

    @property
    def inventory_topics(self) -> list[str]:
        return sorted({self.prefix + suffix for suffix in EVENT_TOPIC_SUFFIX.values()})

    @property
    def control_topic(self) -> str:
        """Rules changes (and later holds and ticks), one message per partition, so that
        the single writer of each partition handles them in order with its events."""
        return self.prefix + "inventory.control"

    @property
    def rules_topic(self) -> str:
        return self.prefix + "inventory.rules"

    @property
    def dlq_topic(self) -> str:
        return self.prefix + "inventory.dlq"

    def feed_topic(self, channel: str) -> str:
        """The channel's feed as a compacted topic keyed by SKU: the last value per SKU."""
        return f"{self.prefix}availability.feed.{channel}"

    @property
    def redis_namespace(self) -> str:
        return f"{self.prefix}av"


# The worker's table of SKU records, and faust's name for its changelog topic: what the
# worker writes, and what the operator commands and the recovery benchmark read.
STATE_TABLE: Final = "sku-state"


def state_changelog_topic(app_id: str) -> str:
    return f"{app_id}-{STATE_TABLE}-changelog"


# With acks=all, a write is acknowledged once this many replicas hold it: one broker may be
# lost without losing an acknowledged write, and without stopping writes.
PREFERRED_MIN_IN_SYNC: Final = 2


def min_in_sync(replication: int) -> dict[str, str]:
    """The topic setting every topic of the service is created with."""
    return {"min.insync.replicas": str(min(PREFERRED_MIN_IN_SYNC, replication))}


_MURMUR_SEED: Final = 0x9747B28C
_MURMUR_M: Final = 0x5BD1E995
_MASK32: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 as Kafka's clients compute it (signed result)."""
    length = len(data)
    h = (_MURMUR_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _MURMUR_M) & _MASK32
        k ^= k >> 24
        k = (k * _MURMUR_M) & _MASK32
        h = ((h * _MURMUR_M) & _MASK32) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _MURMUR_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# Keys' partitions, remembered (up to _KNOWN_MOST a partition count, then started again):
# murmur2 in Python costs about 4.5 µs a key, paid by every event the API takes and every
# SKU it reads, and a catalogue's SKUs come back again and again. Plain dicts of bytes and
# ints, which the garbage collector does not track (an lru_cache's nodes it does).
_KNOWN_MOST: Final = 1 << 16
_known: dict[int, dict[bytes, int]] = {}


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key`."""
    known = _known.get(partitions)
    if known is None:
        known = _known[partitions] = {}
    found = known.get(key)
    if found is None:
        if len(known) >= _KNOWN_MOST:
            known.clear()
        found = known[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
    return found
