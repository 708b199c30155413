"""The worker's fan-out (SPEC 7): every change of a channel quantity, throttled, into the
channel's feed (a Redis stream the API serves) and its compacted topic.

Each partition's single writer throttles its own SKUs: per feed channel and partition, a
`ChannelThrottle` at the channel's `max_per_second` divided by the partition count. The
partitions together never exceed the channel's rate, wherever they run, and a SKU's min
interval holds because a SKU lives in one partition. The price: a partition cannot borrow
the rate a quiet partition leaves unused.

The pending values live in memory. A worker that takes a partition over (a start, a
rebalance, a Redis flush) compares every SKU's current quantity with the version its feed
last carried, kept in Redis beside the stream, and offers what differs: a crash delays the
last word, it never loses it. One Lua script appends an item only if its version is newer
than the feed's for that SKU, records it and trims the stream, so a worker that has just
lost a partition can never put an older value after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from availability.fanout import ChannelThrottle, ThrottledItem
from availability.feeds import FeedItem, FeedObserver
from availability.published import TRIMMED_FIELD, Quantities, feed_last_key, feed_stream_key
from availability.rules import CompiledRules
from availability.state import SkuFigures
from availability.timeutil import MICROS_PER_SECOND, format_micros
from availability.views import channel_quantities

log = logging.getLogger("availability.worker")

# KEYS: the stream, the last-item hash (SKU -> "version:sellable"). ARGV: retention, then
# sku, sellable, version, at per item. Returns the positions (1-based) of the items appended.
_APPEND: Final = (
    """
local appended = {}
for i = 2, #ARGV, 4 do
  local sku, version = ARGV[i], tonumber(ARGV[i + 2])
  local last = redis.call('HGET', KEYS[2], sku)
  if not last or version > tonumber(string.match(last, '^(%d+)')) then
    redis.call('XADD', KEYS[1], '*', 'sku', sku, 'sellable', ARGV[i + 1],
               'version', ARGV[i + 2], 'at', ARGV[i + 3])
    redis.call('HSET', KEYS[2], sku, ARGV[i + 2] .. ':' .. ARGV[i + 1])
    appended[#appended + 1] = (i + 2) / 4
  end
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('HSET', KEYS[2], '"""
    + TRIMMED_FIELD
    + """', old[#old][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', tonumber(ARGV[1]))
end
return appended
"""
)
CHUNK: Final = 500  # items per script call, SKUs per HMGET at a takeover
IDLE_WAIT_S: Final = 1.0  # with nothing pending, how long the pump sleeps before looking

_item_encoder: Final = msgspec.json.Encoder()

SendToTopic = Callable[[str, str, bytes], Awaitable[None]]  # channel, sku, value


def partition_rate(rate: float, partitions: int) -> float:
    """A partition's share of a channel's `max_per_second`, never 0: the rules take any
    positive rate, and the smallest ones (5e-324/s) divided by the partitions rounded to
    0.0, which `ChannelThrottle` refuses, so a rules document the API took stopped every
    worker, again at each restart. At such a rate an item is due in 1e300 years anyway."""
    return max(rate / partitions, math.ulp(0.0))


class FeedPump:
    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        partitions: int,
        retention: int,
        send_to_topic: SendToTopic,
        clock_micros: Callable[[], int],
        observer: FeedObserver,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._partitions = partitions
        self._retention = retention
        self._send_to_topic = send_to_topic
        self._clock = clock_micros
        self._script = redis.register_script(_APPEND)
        self._feeds: dict[str, tuple[float, int]] = {}  # channel -> (max/s, min interval ms)
        self._throttles: dict[tuple[str, int], ChannelThrottle] = {}  # (channel, partition)
        self._wake = asyncio.Event()
        self._observer = observer

    # -- what the worker tells it ----------------------------------------------------------

    def configure(self, rules: CompiledRules) -> set[str]:
        """Follow the rules' feeds; returns the channels that just got one (their every SKU
        must be offered: the caller adopts its partitions again)."""
        feeds = {
            name: (rule.feed.max_per_second, rule.feed.min_interval_ms)
            for name, rule in rules.rules.channels.items()
            if rule.feed is not None
        }
        added = set(feeds) - set(self._feeds)
        for key, throttle in list(self._throttles.items()):
            channel = key[0]
            if channel not in feeds:
                del self._throttles[key]
            elif feeds[channel] != self._feeds[channel]:
                rate, interval = feeds[channel]
                throttle.reconfigure(partition_rate(rate, self._partitions), interval)
        self._feeds = feeds
        return added

    def changed(self, partition: int, offers: Iterable[tuple[SkuFigures, Quantities]]) -> None:
        """Offer the changed SKUs' quantities (as published) of every feed channel."""
        if not self._feeds:
            return
        now = self._clock()
        throttles = {channel: self._throttle(channel, partition) for channel in self._feeds}
        before = {channel: t.coalesced for channel, t in throttles.items()}
        for state, quantities in offers:
            for channel, throttle in throttles.items():
                if channel in quantities:  # else dropped by these rules: configure follows
                    throttle.offer(state.sku, quantities[channel], state.version, now)
        for channel, throttle in throttles.items():
            if throttle.coalesced > before[channel]:
                self._observer.feed_coalesced(channel, throttle.coalesced - before[channel])
        self._wake.set()

    async def adopt(
        self, partition: int, states: Sequence[SkuFigures], rules: CompiledRules
    ) -> None:
        """A partition taken over: teach its throttles what each feed carries, and offer
        every SKU's current quantity (the throttle drops what the feed already says).

        A throttle that already exists is kept, not replaced: it may hold offers of events
        applied after `states` were read. A SKU missing from the feed counts as 0."""
        quantities = [channel_quantities(state, rules) for state in states]  # once per SKU
        for channel in [c for c in self._feeds if c in rules.channels]:
            throttle = self._throttle(channel, partition)
            now = self._clock()
            for start in range(0, len(states), CHUNK):
                chunk = states[start : start + CHUNK]
                last = await self._redis.hmget(
                    feed_last_key(self._namespace, channel), [s.sku for s in chunk]
                )
                for offset, (state, carried) in enumerate(zip(chunk, last, strict=True)):
                    if carried is None:
                        throttle.remember(state.sku, 0, 0)
                    else:
                        text = carried.decode() if isinstance(carried, bytes) else carried
                        version, sellable = text.split(":")
                        throttle.remember(state.sku, int(sellable), int(version))
                    quantity = quantities[start + offset][channel]
                    throttle.offer(state.sku, quantity, state.version, now)
        self._wake.set()

    def drop(self, partitions: set[int]) -> None:
        """Partitions this worker no longer owns: their new owner adopts them."""
        for key in [k for k in self._throttles if k[1] in partitions]:
            del self._throttles[key]

    def owned(self) -> set[int]:
        return {partition for _, partition in self._throttles}

    def backlogs(self) -> dict[str, int]:
        """Per feed channel, the SKUs waiting for their turn."""
        found = dict.fromkeys(self._feeds, 0)
        for (channel, _), throttle in self._throttles.items():
            found[channel] += throttle.backlog
        return found

    def _throttle(self, channel: str, partition: int) -> ChannelThrottle:
        throttle = self._throttles.get((channel, partition))
        if throttle is None:
            rate, interval = self._feeds[channel]
            throttle = ChannelThrottle(partition_rate(rate, self._partitions), interval)
            self._throttles[channel, partition] = throttle
        return throttle

    # -- the pump --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.pump_once()
            await self._sleep_until_due()

    async def pump_once(self) -> None:
        now = self._clock()
        due: dict[str, list[ThrottledItem]] = {}
        for (channel, _), throttle in list(self._throttles.items()):
            items = throttle.take_due(now)
            if items:
                due.setdefault(channel, []).extend(items)
        for channel, items in due.items():
            await self._append(channel, items)
        for channel, backlog in self.backlogs().items():
            self._observer.feed_backlog(channel, backlog)

    async def _sleep_until_due(self) -> None:
        due = [t.next_due_at() for t in self._throttles.values()]
        pending = [d for d in due if d is not None]
        wait = IDLE_WAIT_S
        if pending:
            wait = min(wait, max(0.0, (min(pending) - self._clock()) / MICROS_PER_SECOND))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.001))

    async def _append(self, channel: str, items: Sequence[ThrottledItem]) -> None:
        keys = [feed_stream_key(self._namespace, channel), feed_last_key(self._namespace, channel)]
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            args: list[str | int] = [self._retention]
            for item in chunk:
                args += [item.sku, item.sellable, item.version, format_micros(item.at)]
            appended = await self._append_chunk(keys, args)
            lags = []
            for position in appended:
                item = chunk[int(position) - 1]
                value = FeedItem(item.sku, item.sellable, item.version, format_micros(item.at))
                await self._send_to_topic(channel, item.sku, _item_encoder.encode(value))
                lags.append((item.at - item.changed_at) / MICROS_PER_SECOND)
            self._observer.feed_published(channel, lags)

    async def _append_chunk(self, keys: list[str], args: list[str | int]) -> list[int]:
        """Redis down holds the items back rather than dropping them; the throttle already
        recorded them as published, so they must reach the feed."""
        backoff = 0.05
        while True:
            try:
                appended: list[int] = await self._script(keys=keys, args=args)
                return appended
            except (RedisError, OSError) as exc:
                log.warning("feed append failed, retrying: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
