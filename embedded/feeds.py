"""The embedded mode's channel feeds (SPEC 5 and 7): throttles in memory, items in RocksDB.

Each channel with a `feed` has a `ChannelThrottle`, which learns what the feed last said of
a SKU (0 for a SKU the feed never carried) the first time it meets the SKU, and drops the
offers that change nothing for the channel. The pump takes what the throttles let through
and appends it to the channel's log in RocksDB, the SKU's last published value in the same
write. Pending values live only in memory: at open, `recover` re-offers every SKU whose
quantity differs from its last published value, so a crash or a stop delays the last word
but never loses it.

A cursor is the seq of the last item a consumer has, in decimal; seqs start at 1. Each
channel keeps its newest `retention` items.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

import msgspec

from availability.errors import CursorExpired, InvalidCursor, NoFeed, UnknownChannel
from availability.fanout import ChannelThrottle
from availability.feeds import (
    MAX_FEED_LIMIT,
    MAX_SNAPSHOT_LIMIT,
    MAX_WAIT_MS,
    FeedItem,
    FeedObserver,
    FeedPage,
    NoFeedObserver,
    SnapshotItem,
    SnapshotPage,
)
from availability.rules import CompiledChannel, CompiledRules, FeedRule, Rules
from availability.state import SkuState
from availability.timeutil import MICROS_PER_SECOND, format_micros
from availability.views import channel_quantity, sellable

from .store import FeedRecord, RocksStore

# Items appended per write: a throttle with a high rate and a long backlog is drained in
# several writes, with the loop free for readers in between.
PUMP_BATCH: Final = 1000
# After an unexpected error the pump retries this much later instead of dying: a feed that
# stops silently is worse than one that logs once a second.
PUMP_RETRY_SECONDS: Final = 1.0
MAX_CURSOR_DIGITS: Final = 20  # a seq is an unsigned 64-bit number

log = logging.getLogger(__name__)


class FeedStats(msgspec.Struct, frozen=True):
    backlog: int  # SKUs waiting for their turn
    published: int  # items appended since the process started
    coalesced: int  # pending values replaced by a newer one
    lag_us: int  # of the last item: from the change being offered to the item's `at`
    head: int  # seq of the newest item, 0 when none


class _SnapshotToken(msgspec.Struct, frozen=True, array_like=True):
    channel: str
    cursor: int  # the feed head when page one was taken
    after: str  # the last SKU of the previous page


_token_encoder: Final = msgspec.msgpack.Encoder()
_token_decoder: Final = msgspec.msgpack.Decoder(_SnapshotToken)


@dataclass(eq=False)
class _Feed:
    name: str
    throttle: ChannelThrottle
    first: int  # oldest retained seq; head + 1 when the feed holds no item
    head: int  # newest seq, 0 when none was ever appended
    appended: asyncio.Event = field(default_factory=asyncio.Event)  # replaced at each append
    lag_us: int = 0


def _located(
    state: SkuState, rules: CompiledRules, eligible: dict[str, str | None]
) -> list[tuple[str, str, int]]:
    """(location, its type, sellable) of each position a feed channel can sell from:
    computed once per SKU and shared by the channels. `eligible` maps a location to its
    type, or None when no feed channel takes it; filled as locations come up (a few dozen
    per retailer). Safety stock is most of the cost, so it is looked up only where used."""
    found = []
    for location, position in state.positions.items():
        kind = eligible.get(location, _UNSEEN)
        if kind is _UNSEEN:
            kind = eligible[location] = _eligible_type(location, rules)
        if kind is not None:
            units = sellable(position, rules.safety_stock(state.sku, location))
            found.append((location, kind, units))
    return found


def _eligible_type(location: str, rules: CompiledRules) -> str | None:
    kind = rules.location_type(location)
    feeds = [channel for channel in rules.channels.values() if channel.rule.feed is not None]
    return kind if any(channel.is_eligible(location, kind) for channel in feeds) else None


_UNSEEN: Final = "\0unseen"


def _quantity(
    channel: CompiledChannel, located: list[tuple[str, str, int]], unlocated_held: int
) -> int:
    """SPEC 3's channel quantity, as `availability.views.channel_quantities` computes it."""
    pool = sum(units for location, kind, units in located if channel.is_eligible(location, kind))
    return channel_quantity(channel, max(0, pool - unlocated_held))


class EmbeddedFeeds:
    """The feeds of every channel with a `feed`; `run()` is the pump, one asyncio task."""

    def __init__(self, store: RocksStore, retention: int, clock: Callable[[], int]) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._rules = CompiledRules(Rules())
        self._feeds: dict[str, _Feed] = {}
        self._wake = asyncio.Event()  # set when an offer or a rules change may move the pump
        self.observer: FeedObserver = NoFeedObserver()  # the API's metrics, once it exists
        # Per rules: location -> its type, or None when no feed channel takes it.
        self._eligible: tuple[CompiledRules, dict[str, str | None]] | None = None

    # -- rules -----------------------------------------------------------------------------

    def configure(self, rules: CompiledRules) -> set[str]:
        """Create, reconfigure or drop throttles to match the rules; the channels whose feed
        is new. A dropped channel's items stay on disk, to continue if it comes back."""
        self._rules = rules
        wanted: dict[str, FeedRule] = {
            name: channel.rule.feed
            for name, channel in rules.channels.items()
            if channel.rule.feed is not None
        }
        for name in [name for name in self._feeds if name not in wanted]:
            self._feeds.pop(name).appended.set()  # its long-polls answer (with NoFeed) now
        added: set[str] = set()
        for name, rule in wanted.items():
            feed = self._feeds.get(name)
            if feed is None:
                bounds = self._store.feed_bounds(name)
                first, head = bounds if bounds is not None else (1, 0)
                throttle = ChannelThrottle(rule.max_per_second, rule.min_interval_ms)
                self._feeds[name] = _Feed(name, throttle, first, head)
                added.add(name)
            elif (feed.throttle.max_per_second, feed.throttle.min_interval_ms) != (
                rule.max_per_second,
                rule.min_interval_ms,
            ):
                feed.throttle.reconfigure(rule.max_per_second, rule.min_interval_ms)
        self._wake.set()
        return added

    # -- offers ----------------------------------------------------------------------------

    def _eligible_for(self, rules: CompiledRules) -> dict[str, str | None]:
        if self._eligible is None or self._eligible[0] is not rules:
            self._eligible = (rules, {})
        return self._eligible[1]

    def changed(self, states: Iterable[SkuState], rules: CompiledRules) -> None:
        """Offer each SKU's channel quantity to every feed; the throttle drops what its feed
        already carries. A SKU it has not seen since the start learns the feed's last value
        from the store first (one read per SKU and channel per process)."""
        if not self._feeds:
            return
        now, store = self._clock(), self._store
        feeds = [(feed, rules.channels[feed.name]) for feed in self._feeds.values()]
        eligible = self._eligible_for(rules)
        coalesced = {feed.name: feed.throttle.coalesced for feed, _ in feeds}
        for state in states:
            sku, located = state.sku, _located(state, rules, eligible)
            held = state.held_anywhere
            for feed, channel in feeds:
                throttle = feed.throttle
                if not throttle.knows(sku):
                    last = store.last_published(feed.name, sku)
                    if last is None:
                        throttle.remember(sku, 0, 0)  # never published: the feed says 0
                    else:
                        throttle.remember(sku, last.sellable, last.version)
                throttle.offer(sku, _quantity(channel, located, held), state.version, now)
        for feed, _ in feeds:
            if feed.throttle.coalesced > coalesced[feed.name]:
                self.observer.feed_coalesced(
                    feed.name, feed.throttle.coalesced - coalesced[feed.name]
                )
        self._wake.set()

    def recover(self, states: Iterable[SkuState], rules: CompiledRules) -> None:
        """At open: re-offer every SKU whose quantity is not what its feed last said, the
        pending values a crash or a stop lost. One scan of each channel's last values
        instead of a read per SKU and channel."""
        if not self._feeds:
            return
        now = self._clock()
        feeds = [
            (feed, rules.channels[feed.name], dict(self._store.published(feed.name)))
            for feed in self._feeds.values()
        ]
        eligible = self._eligible_for(rules)
        for state in states:
            located = _located(state, rules, eligible)
            held = state.held_anywhere
            for feed, channel, published in feeds:
                last = published.get(state.sku)
                if last is None:
                    feed.throttle.remember(state.sku, 0, 0)
                else:
                    feed.throttle.remember(state.sku, last.sellable, last.version)
                quantity = _quantity(channel, located, held)
                feed.throttle.offer(state.sku, quantity, state.version, now)
        self._wake.set()

    # -- the pump --------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish what the throttles let through, as it becomes due, until cancelled.
        Sleeps until the earliest due time, or until an offer or a rules change wakes it."""
        while True:
            self._wake.clear()
            try:
                self.publish_due()
            except Exception:
                log.exception("feed pump failed; retrying in %s s", PUMP_RETRY_SECONDS)
                await asyncio.sleep(PUMP_RETRY_SECONDS)
                continue
            due = self.next_due_at()
            if due is None:
                await self._wake.wait()
                continue
            delay = (due - self._clock()) / MICROS_PER_SECOND
            if delay <= 0:
                await asyncio.sleep(0)  # more is due already: let readers and ingest in first
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def next_due_at(self) -> int | None:
        """The earliest µs any throttle has something due, None when nothing is pending."""
        dues = [feed.throttle.next_due_at() for feed in self._feeds.values()]
        return min((due for due in dues if due is not None), default=None)

    def publish_due(self) -> int:
        """Append, in each channel's feed, up to PUMP_BATCH items the throttle lets through
        now; the number appended."""
        now, appended = self._clock(), 0
        for feed in self._feeds.values():
            taken = feed.throttle.take_due(now, PUMP_BATCH)
            self.observer.feed_backlog(feed.name, feed.throttle.backlog)
            if not taken:
                continue
            first_seq = feed.head + 1
            head = feed.head + len(taken)
            first = max(feed.first, head - self._retention + 1)
            self._store.append_feed(
                feed.name,
                first_seq,
                [FeedRecord(item.sku, item.sellable, item.version, now) for item in taken],
                range(feed.first, first),
            )
            feed.first, feed.head = first, head
            feed.lag_us = now - taken[-1].changed_at
            self.observer.feed_published(
                feed.name, [(now - item.changed_at) / MICROS_PER_SECOND for item in taken]
            )
            feed.appended.set()
            feed.appended = asyncio.Event()
            appended += len(taken)
        return appended

    # -- reads -----------------------------------------------------------------------------

    def _feed(self, channel: str) -> _Feed:
        feed = self._feeds.get(channel)
        if feed is not None:
            return feed
        if channel not in self._rules.channels:
            raise UnknownChannel(f"channel {channel!r} is not in the rules")
        raise NoFeed(f"channel {channel!r} has no feed")

    def _check_cursor(self, feed: _Feed, seq: int) -> None:
        if seq > feed.head:
            raise InvalidCursor(f"cursor {seq} is ahead of the feed of {feed.name!r}")
        if seq < feed.first - 1:
            raise CursorExpired(f"cursor {seq} is older than the oldest item kept, {feed.first}")

    def _after(self, feed: _Feed, cursor: str | None) -> int:
        if not cursor:  # no cursor (or an empty one): from the oldest item kept
            return feed.first - 1
        if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > MAX_CURSOR_DIGITS:
            raise InvalidCursor("a feed cursor is a number this feed returned")
        seq = int(cursor)
        self._check_cursor(feed, seq)
        return seq

    async def read(self, channel: str, cursor: str | None, limit: int, wait_ms: int) -> FeedPage:
        """The items after `cursor`; when there are none, wait up to `wait_ms` for one."""
        feed = self._feed(channel)
        after = self._after(feed, cursor)
        limit = max(1, min(limit, MAX_FEED_LIMIT))
        records = self._store.feed_items(channel, after, limit)
        if not records and wait_ms > 0:
            appended = feed.appended
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait_ms, MAX_WAIT_MS) / 1000):
                    await appended.wait()
            feed = self._feed(channel)  # the rules may have dropped it meanwhile
            self._check_cursor(feed, after)  # retention may have passed it meanwhile
            records = self._store.feed_items(channel, after, limit)
        items = [FeedItem(r.sku, r.sellable, r.version, format_micros(r.at_us)) for _, r in records]
        return FeedPage(items, str(records[-1][0] if records else after))

    def snapshot(self, channel: str, page_token: str | None, limit: int) -> SnapshotPage:
        """A page of every SKU's current channel quantity, in SKU order, read from the SKUs'
        stored heads: the caller checkpoints first so that they are current. A value still
        pending in the throttle reaches the feed after the snapshot's cursor, even if it
        changes back to the one published before (the throttle publishes it all the same)."""
        feed = self._feed(channel)
        if not page_token:
            cursor, after = feed.head, None
        else:
            token = self._decode_token(page_token)
            if token.channel != channel:
                raise InvalidCursor("the page token is for another channel")
            self._check_cursor(feed, token.cursor)
            cursor, after = token.cursor, token.after
        compiled, rules = self._rules.channels[channel], self._rules
        limit = max(1, min(limit, MAX_SNAPSHOT_LIMIT))
        states = list(islice(self._store.answer_states(after), limit + 1))
        items = []
        for state in states[:limit]:
            located = _located(state, rules, self._eligible_for(rules))
            quantity = _quantity(compiled, located, state.held_anywhere)
            items.append(SnapshotItem(state.sku, quantity, state.version))
        next_token = None
        if len(states) > limit:
            next_token = self._encode_token(_SnapshotToken(channel, cursor, items[-1].sku))
        return SnapshotPage(items, str(cursor), next_token)

    @staticmethod
    def _encode_token(token: _SnapshotToken) -> str:
        return base64.urlsafe_b64encode(_token_encoder.encode(token)).decode().rstrip("=")

    @staticmethod
    def _decode_token(text: str) -> _SnapshotToken:
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            return _token_decoder.decode(data)
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise InvalidCursor("the page token was not made by this feed") from exc

    # -- metrics ---------------------------------------------------------------------------

    def stats(self) -> dict[str, FeedStats]:
        return {
            name: FeedStats(
                backlog=feed.throttle.backlog,
                published=feed.throttle.published,
                coalesced=feed.throttle.coalesced,
                lag_us=feed.lag_us,
                head=feed.head,
            )
            for name, feed in self._feeds.items()
        }
