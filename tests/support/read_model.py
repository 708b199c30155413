"""What a stream worker publishes to Redis, written by hand: the streaming API's read tests
fill Redis exactly as the workers do (`availability.published`), whatever state the
workers are in, and decide themselves which partitions are ready."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from availability import CompiledRules, Rules, SkuState, apply_events, decode_event
from availability.published import alive_key, published_fields, ready_key, sku_key
from availability.topics import Names, partition_for

TEST_WORKER = "test-worker"


def state_of(sku: str, events: Sequence[Mapping[str, Any]]) -> SkuState:
    """The SKU's state after `events` (JSON objects), as the core computes it."""
    state = SkuState(sku=sku)
    decoded = [decode_event(json.dumps(event).encode()) for event in events]
    apply_events(lambda _: state, decoded, time.time_ns() // 1000)
    return state


def publish(client: redis.Redis, names: Names, state: SkuState, rules: Rules) -> dict[str, str]:
    """Write the SKU's hash as a worker does under `rules`; returns its fields."""
    fields = published_fields(state, CompiledRules(rules))
    key = sku_key(names.redis_namespace, state.sku)
    client.delete(key)
    client.hset(key, mapping=fields)  # type: ignore[arg-type]
    return fields


def mark_ready(client: redis.Redis, names: Names, partitions: Iterable[int]) -> None:
    """As a worker marks its partitions ready; this stand-in worker never stops writing (its
    alive keys do not expire)."""
    fields = {str(partition): TEST_WORKER for partition in partitions}
    if fields:
        client.hset(ready_key(names.redis_namespace), mapping=fields)  # type: ignore[arg-type]
        client.mset({alive_key(names.redis_namespace, int(p)): TEST_WORKER for p in fields})


def forget_namespace(client: redis.Redis, names: Names) -> int:
    """Delete every key of the namespace, as a flushed Redis would have it."""
    keys = list(client.scan_iter(match=f"{names.redis_namespace}:*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def sku_in_partition(partition: int, partitions: int, prefix: str = "SKU") -> str:
    """A fresh SKU that Kafka's partitioner puts on `partition`."""
    while True:
        sku = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if partition_for(sku.encode(), partitions) == partition:
            return sku
