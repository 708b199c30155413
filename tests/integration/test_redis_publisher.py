"""The worker's writes to the read model, on a real Redis: several SKUs per script call,
each hash replaced whole and only by a newer version."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from availability import CompiledRules, Rules, SkuState, channel_quantities
from availability.published import published_fields, sku_key
from availability.rules import ChannelRule
from availability.state import Position
from streams.publisher import SKUS_PER_CALL, RedisPublisher
from tests.support.streaming import Stack

pytestmark = pytest.mark.integration

RULES = CompiledRules(
    Rules(channels={"web": ChannelRule(), "half": ChannelRule(share=0.5, buffer=1)})
)


def sku_at(n: int, version: int, stock: dict[str, int]) -> SkuState:
    state = SkuState(sku=f"PUB-{n:04d}", version=version, updated_at=1_790_000_000_000_000)
    state.positions = {location: Position(on_hand=qty) for location, qty in stock.items()}
    return state


async def stored(redis: aioredis.Redis, namespace: str, state: SkuState) -> dict[str, str]:
    raw = await redis.hgetall(sku_key(namespace, state.sku))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_a_hash_is_replaced_whole_by_a_newer_version_and_never_by_an_older_one(
    async_redis: aioredis.Redis, fresh_stack: Stack
) -> None:
    namespace = fresh_stack.names.redis_namespace
    publisher = RedisPublisher(async_redis, namespace)
    count = 2 * SKUS_PER_CALL + 5  # calls full and partial, in one round trip
    first = [sku_at(n, 2, {"DC1": 10, "S001": 4}) for n in range(count)]
    await publisher.publish(first, RULES)

    # Odd SKUs come back older (a slow writer), even ones newer and without S001.
    again = [sku_at(n, 1, {"DC1": 99}) if n % 2 else sku_at(n, 3, {"DC1": 7}) for n in range(count)]
    ahead: list[tuple[str, int]] = []
    publisher.on_ahead.append(lambda found: ahead.extend((s.sku, v) for s, v in found))
    quantities = await publisher.publish(again, RULES)

    # The writer is told of every SKU whose stored version was newer than the one it wrote
    # and of that version (the worker compares it with its table's), and of no other.
    assert ahead == [(state.sku, 2) for state in again[1::2]]

    assert quantities == [channel_quantities(state, RULES) for state in again]
    for n in range(count):
        kept = first[n] if n % 2 else again[n]
        assert await stored(async_redis, namespace, kept) == published_fields(kept, RULES), n
    assert "c:web:S001" not in await stored(async_redis, namespace, again[0])  # no field left over
