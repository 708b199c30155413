"""The streaming feed at the edge of its retention, on a real Redis: the worker's fan-out
appends and trims in one script, so a consumer whose cursor falls behind the trim while it
waits must get 410, never a page that silently skips the trimmed items."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis

from api.streaming.redis_feeds import RedisFeeds
from availability import CompiledRules, Rules, SkuState, channel_quantities
from availability.errors import CursorExpired
from availability.feeds import NoFeedObserver
from availability.published import Quantities
from availability.rules import ChannelRule, FeedRule
from streams.fanout import FeedPump
from tests.support.streaming import Stack

pytestmark = pytest.mark.integration

RETENTION = 5
RULES = CompiledRules(Rules(channels={"web": ChannelRule(feed=FeedRule(max_per_second=1e6))}))


class OneFeed:
    def has_feed(self, channel: str) -> bool:
        return channel == "web"


async def no_topic(channel: str, sku: str, value: bytes) -> None:
    """The compacted topic is the worker's concern, not this test's."""


def fan_out(redis: aioredis.Redis, namespace: str) -> tuple[FeedPump, itertools.count[int]]:
    clock = itertools.count(1_000_000, 1_000_000)  # a second per reading: no limit binds
    pump = FeedPump(redis, namespace, 1, RETENTION, no_topic, lambda: next(clock), NoFeedObserver())
    pump.configure(RULES)
    return pump, clock


def changes(skus: range, version: int) -> list[tuple[SkuState, Quantities]]:
    """New versions of the SKUs, with their channel quantities, as the publisher offers them."""
    offers = []
    for n in skus:
        state = SkuState(sku=f"EDGE-{n}")
        state.version = version
        offers.append((state, channel_quantities(state, RULES)))
    return offers


async def test_a_long_poll_overtaken_by_a_trim_is_refused_with_410_not_a_gap(
    async_redis: aioredis.Redis,
) -> None:
    namespace = Stack().names.redis_namespace
    pump, _ = fan_out(async_redis, namespace)
    feeds = RedisFeeds(async_redis, async_redis, namespace, 1, OneFeed())
    pump.changed(0, changes(range(3), version=1))
    await pump.pump_once()
    page = await feeds.feed("web", None, limit=100, wait_ms=0)
    assert [item.sku for item in page.items] == ["EDGE-0", "EDGE-1", "EDGE-2"]

    waiting = asyncio.create_task(feeds.feed("web", page.cursor, limit=100, wait_ms=10_000))
    await asyncio.sleep(0.2)  # blocked on the stream
    assert not waiting.done()
    # One append of more items than the retention holds: the stream is trimmed past the
    # consumer's cursor in the same script that wakes it.
    pump.changed(0, changes(range(3, 3 + 3 * RETENTION), version=1))
    await pump.pump_once()
    with pytest.raises(CursorExpired, match="older than the feed's retention"):
        await asyncio.wait_for(waiting, timeout=10)

    fresh = await feeds.feed("web", None, limit=100, wait_ms=0)
    assert len(fresh.items) == RETENTION  # what the stream keeps, for a consumer from the start
    await async_redis.delete(*[key async for key in async_redis.scan_iter(match=f"{namespace}:*")])
